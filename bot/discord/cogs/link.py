"""/link on Discord: the one-time code to enter on Telegram (or the code from
there), the accounts already linked and Unlink, asked twice. The rules live in
core/linking.py and what is shown in core/link_view.py."""

from __future__ import annotations

import re
from typing import TYPE_CHECKING, Any

import discord
from discord import app_commands
from discord.ext import commands

from bot.discord.people import person_of
from core.errors import OneAIError
from core.i18n import error_text, t
from core.link_view import done_text, link_page
from core.linking import platform_name

if TYPE_CHECKING:
    from bot.discord.client import OneAIBot

PLATFORM = "discord"


def _services(interaction: discord.Interaction[Any]) -> Any:
    return interaction.client.services


class UnlinkButton(
    discord.ui.DynamicItem[discord.ui.Button[Any]],
    # `sure`: 0 asks, 1 unlinks. `user`: our id the button was drawn for,
    # re-checked against the presser.
    template=r"oneai:ul:(?P<platform>[a-z]{1,16}):(?P<user>[0-9]{1,20}):(?P<sure>[01])",
):
    def __init__(self, platform: str, user_id: int, sure: bool, label: str = "") -> None:
        self.platform = platform
        self.user_id = user_id
        self.sure = sure
        super().__init__(
            discord.ui.Button(
                label=label or platform,
                style=discord.ButtonStyle.danger if sure else discord.ButtonStyle.secondary,
                custom_id=f"oneai:ul:{platform}:{user_id}:{int(sure)}",
            )
        )

    @classmethod
    async def from_custom_id(
        cls,
        interaction: discord.Interaction[Any],
        item: discord.ui.Item[Any],
        match: re.Match[str],
        /,
    ) -> UnlinkButton:
        return cls(match["platform"], int(match["user"]), match["sure"] == "1")

    async def callback(self, interaction: discord.Interaction[Any]) -> None:
        services = _services(interaction)
        person = await person_of(services, interaction)
        if person is None:
            return
        lang = person.lang
        if person.user.id != self.user_id:
            await interaction.response.send_message(t(lang, "not_yours"), ephemeral=True)
            return
        linked = {i.platform for i in await services.linking.linked(person.user.id)}
        if self.platform == PLATFORM or self.platform not in linked or len(linked) < 2:
            await interaction.response.send_message(t(lang, "stale_button"), ephemeral=True)
            return
        name = platform_name(self.platform)
        if not self.sure:
            view = discord.ui.View(timeout=None)
            view.add_item(
                UnlinkButton(
                    self.platform, self.user_id, True, t(lang, "link.yes_unlink", platform=name)
                )
            )
            await interaction.response.send_message(
                t(lang, "link.confirm_unlink", platform=name), view=view, ephemeral=True
            )
            return
        try:
            await services.linking.unlink(person.user.id, self.platform)
        except OneAIError as exc:
            await interaction.response.send_message(error_text(lang, exc), ephemeral=True)
            return
        await interaction.response.send_message(
            t(lang, "link.unlinked", platform=name), ephemeral=True
        )


class LinkCog(commands.Cog):
    def __init__(self, bot: OneAIBot) -> None:
        self.bot = bot
        self.services = bot.services

    @app_commands.command(name="link", description="One account on Telegram and Discord")
    @app_commands.describe(code="A code /link showed on Telegram (leave empty to get one)")
    async def link(self, interaction: discord.Interaction[Any], code: str = "") -> None:
        # Open to people without access to a private deployment: joining an account
        # that has access is a way in (the other account's owner shows or enters the code).
        person = await person_of(self.services, interaction, needs_access=False)
        if person is None:
            return
        lang = person.lang
        if code.strip():
            try:
                result = await self.services.linking.redeem(person.user.id, PLATFORM, code)
            except OneAIError as exc:
                await interaction.response.send_message(error_text(lang, exc), ephemeral=True)
                return
            await interaction.response.send_message(done_text(lang, result), ephemeral=True)
            return
        identities = await self.services.linking.linked(person.user.id)
        issued = await self.services.linking.issue_code(person.user.id, PLATFORM)
        page = link_page(lang, issued, identities, PLATFORM)
        view = discord.ui.View(timeout=None)
        for platform in page.unlinkable:
            label = t(lang, "link.unlink", platform=platform_name(platform))
            view.add_item(UnlinkButton(platform, person.user.id, False, label))
        text = page.text.replace(page.code, f"`{page.code}`")
        await interaction.response.send_message(text, view=view, ephemeral=True)
