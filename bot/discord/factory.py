"""Builds the Discord client from the services: `oneai run` starts it with the
token, tests drive it with simcord."""

from __future__ import annotations

import discord

from bot.discord.client import OneAIBot
from core.services import Services
from payments.service import Payments


def build_client(services: Services, *, payments: Payments | None = None) -> discord.Client:
    """The fully wired client (cogs, persistent views, command tree; settings from
    `services.settings`), not connected. `payments`: the providers `oneai run`
    shares between platforms (built here when not given)."""
    return OneAIBot(services, payments=payments)
