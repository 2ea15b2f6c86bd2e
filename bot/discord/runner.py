"""Runs the Discord bot beside the others under `oneai run`."""

from __future__ import annotations

import asyncio
import logging

import discord
from aiohttp import web

from bot.discord import broadcast
from bot.discord.admin_broadcast import progress_markup
from bot.discord.client import OneAIBot
from bot.discord.factory import build_client
from bot.discord.observe import instrument
from core.config import ConfigError
from core.services import Services
from payments.service import Payments

log = logging.getLogger(__name__)

INTENT_HELP = (
    "Discord refused the Message Content intent: enable it for the bot under "
    "Developer Portal → your application → Bot → Privileged Gateway Intents"
)


class DiscordPlatform:
    """The client and how it stops: first no new events, then (once the answers
    in progress have shown their final state) the gateway closes."""

    name = "discord"

    def __init__(self, services: Services, payments: Payments | None = None) -> None:
        token = services.settings.discord.bot_token
        assert token is not None
        self.token = token.get_secret_value()
        client = build_client(services, payments=payments)
        assert isinstance(client, OneAIBot)
        self.client = client
        instrument(client)
        broadcast.attach(services.broadcasts, client, markup=progress_markup(services))
        self._closed = asyncio.Event()

    async def serve(self) -> None:
        try:
            await self.client.login(self.token)
        except discord.LoginFailure:
            raise ConfigError("DISCORD_BOT_TOKEN was refused by Discord") from None
        user = self.client.user
        log.info("Discord: %s", user.name if user is not None else "?")
        try:
            await self.client.connect(reconnect=True)
        except discord.PrivilegedIntentsRequired:
            raise ConfigError(INTENT_HELP) from None

    @property
    def connected(self) -> bool:
        """For /readyz: every shard this process runs has its gateway session up,
        and events are taken. A shard that dropped makes it false until it resumes
        (discord.py's first ready stays set through a later disconnect)."""
        client = self.client
        return (
            client.intake
            and client.is_ready()
            and client.shards_connected()
            and not client.is_closed()
        )

    async def stop_intake(self) -> None:
        """New events are declined from now on; answers in progress go on."""
        self.client.intake = False

    async def wait_idle(self) -> None:
        await self.client.answers.flow.wait_idle()

    async def close(self) -> None:
        await self.client.close()


def setup(
    services: Services, app: web.Application, payments: Payments | None = None
) -> DiscordPlatform:
    """`app` is unused: Discord's events come over its gateway, not HTTP."""
    return DiscordPlatform(services, payments)
