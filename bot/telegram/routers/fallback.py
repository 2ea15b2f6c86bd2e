"""Whatever no other router took: a polite answer, and nothing changes."""

from __future__ import annotations

from aiogram import F, Router
from aiogram.types import CallbackQuery, Message

from bot.telegram.replies import reply
from core.i18n import t


async def unknown_command(message: Message, lang: str) -> None:
    await reply(message, t(lang, "unknown_command"))


async def unsupported(message: Message, lang: str) -> None:
    """Voice, stickers, files, locations, ... in a private chat."""
    await reply(message, t(lang, "unsupported"))


async def unknown_button(query: CallbackQuery, lang: str) -> None:
    """Forged or outdated callback data."""
    await query.answer(t(lang, "stale_button"), show_alert=True)


def create_router() -> Router:
    router = Router(name="fallback")
    router.message.register(unknown_command, F.chat.type == "private", F.text.startswith("/"))
    router.message.register(unsupported, F.chat.type == "private")
    router.callback_query.register(unknown_button)
    return router
