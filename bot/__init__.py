"""The platforms' bots and the `oneai` command."""

from bot.lazy_aiogram import import_aiogram

# Before anything imports aiogram: its Bot API models are built on first use.
import_aiogram()
