"""/mode: the chat modes menu and its buttons. What a mode is and what picking one
changes are in core/views/modes.py; this draws them."""

from __future__ import annotations

import uuid

from aiogram import F, Router
from aiogram.filters import Command
from aiogram.types import CallbackQuery, Message

from bot.telegram import keyboards
from bot.telegram.callbacks import ModePick
from bot.telegram.replies import redraw, reply
from core.conversations.errors import ConversationNotFound
from core.db.models import User
from core.i18n import t
from core.modes import UnknownMode
from core.services import Services
from core.views.modes import mode_menu, switch_mode

ALERT_CHARS = 200  # Telegram's limit on a callback answer's text


async def mode(message: Message, user: User, lang: str, services: Services) -> None:
    menu = await mode_menu(services, user, lang)
    await reply(message, menu.header, keyboards.modes(menu))


async def pick_mode(
    query: CallbackQuery, callback_data: ModePick, user: User, lang: str, services: Services
) -> None:
    # Client-supplied: the conversation must be the presser's, the mode a known one.
    try:
        conversation_id = (
            uuid.UUID(hex=callback_data.conversation) if callback_data.conversation else None
        )
        switched = await switch_mode(
            services, user, callback_data.mode, lang, conversation_id, platform="telegram"
        )
    except (ValueError, UnknownMode, ConversationNotFound):
        await query.answer(t(lang, "stale_button"), show_alert=True)
        return
    # A refused model is worth an alert the person closes; a switch, a toast.
    await query.answer(switched.notice[:ALERT_CHARS], show_alert=switched.refused_model)
    if isinstance(query.message, Message):
        menu = await mode_menu(services, user, lang, switched.conversation_id)
        await redraw(query.message, f"{switched.notice}\n\n{menu.header}", keyboards.modes(menu))


def create_router() -> Router:
    router = Router(name="modes")
    router.message.register(mode, F.chat.type == "private", Command("mode"))
    router.callback_query.register(pick_mode, ModePick.filter())
    return router
