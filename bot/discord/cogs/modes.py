"""/mode on Discord: the chat modes as a select menu in an ephemeral message. What a
mode is and what picking one changes are in core/views/modes.py; this draws them."""

from __future__ import annotations

import re
import uuid
from typing import TYPE_CHECKING, Any

import discord
from discord import app_commands
from discord.ext import commands

from bot.discord.people import Person, person_of
from core.conversations.errors import ConversationNotFound
from core.i18n import t
from core.modes import UnknownMode
from core.views.modes import ModeMenu, mode_menu, switch_mode

if TYPE_CHECKING:
    from bot.discord.client import OneAIBot

LABEL_CHARS = 100  # of a select option's label


def mode_view(menu: ModeMenu, user_id: int) -> discord.ui.View:
    options = [
        discord.SelectOption(
            label=choice.label[:LABEL_CHARS], value=choice.id, default=choice.current
        )
        for choice in menu.choices
    ]
    view = discord.ui.View(timeout=None)
    view.add_item(ModeSelect(user_id, menu.conversation_id, menu.current_label, options))
    return view


class ModeSelect(
    discord.ui.DynamicItem[discord.ui.Select[Any]],
    # The person it was drawn for, and the conversation it changes ("-": the current one).
    template=r"oneai:md:(?P<user>[0-9]{1,20}):(?P<conversation>[0-9a-f]{32}|-)",
):
    def __init__(
        self,
        user_id: int,
        conversation_id: uuid.UUID | None,
        placeholder: str = "",
        options: list[discord.SelectOption] | None = None,
    ) -> None:
        self.user_id = user_id
        self.conversation_id = conversation_id
        conversation = conversation_id.hex if conversation_id else "-"
        super().__init__(
            discord.ui.Select(
                custom_id=f"oneai:md:{user_id}:{conversation}",
                placeholder=placeholder[:LABEL_CHARS] or None,
                options=options or [discord.SelectOption(label="-", value="-")],
            )
        )

    @classmethod
    async def from_custom_id(
        cls,
        interaction: discord.Interaction[Any],
        item: discord.ui.Item[Any],
        match: re.Match[str],
        /,
    ) -> ModeSelect:
        conversation = match["conversation"]
        return cls(int(match["user"]), None if conversation == "-" else uuid.UUID(hex=conversation))

    async def callback(self, interaction: discord.Interaction[Any]) -> None:
        client: Any = interaction.client
        services = client.services
        person = await person_of(services, interaction)
        if person is None:
            return
        # Only the person who opened the menu may use it.
        if person.user.id != self.user_id:
            await interaction.response.send_message(t(person.lang, "not_yours"), ephemeral=True)
            return
        data: Any = interaction.data or {}
        values = [str(value) for value in data.get("values", [])]
        try:
            switched = await switch_mode(
                services,
                person.user,
                values[0] if values else "",
                person.lang,
                self.conversation_id,
                platform="discord",
            )
        except (UnknownMode, ConversationNotFound):
            await interaction.response.send_message(t(person.lang, "stale_button"), ephemeral=True)
            return
        menu = await mode_menu(services, person.user, person.lang, switched.conversation_id)
        await interaction.response.edit_message(
            content=f"{switched.notice}\n\n{menu.header}", view=mode_view(menu, person.user.id)
        )


ITEMS: tuple[type[discord.ui.DynamicItem[Any]], ...] = (ModeSelect,)


class ModesCog(commands.Cog):
    def __init__(self, bot: OneAIBot) -> None:
        self.bot = bot
        self.services = bot.services

    async def _menu(self, interaction: discord.Interaction[Any], person: Person) -> ModeMenu:
        """In a OneAI thread, the thread's conversation; elsewhere the current one."""
        thread = await self.bot.answers.thread_conversation(interaction.channel)
        if thread is not None:
            try:
                return await mode_menu(self.services, person.user, person.lang, thread)
            except ConversationNotFound:
                pass  # someone else's thread
        return await mode_menu(self.services, person.user, person.lang)

    @app_commands.command(name="mode", description="Chat mode: translator, coder, …")
    async def mode(self, interaction: discord.Interaction[Any]) -> None:
        person = await person_of(self.services, interaction)
        if person is None:
            return
        menu = await self._menu(interaction, person)
        await interaction.response.send_message(
            menu.header, view=mode_view(menu, person.user.id), ephemeral=True
        )
