"""The /admin screens on Discord: core/admin/screens.py's buttons drawn as
persistent dynamic items, the modals that ask for a reason or a text, and what
the commands and presses show.

Whoever sees a button can press it and a custom id can be forged, so every
command, press and modal submit asks `admin_of` first: anyone who is not an
admin hears what an unknown command gets, and nothing is read or written for
them. Admin screens are ephemeral (they name people and payments); a
broadcast's preview is a message in the admin's DMs, because its progress is
edited there later, possibly after a restart, which an ephemeral message does
not allow past 15 minutes.
"""

from __future__ import annotations

import logging
import re
from collections.abc import Awaitable, Callable
from dataclasses import dataclass, replace
from typing import TYPE_CHECKING, Any

import discord

from bot.discord.people import person_of
from bot.discord.render import split_message
from core.admin import actions
from core.admin.access import Actor, admin_actor
from core.admin.audit import audit_page
from core.admin.models import models_page, refresh_catalog
from core.admin.people import find_person, person_card
from core.admin.screens import (
    AdminButton,
    AdminOp,
    audience_buttons,
    confirm_refund,
    confirm_revoke,
    draft_buttons,
    grant_days,
    grant_plans,
    menu_buttons,
    parse_audience_choice,
    parse_grant,
    parse_id,
    person_buttons,
    progress_buttons,
)
from core.admin.stats import stats_screen
from core.broadcast import Photo, Progress, ProgressRef
from core.errors import OneAIError
from core.i18n import error_text, pick_language, t
from core.tiers import TIERS, Tier

if TYPE_CHECKING:
    from bot.discord.client import OneAIBot
    from core.services import Services

log = logging.getLogger(__name__)

PREFIX = "oneai:adm"
LABEL_CHARS = 80  # a button label
MODAL_CHARS = 45  # a modal's title and a text input's label
REASON_CHARS = 500
BROADCAST_CHARS = 2000


def _client(interaction: discord.Interaction[Any]) -> OneAIBot:
    client: Any = interaction.client
    return client  # type: ignore[no-any-return]


# -- who -------------------------------------------------------------------------------


@dataclass(frozen=True)
class Admin:
    actor: Actor
    lang: str


async def refuse(interaction: discord.Interaction[Any]) -> None:
    """What an unknown command gets, in the presser's language; nothing written."""
    services = _client(interaction).services
    user = await services.accounts.by_identity("discord", str(interaction.user.id))
    lang = pick_language((user.language if user is not None else None) or str(interaction.locale))
    await say(interaction, t(lang, "unknown_command"))


async def admin_of(interaction: discord.Interaction[Any]) -> Admin | None:
    """The admin behind this interaction, or None after answering as an unknown
    command would (or after the flood guard spoke)."""
    services = _client(interaction).services
    actor = await admin_actor(services, "discord", interaction.user.id)
    if actor is None:
        await refuse(interaction)
        return None
    person = await person_of(services, interaction)  # the admin's language; the flood guard
    if person is None:
        return None
    if actor.user_id is None:  # their first contact created the user just now
        actor = Actor(person.user.id, actor.name)
    return Admin(actor, person.lang)


# -- drawing -----------------------------------------------------------------------------


def view_of(buttons: list[AdminButton]) -> discord.ui.View | None:
    if not buttons:
        return None
    view = discord.ui.View(timeout=None)
    for button in buttons[:25]:  # Discord's most per message
        view.add_item(AdminItem(button))
    return view


async def say(interaction: discord.Interaction[Any], text: str, view: Any = None) -> None:
    """A new ephemeral message (split at Discord's limit; buttons under the last)."""
    parts = split_message(text) or ["…"]
    for number, part in enumerate(parts):
        extra: dict[str, Any] = {}
        if view is not None and number == len(parts) - 1:
            extra["view"] = view
        if interaction.response.is_done():
            await interaction.followup.send(part, ephemeral=True, **extra)
        else:
            await interaction.response.send_message(part, ephemeral=True, **extra)


async def show(
    interaction: discord.Interaction[Any],
    text: str,
    buttons: list[AdminButton] | None = None,
    *,
    edit: bool = False,
) -> None:
    """A screen: in place of the pressed message when `edit` and it fits one
    message, else as a new ephemeral message."""
    view = view_of(buttons or [])
    parts = split_message(text)
    if edit and interaction.message is not None and len(parts) == 1:
        if interaction.response.is_done():  # deferred while a provider was asked
            await interaction.edit_original_response(content=parts[0], view=view)
        else:
            await interaction.response.edit_message(content=parts[0], view=view)
        return
    await say(interaction, text, view)


def _lines(result: actions.ActionResult) -> str:
    return "\n".join([result.text, *result.notes])


# -- screens: a person ---------------------------------------------------------------------


async def card_screen(
    services: Services, lang: str, user_id: int, head: str = ""
) -> tuple[str, list[AdminButton]]:
    card = await person_card(services, user_id, lang)
    text = f"{head}\n\n{card.text}" if head else card.text
    return text, person_buttons(card, lang)


async def show_card(
    interaction: discord.Interaction[Any], admin: Admin, user_id: int, head: str = "", *, edit: bool
) -> None:
    text, buttons = await card_screen(_client(interaction).services, admin.lang, user_id, head)
    await show(interaction, text, buttons, edit=edit)


async def audit_screen(services: Services, lang: str, page: int) -> tuple[str, list[AdminButton]]:
    shown = await audit_page(services, page, lang)
    buttons = []
    if shown.has_previous:
        buttons.append(
            AdminButton(AdminOp.AUDIT, t(lang, "admin.button.newer"), page=shown.page - 1)
        )
    if shown.has_next:
        buttons.append(
            AdminButton(AdminOp.AUDIT, t(lang, "admin.button.older"), page=shown.page + 1)
        )
    return shown.text, buttons


async def models_screen(services: Services, lang: str) -> tuple[str, list[AdminButton]]:
    page = await models_page(services, lang)
    return page.text, [AdminButton(AdminOp.REFRESH, t(lang, "admin.button.refresh"))]


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
    services = _client(interaction).services
    try:
        await services.broadcasts.send_sample(broadcast_id, "discord", str(interaction.user.id))
    except Exception as exc:  # no DM, no sender: the preview still says who gets it
        log.warning("broadcast %d: sample not sent: %s", broadcast_id, exc)


async def compose(
    interaction: discord.Interaction[Any], admin: Admin, text: str, photo: Photo | None
) -> None:
    """A new draft: its sample and preview go to the admin's DMs."""
    services = _client(interaction).services
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


# -- modals --------------------------------------------------------------------------------


def _title(text: str) -> str:
    return text[:MODAL_CHARS]


class FindModal(discord.ui.Modal):
    def __init__(self, lang: str) -> None:
        super().__init__(title=_title(t(lang, "admin.button.person")), timeout=600)
        self.query: discord.ui.TextInput[FindModal] = discord.ui.TextInput(
            label=_title(t(lang, "admin.find.label")), custom_id="query", max_length=200
        )
        self.add_item(self.query)

    async def on_submit(self, interaction: discord.Interaction[Any]) -> None:
        admin = await admin_of(interaction)
        if admin is None:
            return
        try:
            user_id = await find_person(_client(interaction).services, self.query.value)
        except OneAIError as exc:
            await say(interaction, error_text(admin.lang, exc))
            return
        await show_card(interaction, admin, user_id, edit=False)


class BanModal(discord.ui.Modal):
    """Why the person is banned: optional, it goes to the audit log."""

    def __init__(self, lang: str, user_id: int) -> None:
        super().__init__(title=_title(t(lang, "admin.button.ban")), timeout=600)
        self.user_id = user_id
        self.reason: discord.ui.TextInput[BanModal] = discord.ui.TextInput(
            label=_title(t(lang, "admin.ban.label")),
            custom_id="reason",
            style=discord.TextStyle.paragraph,
            required=False,
            max_length=REASON_CHARS,
        )
        self.add_item(self.reason)

    async def on_submit(self, interaction: discord.Interaction[Any]) -> None:
        admin = await admin_of(interaction)
        if admin is None:
            return
        services = _client(interaction).services
        reason = self.reason.value.strip() or None
        try:
            result = await actions.ban(services, admin.actor, self.user_id, reason, lang=admin.lang)
        except OneAIError as exc:
            await say(interaction, error_text(admin.lang, exc))
            return
        await show_card(interaction, admin, self.user_id, _lines(result), edit=True)


class BroadcastModal(discord.ui.Modal):
    """The text of a new broadcast, or the new text of a draft."""

    def __init__(self, lang: str, broadcast_id: int | None = None, text: str = "") -> None:
        super().__init__(title=_title(t(lang, "admin.button.broadcast")), timeout=1800)
        self.broadcast_id = broadcast_id
        self.text: discord.ui.TextInput[BroadcastModal] = discord.ui.TextInput(
            label=_title(t(lang, "admin.broadcast.label")),
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
        services = _client(interaction).services
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


# -- the buttons -------------------------------------------------------------------------------


class AdminItem(
    discord.ui.DynamicItem[discord.ui.Button[Any]],
    # oneai:adm:<op>:<user>:<arg>:<page>; the op is checked when pressed, after
    # the presser is known to be an admin.
    template=(
        rf"{PREFIX}:(?P<op>[a-z]{{1,3}}):(?P<user>[0-9]{{0,19}})"
        r":(?P<arg>[a-z0-9._-]{0,40}):(?P<page>[0-9]{0,9})"
    ),
):
    def __init__(self, button: AdminButton, op_text: str | None = None) -> None:
        self.button = button
        self.op_text = op_text or button.op.value
        user = str(button.user_id) if button.user_id else ""
        page = str(button.page) if button.page else ""
        style = discord.ButtonStyle.danger if button.danger else discord.ButtonStyle.secondary
        super().__init__(
            discord.ui.Button(
                label=button.label[:LABEL_CHARS] or "-",
                style=style,
                custom_id=f"{PREFIX}:{self.op_text}:{user}:{button.arg}:{page}",
            )
        )

    @classmethod
    async def from_custom_id(
        cls,
        interaction: discord.Interaction[Any],
        item: discord.ui.Item[Any],
        match: re.Match[str],
        /,
    ) -> AdminItem:
        button = AdminButton(
            AdminOp.MENU,  # stands in until the op is checked, when pressed
            getattr(item, "label", "") or "",
            int(match["user"] or 0),
            match["arg"],
            int(match["page"] or 0),
        )
        return cls(button, match["op"])

    async def callback(self, interaction: discord.Interaction[Any]) -> None:
        admin = await admin_of(interaction)
        if admin is None:
            return
        op = next((o for o in AdminOp if o.value == self.op_text), None)
        handler = HANDLERS.get(op) if op is not None else None
        if op is None or handler is None:
            await say(interaction, t(admin.lang, "stale_button"))
            return
        try:
            await handler(interaction, admin, replace(self.button, op=op))
        except OneAIError as exc:
            await say(interaction, error_text(admin.lang, exc))


Handler = Callable[[discord.Interaction[Any], Admin, AdminButton], Awaitable[None]]


def _services(interaction: discord.Interaction[Any]) -> Services:
    return _client(interaction).services


async def _menu(interaction: discord.Interaction[Any], admin: Admin, b: AdminButton) -> None:
    await show(interaction, t(admin.lang, "admin.menu"), menu_buttons(admin.lang), edit=True)


async def _stats(interaction: discord.Interaction[Any], admin: Admin, b: AdminButton) -> None:
    await interaction.response.defer(ephemeral=True, thinking=True)
    screen = await stats_screen(_services(interaction), admin.lang)
    await say(interaction, screen.text)


async def _find(interaction: discord.Interaction[Any], admin: Admin, b: AdminButton) -> None:
    await interaction.response.send_modal(FindModal(admin.lang))


async def _person(interaction: discord.Interaction[Any], admin: Admin, b: AdminButton) -> None:
    await show_card(interaction, admin, b.user_id, edit=True)


async def _grant(interaction: discord.Interaction[Any], admin: Admin, b: AdminButton) -> None:
    card = await person_card(_services(interaction), b.user_id, admin.lang)
    back = AdminButton(AdminOp.PERSON, t(admin.lang, "admin.button.card"), card.user_id)
    if not b.arg:
        text = t(admin.lang, "admin.ask.plan", user=card.user_id)
        await show(interaction, text, [*grant_plans(admin.lang, card.user_id), back], edit=True)
        return
    try:
        tier = Tier(b.arg)
    except ValueError:
        tier = Tier.FREE
    if tier is Tier.FREE:
        await say(interaction, t(admin.lang, "stale_button"))
        return
    text = t(admin.lang, "admin.ask.grant_days", plan=TIERS[tier].name, user=card.user_id)
    await show(interaction, text, [*grant_days(admin.lang, card.user_id, tier), back], edit=True)


async def _grant_days(interaction: discord.Interaction[Any], admin: Admin, b: AdminButton) -> None:
    chosen = parse_grant(b.arg)
    if chosen is None:
        await say(interaction, t(admin.lang, "stale_button"))
        return
    tier, days = chosen
    result = await actions.grant(
        _services(interaction), admin.actor, b.user_id, tier, days, lang=admin.lang
    )
    await show_card(interaction, admin, b.user_id, _lines(result), edit=True)


async def _revoke(interaction: discord.Interaction[Any], admin: Admin, b: AdminButton) -> None:
    card = await person_card(_services(interaction), b.user_id, admin.lang)
    text, buttons = confirm_revoke(card, admin.lang)
    await show(interaction, text, buttons, edit=True)


async def _revoke_yes(interaction: discord.Interaction[Any], admin: Admin, b: AdminButton) -> None:
    result = await actions.revoke(_services(interaction), admin.actor, b.user_id, lang=admin.lang)
    await show_card(interaction, admin, b.user_id, _lines(result), edit=True)


async def _reset(interaction: discord.Interaction[Any], admin: Admin, b: AdminButton) -> None:
    result = await actions.reset_quota(
        _services(interaction), admin.actor, b.user_id, lang=admin.lang
    )
    await show_card(interaction, admin, b.user_id, _lines(result), edit=True)


async def _ban(interaction: discord.Interaction[Any], admin: Admin, b: AdminButton) -> None:
    await person_card(_services(interaction), b.user_id, admin.lang)  # still there
    await interaction.response.send_modal(BanModal(admin.lang, b.user_id))


async def _unban(interaction: discord.Interaction[Any], admin: Admin, b: AdminButton) -> None:
    result = await actions.unban(_services(interaction), admin.actor, b.user_id, lang=admin.lang)
    await show_card(interaction, admin, b.user_id, _lines(result), edit=True)


async def _refund(interaction: discord.Interaction[Any], admin: Admin, b: AdminButton) -> None:
    payment_id = parse_id(b.arg)
    card = await person_card(_services(interaction), b.user_id, admin.lang)
    asked = confirm_refund(card, payment_id, admin.lang) if payment_id is not None else None
    if asked is None:
        await say(interaction, t(admin.lang, "stale_button"))
        return
    await show(interaction, *asked, edit=True)


async def refund(interaction: discord.Interaction[Any], admin: Admin, payment: int | str) -> str:
    """One refund (the refunds module makes a second press a no-op with a
    reason); the line to show. The provider may take seconds: call deferred."""
    from payments.refunds import RefundError

    refunds = _client(interaction).payments.refunds
    try:
        result = await refunds.refund(payment, admin_user_id=admin.actor.user_id, reason=None)
    except RefundError as exc:
        return error_text(admin.lang, exc)
    return result.text(admin.lang)


async def _refund_yes(interaction: discord.Interaction[Any], admin: Admin, b: AdminButton) -> None:
    payment_id = parse_id(b.arg)
    if payment_id is None:
        await say(interaction, t(admin.lang, "stale_button"))
        return
    await interaction.response.defer()
    line = await refund(interaction, admin, payment_id)
    await show_card(interaction, admin, b.user_id, line, edit=True)


async def _models(interaction: discord.Interaction[Any], admin: Admin, b: AdminButton) -> None:
    text, buttons = await models_screen(_services(interaction), admin.lang)
    await show(interaction, text, buttons)


async def _refresh(interaction: discord.Interaction[Any], admin: Admin, b: AdminButton) -> None:
    await interaction.response.defer(ephemeral=True, thinking=True)
    result = await refresh_catalog(_services(interaction), admin.actor, lang=admin.lang)
    await say(interaction, _lines(result))


async def _audit(interaction: discord.Interaction[Any], admin: Admin, b: AdminButton) -> None:
    text, buttons = await audit_screen(_services(interaction), admin.lang, b.page or 1)
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
    services = _services(interaction)
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
    progress = await _services(interaction).broadcasts.start(
        broadcast_id, report_to=where, actor=admin.actor
    )
    await show(interaction, *progress_screen(admin.lang, progress), edit=True)


async def _change(interaction: discord.Interaction[Any], admin: Admin, b: AdminButton) -> None:
    broadcast_id = _broadcast_id(b)
    if broadcast_id is None:
        await say(interaction, t(admin.lang, "stale_button"))
        return
    info = await _services(interaction).broadcasts.get(broadcast_id)
    await interaction.response.send_modal(BroadcastModal(admin.lang, broadcast_id, info.text))


async def _discard(interaction: discord.Interaction[Any], admin: Admin, b: AdminButton) -> None:
    broadcast_id = _broadcast_id(b)
    if broadcast_id is None:
        await say(interaction, t(admin.lang, "stale_button"))
        return
    progress = await _services(interaction).broadcasts.cancel(broadcast_id, actor=admin.actor)
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
        progress = await step(_services(interaction), broadcast_id, admin.actor)
        await show(interaction, *progress_screen(admin.lang, progress), edit=True)

    return handler


HANDLERS: dict[AdminOp, Handler] = {
    AdminOp.MENU: _menu,
    AdminOp.STATS: _stats,
    AdminOp.FIND: _find,
    AdminOp.PERSON: _person,
    AdminOp.GRANT: _grant,
    AdminOp.GRANT_DAYS: _grant_days,
    AdminOp.REVOKE: _revoke,
    AdminOp.REVOKE_YES: _revoke_yes,
    AdminOp.RESET: _reset,
    AdminOp.BAN: _ban,
    AdminOp.UNBAN: _unban,
    AdminOp.REFUND: _refund,
    AdminOp.REFUND_YES: _refund_yes,
    AdminOp.MODELS: _models,
    AdminOp.REFRESH: _refresh,
    AdminOp.AUDIT: _audit,
    AdminOp.BROADCAST: _broadcast,
    AdminOp.BC_AUDIENCE: _audience,
    AdminOp.BC_SEND: _send,
    AdminOp.BC_EDIT: _change,
    AdminOp.BC_DISCARD: _discard,
    AdminOp.BC_PAUSE: _control(lambda s, i, a: s.broadcasts.pause(i, actor=a)),
    AdminOp.BC_RESUME: _control(lambda s, i, a: s.broadcasts.resume(i, actor=a)),
    AdminOp.BC_CANCEL: _control(lambda s, i, a: s.broadcasts.cancel(i, actor=a)),
}
