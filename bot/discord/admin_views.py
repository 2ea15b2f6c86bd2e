"""The /admin screens on Discord, the common part: who may use them
(`admin_of`), how a screen is drawn (`show`, `say`, `view_of`: core/admin/
screens.py's buttons as persistent dynamic items) and what a press runs (the
`HANDLERS` that admin_people.py and admin_broadcast.py register).

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
from core.admin.access import Actor, admin_actor
from core.admin.screens import (
    AdminButton,
    AdminOp,
)
from core.errors import OneAIError
from core.i18n import error_text, pick_language, t

if TYPE_CHECKING:
    from bot.discord.client import OneAIBot
    from core.services import Services

log = logging.getLogger(__name__)

PREFIX = "oneai:adm"
LABEL_CHARS = 80  # a button label
MODAL_CHARS = 45  # a modal's title and a text input's label
REASON_CHARS = 500


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


# -- modals --------------------------------------------------------------------------------


def title(text: str) -> str:
    return text[:MODAL_CHARS]


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


# Filled by admin_people.py and admin_broadcast.py: what each button does.
HANDLERS: dict[AdminOp, Handler] = {}


def services_of(interaction: discord.Interaction[Any]) -> Services:
    return _client(interaction).services


def client_of(interaction: discord.Interaction[Any]) -> OneAIBot:
    return _client(interaction)
