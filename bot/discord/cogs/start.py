"""/start [code]: a welcome, and on a private deployment (ACCESS_MODE=invite) the
way in with an admin's invite code. The rules are core/access.py's."""

from __future__ import annotations

from typing import TYPE_CHECKING, Any

import discord
from discord import app_commands
from discord.ext import commands

from bot.discord.people import person_of
from core.errors import OneAIError
from core.i18n import error_text, t

if TYPE_CHECKING:
    from bot.discord.client import OneAIBot


class StartCog(commands.Cog):
    def __init__(self, bot: OneAIBot) -> None:
        self.bot = bot
        self.services = bot.services

    @app_commands.command(name="start", description="Welcome; with an invite code, get access")
    @app_commands.describe(code="An invite code from the bot's owner")
    async def start(self, interaction: discord.Interaction[Any], code: str = "") -> None:
        # Open to people without access: this is how an invite lets them in.
        person = await person_of(self.services, interaction, needs_access=False)
        if person is None:
            return
        lang, access = person.lang, self.services.access
        welcome = t(lang, "access.start_discord")
        if code.strip() and access.invites_on:
            try:
                redeemed = await access.redeem(person.user.id, code.strip())
            except OneAIError as exc:
                # Nothing granted and no use taken.
                await interaction.response.send_message(error_text(lang, exc), ephemeral=True)
                return
            done = t(lang, "access.already" if redeemed.already else "access.welcome")
            await interaction.response.send_message(f"{done}\n\n{welcome}", ephemeral=True)
            return
        if not await access.allowed(person.user.id):
            await interaction.response.send_message(t(lang, "access.private"), ephemeral=True)
            return
        await interaction.response.send_message(welcome, ephemeral=True)
