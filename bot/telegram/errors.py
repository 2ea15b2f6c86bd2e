"""What the person hears when handling their update failed before an answer started
(a database fault in a middleware, a bug in a handler): never silence."""

from __future__ import annotations

import logging
from typing import Any

from aiogram import Bot
from aiogram.exceptions import TelegramAPIError
from aiogram.types import ErrorEvent

from bot.telegram.replies import patiently
from core.i18n import pick_language, t

log = logging.getLogger(__name__)


async def on_error(event: ErrorEvent, **data: Any) -> bool:
    update = event.update
    log.error(
        "update %s failed: %s",
        update.update_id,
        event.exception,
        exc_info=(type(event.exception), event.exception, event.exception.__traceback__),
    )
    lang: str | None = data.get("lang")
    if lang is None:  # the failure may have come before the person was known
        sender = data.get("event_from_user")
        lang = pick_language(sender.language_code if sender is not None else None)
    try:
        if update.callback_query is not None:
            await update.callback_query.answer(t(lang, "error.generic"), show_alert=True)
            return True
        message = update.message or update.edited_message
        if message is not None and message.chat.type == "private":
            bot: Bot = data["bot"]
            chat_id, text = message.chat.id, t(lang, "error.resend")
            await patiently(lambda: bot.send_message(chat_id, text))
    except TelegramAPIError as exc:
        log.warning("could not tell chat about the failed update %s: %s", update.update_id, exc)
    return True
