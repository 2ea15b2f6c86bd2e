"""/admin broadcast on Discord: the draft's sample and preview in the admin's
DMs, the audience and Send / Change / Discard buttons, and the progress message
with Pause / Resume / Cancel, which the engine's reporter edits (core/broadcast
does the sending)."""

from __future__ import annotations

import logging
from collections.abc import Awaitable, Callable
from typing import TYPE_CHECKING, Any

import discord

from bot.discord.admin_views import (
    HANDLERS,
    Admin,
    Handler,
    admin_of,
    say,
    services_of,
    show,
    title,
    view_of,
)
from core.admin.access import Actor
from core.admin.screens import (
    AdminButton,
    AdminOp,
    audience_buttons,
    draft_buttons,
    parse_audience_choice,
    parse_id,
    progress_buttons,
)
from core.broadcast import Photo, Progress, ProgressRef
from core.errors import OneAIError
from core.i18n import error_text, pick_language, t

if TYPE_CHECKING:
    from core.services import Services

log = logging.getLogger(__name__)

BROADCAST_CHARS = 2000


# -- screens: broadcasts -------------------------------------------------------------------


async def draft_screen(
    services: Services, lang: str, broadcast_id: int
) -> tuple[str, list[AdminButton]]:
    """The preview under the sample: who gets it, the audiences, Send/Change/Discard."""
    preview = await services.broadcasts.preview(broadcast_id)
    audiences = audience_buttons(lang, preview.broadcast.audience, broadcast_id)
    text = f"{t(lang, 'admin.broadcast.sample')}\n\n{preview.describe()}"
    return text, audiences + draft_buttons(lang, broadcast_id, preview.ready)


async def send_sample(interaction: discord.Interaction[Any], broadcast_id: int) -> None:
    """The broadcast as people will see it, in the admin's DMs."""
    services = services_of(interaction)
    try:
        await services.broadcasts.send_sample(broadcast_id, "discord", str(interaction.user.id))
    except Exception as exc:  # no DM, no sender: the preview still says who gets it
        log.warning("broadcast %d: sample not sent: %s", broadcast_id, exc)


async def compose(
    interaction: discord.Interaction[Any], admin: Admin, text: str, photo: Photo | None
) -> None:
    """A new draft: its sample and preview go to the admin's DMs."""
    services = services_of(interaction)
    if not interaction.response.is_done():
        await interaction.response.defer(ephemeral=True, thinking=True)
    draft = await services.broadcasts.create_draft(admin.actor.user_id, text, photo=photo)
    try:
        channel = await interaction.user.create_dm()
        await send_sample(interaction, draft.id)
        shown, buttons = await draft_screen(services, admin.lang, draft.id)
        view = view_of(buttons)
        extra: dict[str, Any] = {"view": view} if view is not None else {}
        await channel.send(shown, **extra)
    except discord.HTTPException as exc:
        log.info("broadcast %d: no DM to the admin: %s", draft.id, exc)
        await services.broadcasts.cancel(draft.id)
        await say(interaction, t(admin.lang, "admin.broadcast.no_dm"))
        return
    await say(interaction, t(admin.lang, "admin.broadcast.in_dm"))


def progress_screen(lang: str, progress: Progress) -> tuple[str, list[AdminButton]]:
    return progress.line(), progress_buttons(lang, progress)


ProgressMarkup = Callable[[Progress], Awaitable[discord.ui.View | None]]


def progress_markup(services: Services) -> ProgressMarkup:
    """The buttons under a broadcast's progress, in the language of the admin who
    wrote it (the reporter edits that message every few seconds)."""

    async def markup(progress: Progress) -> discord.ui.View | None:
        lang = "en"
        try:
            info = await services.broadcasts.get(progress.broadcast_id)
            if info.created_by is not None:
                user = await services.accounts.get(info.created_by)
                lang = pick_language(user.language if user is not None else None)
        except OneAIError:
            pass
        return view_of(progress_buttons(lang, progress))

    return markup


class BroadcastModal(discord.ui.Modal):
    """The text of a new broadcast, or the new text of a draft."""

    def __init__(self, lang: str, broadcast_id: int | None = None, text: str = "") -> None:
        super().__init__(title=title(t(lang, "admin.button.broadcast")), timeout=1800)
        self.broadcast_id = broadcast_id
        self.text: discord.ui.TextInput[BroadcastModal] = discord.ui.TextInput(
            label=title(t(lang, "admin.broadcast.label")),
            custom_id="text",
            style=discord.TextStyle.paragraph,
            default=text[:BROADCAST_CHARS] or None,
            max_length=BROADCAST_CHARS,
        )
        self.add_item(self.text)

    async def on_submit(self, interaction: discord.Interaction[Any]) -> None:
        admin = await admin_of(interaction)
        if admin is None:
            return
        services = services_of(interaction)
        try:
            if self.broadcast_id is None:
                await compose(interaction, admin, self.text.value, None)
                return
            await services.broadcasts.edit_draft(self.broadcast_id, text=self.text.value)
            await send_sample(interaction, self.broadcast_id)
            text, buttons = await draft_screen(services, admin.lang, self.broadcast_id)
        except OneAIError as exc:
            await say(interaction, error_text(admin.lang, exc))
            return
        await show(interaction, text, buttons, edit=True)


async def _broadcast(interaction: discord.Interaction[Any], admin: Admin, b: AdminButton) -> None:
    await interaction.response.send_modal(BroadcastModal(admin.lang))


def _broadcast_id(b: AdminButton) -> int | None:
    return parse_id(b.arg)


async def _audience(interaction: discord.Interaction[Any], admin: Admin, b: AdminButton) -> None:
    choice = parse_audience_choice(b.arg)
    if choice is None:
        await say(interaction, t(admin.lang, "stale_button"))
        return
    services = services_of(interaction)
    await services.broadcasts.edit_draft(choice[0], audience=choice[1])
    text, buttons = await draft_screen(services, admin.lang, choice[0])
    await show(interaction, text, buttons, edit=True)


async def _send(interaction: discord.Interaction[Any], admin: Admin, b: AdminButton) -> None:
    broadcast_id = _broadcast_id(b)
    message = interaction.message
    if broadcast_id is None or message is None:
        await say(interaction, t(admin.lang, "stale_button"))
        return
    where = ProgressRef("discord", str(message.channel.id), str(message.id))
    progress = await services_of(interaction).broadcasts.start(
        broadcast_id, report_to=where, actor=admin.actor
    )
    await show(interaction, *progress_screen(admin.lang, progress), edit=True)


async def _change(interaction: discord.Interaction[Any], admin: Admin, b: AdminButton) -> None:
    broadcast_id = _broadcast_id(b)
    if broadcast_id is None:
        await say(interaction, t(admin.lang, "stale_button"))
        return
    info = await services_of(interaction).broadcasts.get(broadcast_id)
    await interaction.response.send_modal(BroadcastModal(admin.lang, broadcast_id, info.text))


async def _discard(interaction: discord.Interaction[Any], admin: Admin, b: AdminButton) -> None:
    broadcast_id = _broadcast_id(b)
    if broadcast_id is None:
        await say(interaction, t(admin.lang, "stale_button"))
        return
    progress = await services_of(interaction).broadcasts.cancel(broadcast_id, actor=admin.actor)
    text = t(admin.lang, "admin.broadcast.discarded") if not progress.total else progress.line()
    await show(interaction, text, [], edit=True)


def _control(
    step: Callable[[Services, int, Actor], Awaitable[Progress]],
) -> Handler:
    """Pause, resume or cancel a running broadcast; the message shows where it is."""

    async def handler(interaction: discord.Interaction[Any], admin: Admin, b: AdminButton) -> None:
        broadcast_id = _broadcast_id(b)
        if broadcast_id is None:
            await say(interaction, t(admin.lang, "stale_button"))
            return
        progress = await step(services_of(interaction), broadcast_id, admin.actor)
        await show(interaction, *progress_screen(admin.lang, progress), edit=True)

    return handler


HANDLERS.update(
    {
        AdminOp.BROADCAST: _broadcast,
        AdminOp.BC_AUDIENCE: _audience,
        AdminOp.BC_SEND: _send,
        AdminOp.BC_EDIT: _change,
        AdminOp.BC_DISCARD: _discard,
        AdminOp.BC_PAUSE: _control(lambda s, i, a: s.broadcasts.pause(i, actor=a)),
        AdminOp.BC_RESUME: _control(lambda s, i, a: s.broadcasts.resume(i, actor=a)),
        AdminOp.BC_CANCEL: _control(lambda s, i, a: s.broadcasts.cancel(i, actor=a)),
    }
)
