"""One Cog per feature."""

from __future__ import annotations

from collections.abc import Callable
from typing import TYPE_CHECKING

from discord.ext import commands

from bot.discord.cogs.account import AccountCog
from bot.discord.cogs.admin import AdminCog
from bot.discord.cogs.chat import ChatCog
from bot.discord.cogs.link import LinkCog
from bot.discord.cogs.modes import ModesCog
from bot.discord.cogs.premium import PremiumCog
from bot.discord.cogs.start import StartCog

if TYPE_CHECKING:
    from bot.discord.client import OneAIBot

COGS: tuple[Callable[[OneAIBot], commands.Cog], ...] = (
    ChatCog,
    AccountCog,
    LinkCog,
    ModesCog,
    PremiumCog,
    AdminCog,
    StartCog,
)
