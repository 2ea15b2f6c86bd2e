"""Builds the Discord client from the services: `oneai run` starts it with the
token, tests drive it with simcord."""

from __future__ import annotations

import discord

from bot.discord.client import OneAIBot
from core.services import Services


def build_client(services: Services) -> discord.Client:
    """The fully wired client (cogs, persistent views, command tree; settings from
    `services.settings`), not connected."""
    return OneAIBot(services)
