"""The Telegram side of broadcasts: one message per person (text, or a photo with
the text as its caption), the Markdown rendered to entities as answers are, and
Telegram's answers translated for the engine (core/broadcast): 429 -> RetryAfter,
403 (blocked, deactivated) -> Unreachable, 400 -> Rejected, network and 5xx ->
Transient. Pacing, retries and records are the engine's."""

from __future__ import annotations

import functools
import logging
from collections.abc import Awaitable, Callable

from aiogram import Bot
from aiogram.exceptions import (
    TelegramBadRequest,
    TelegramForbiddenError,
    TelegramNetworkError,
    TelegramRetryAfter,
    TelegramServerError,
)
from aiogram.types import InlineKeyboardMarkup, MessageEntity

from bot.telegram.render import TELEGRAM_LIMIT, Part, render
from bot.telegram.replies import patiently
from bot.telegram.sink import plain_if_refused
from core.broadcast import (
    BroadcastEngine,
    Content,
    Photo,
    Progress,
    Rejected,
    RetryAfter,
    SendLimits,
    Transient,
    Unreachable,
)

log = logging.getLogger(__name__)

PLATFORM = "telegram"
CAPTION_LIMIT = 1024  # UTF-16 units, for a photo's caption
# Telegram's advice for bulk messages is about 30 a second; answers being streamed
# meanwhile have their own budget (TELEGRAM_GLOBAL_EDITS_PER_SECOND).
PER_SECOND = 25.0
CONCURRENCY = 4


@functools.lru_cache(maxsize=16)
def _parts(text: str, limit: int) -> tuple[Part, ...]:
    return tuple(render(text, limit))


def rendered(content: Content) -> tuple[Part, ...]:
    """The message(s) `content`'s text becomes: one, when it fits."""
    return _parts(content.text, CAPTION_LIMIT if content.photo else TELEGRAM_LIMIT)


class TelegramBroadcastSender:
    platform = PLATFORM

    def __init__(
        self, bot: Bot, *, per_second: float = PER_SECOND, concurrency: int = CONCURRENCY
    ) -> None:
        self.bot = bot
        self._limits = SendLimits(per_second=per_second, concurrency=concurrency)

    @property
    def limits(self) -> SendLimits:
        return self._limits

    def problem(self, content: Content) -> str | None:
        photo = content.photo
        if photo is not None and photo.platform not in (None, PLATFORM):
            return "the photo is a file of another platform; send it here or give a URL"
        parts = rendered(content)
        if len(parts) > 1:
            if photo is not None:
                return f"too long for a photo caption ({CAPTION_LIMIT} characters on Telegram)"
            return f"longer than one Telegram message ({TELEGRAM_LIMIT} characters)"
        if not parts and photo is None:
            return "nothing to show"
        return None

    async def send(self, address: str, content: Content) -> None:
        chat_id = int(address)
        parts = rendered(content)
        part = parts[0] if parts else Part("")
        photo = content.photo

        async def text(entities: list[MessageEntity]) -> object:
            return await self.bot.send_message(chat_id, part.text, entities=entities)

        async def picture(entities: list[MessageEntity]) -> object:
            assert photo is not None
            return await self.bot.send_photo(
                chat_id,
                photo.ref,
                caption=part.text or None,
                caption_entities=entities or None,
            )

        try:
            await plain_if_refused(picture if photo is not None else text, part, chat_id)
        except TelegramRetryAfter as exc:
            raise RetryAfter(exc.retry_after) from None
        except TelegramForbiddenError as exc:
            # "bot was blocked by the user", "user is deactivated", ...
            raise Unreachable(exc.message) from None
        except TelegramBadRequest as exc:
            raise Rejected(exc.message) from None
        except (TelegramServerError, TelegramNetworkError) as exc:
            raise Transient(str(exc)) from None

    async def photo_bytes(self, photo: Photo) -> bytes:
        """A Telegram photo's bytes, for platforms that cannot use its file id."""
        if photo.platform != PLATFORM:
            raise ValueError("not a Telegram file")
        data = await self.bot.download(photo.ref)
        if data is None:
            raise Transient("the photo could not be downloaded")
        return data.read()


ProgressMarkup = Callable[[Progress], InlineKeyboardMarkup | None]


def progress_reporter(
    bot: Bot, markup: ProgressMarkup | None = None
) -> Callable[[Progress], Awaitable[None]]:
    """Shows a broadcast's progress by editing the message it was started with
    (`report_to`); `markup` gives its buttons (a Cancel while it runs)."""

    async def report(progress: Progress) -> None:
        where = progress.report_to
        if where is None or where.platform != PLATFORM:
            return
        keyboard = markup(progress) if markup is not None else None
        try:
            await patiently(
                lambda: bot.edit_message_text(
                    text=progress.line(),
                    chat_id=int(where.chat_id),
                    message_id=int(where.message_id),
                    reply_markup=keyboard,
                )
            )
        except TelegramBadRequest as exc:
            if "message is not modified" not in exc.message:
                log.warning("broadcast %d: progress not shown: %s", progress.broadcast_id, exc)

    return report


def attach(engine: BroadcastEngine, bot: Bot, markup: ProgressMarkup | None = None) -> None:
    """Broadcasts reach Telegram through `bot`; progress messages there are edited."""
    engine.add_sender(TelegramBroadcastSender(bot))
    engine.add_reporter(PLATFORM, progress_reporter(bot, markup))
