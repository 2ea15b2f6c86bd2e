"""Replies that survive Telegram's flood limit.

A command or a notice often comes right after an answer was streamed into the
chat; a 429 then must delay the reply, not lose it.
"""

from __future__ import annotations

import asyncio
from collections.abc import Awaitable, Callable
from typing import TypeVar

from aiogram.exceptions import TelegramBadRequest, TelegramRetryAfter
from aiogram.types import InlineKeyboardMarkup, Message

FLOOD_ATTEMPTS = 5

_T = TypeVar("_T")


async def patiently(send: Callable[[], Awaitable[_T]]) -> _T:
    """Send, waiting out Telegram's flood limit. A command often comes right after an
    answer was streamed into the chat, and its reply must not be lost to a 429."""
    for _ in range(FLOOD_ATTEMPTS - 1):
        try:
            return await send()
        except TelegramRetryAfter as exc:
            await asyncio.sleep(exc.retry_after)
    return await send()


async def reply(message: Message, text: str, markup: InlineKeyboardMarkup | None = None) -> Message:
    """A short answer in the chat of `message`."""
    return await patiently(lambda: message.answer(text, reply_markup=markup))


async def redraw(message: Message, text: str, markup: InlineKeyboardMarkup | None) -> None:
    """Show a menu's new state in its message. Pressing what is already chosen (or
    the same button twice) changes nothing, and Telegram refuses such an edit."""
    try:
        await patiently(lambda: message.edit_text(text, reply_markup=markup))
    except TelegramBadRequest as exc:
        if "message is not modified" not in exc.message:
            raise
