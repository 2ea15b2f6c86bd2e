"""The Telegram side of the streaming driver: render, send, edit, delete, and map
Telegram's answers (429, "not modified", a deleted message) to what the driver
understands.

An answer may already have messages (Regenerate and paging reuse the parts that
show the old revision): `existing` are their ids, reused in order; any left over
at the end are deleted.

An answer is never lost to formatting: when Telegram refuses a text because of its
entities ("entity URL '...' is invalid: ...", "can't parse entities: ..."), the same
text goes out again at once without them, in the same call.
"""

from __future__ import annotations

import logging
from collections.abc import Awaitable, Callable, Sequence
from typing import TypeVar

from aiogram import Bot
from aiogram.exceptions import TelegramBadRequest, TelegramForbiddenError, TelegramRetryAfter
from aiogram.types import InlineKeyboardMarkup, Message, MessageEntity, ReplyParameters

from bot.telegram.render import TELEGRAM_LIMIT, Part, render, utf16_len
from bot.telegram.sources import with_sources
from core.llm.citations import Citation
from core.streaming import ChatUnavailable, Outcome, RetryLater, SinkLimits
from core.streaming.sink import final_layout

log = logging.getLogger(__name__)

FinalMarkup = Callable[[], Awaitable[InlineKeyboardMarkup | None]]
# The note below a finished answer, by how it ended and its text.
Note = Callable[[Outcome, str], str | None]
# Its web-search sources, read when it is finished.
Citations = Callable[[], Sequence[Citation]]
T = TypeVar("T")


def _not_modified(error: TelegramBadRequest) -> bool:
    return "message is not modified" in error.message


def _gone(error: TelegramBadRequest) -> bool:
    return "message to edit not found" in error.message or (
        "message to delete not found" in error.message
    )


def entities_refused(error: TelegramBadRequest) -> bool:
    """Whether Telegram refused a text for its entities, so the same text without
    them would go through: "entity URL '...' is invalid: URL host is empty", "can't
    parse entities: ...", "Wrong HTTP URL", "entity beginning at UTF-16 offset ...".
    A refused button URL is about the markup, which a plain text does not change."""
    message = error.message.lower()
    if any(word in message for word in ("button", "keyboard", "markup")):
        return False
    return any(word in message for word in ("entit", "url", "can't parse"))


async def plain_if_refused(
    call: Callable[[list[MessageEntity]], Awaitable[T]], part: Part, chat_id: int
) -> T:
    """`call` with the part's entities, or at once without them if Telegram refuses
    them: the answer must show, formatted or not."""
    try:
        return await call(list(part.entities))
    except TelegramBadRequest as exc:
        if not part.entities or not entities_refused(exc):
            raise
        log.warning(
            "Telegram refused the formatting in chat %s (%s); sending the text plain",
            chat_id,
            exc.message,
        )
    return await call([])


def with_note(part: Part, note: str) -> Part | None:
    """`part` with an italic note below it, if it still fits in one message."""
    rendered = render(f"_{note}_")
    if not rendered:
        return part
    extra = rendered[0]
    gap = "\n\n"
    shift = utf16_len(part.text) + len(gap)
    if shift + utf16_len(extra.text) > TELEGRAM_LIMIT:
        return None
    moved = tuple(
        MessageEntity(**{**entity.model_dump(exclude_none=True), "offset": entity.offset + shift})
        for entity in extra.entities
    )
    return Part(part.text + gap + extra.text, part.entities + moved)


class TelegramSink:
    def __init__(
        self,
        bot: Bot,
        chat_id: int,
        *,
        min_interval: float,
        streaming_markup: InlineKeyboardMarkup | None = None,
        final_markup: FinalMarkup | None = None,
        existing: Sequence[int] = (),
        reply_to: int | None = None,
        note: Note | None = None,
        on_new_part: Callable[[list[int]], Awaitable[None]] | None = None,
        citations: Citations | None = None,
    ) -> None:
        self.bot = bot
        self.chat_id = chat_id
        self.citations = citations
        self.streaming_markup = streaming_markup
        self.final_markup = final_markup
        self.message_ids: list[int] = list(existing)
        self.reply_to = reply_to
        self.note = note
        self.on_new_part = on_new_part
        self._limits = SinkLimits(max_length=TELEGRAM_LIMIT, min_interval=min_interval)
        self._part_count = 0

    @property
    def limits(self) -> SinkLimits:
        return self._limits

    @property
    def chat_key(self) -> tuple[str, int]:
        return ("telegram", self.chat_id)

    # -- what the driver asks ----------------------------------------------------

    def split(self, text: str) -> list[Part]:
        parts = render(text)
        self._part_count = len(parts)
        return parts

    def _live_markup(self, index: int) -> InlineKeyboardMarkup | None:
        """Stop belongs under the part being written, not under finished ones."""
        return self.streaming_markup if index >= self._part_count - 1 else None

    async def start(self) -> None:
        try:
            await self.bot.send_chat_action(self.chat_id, "typing")
        except TelegramRetryAfter as exc:
            raise RetryLater(exc.retry_after) from None
        except TelegramForbiddenError:
            raise ChatUnavailable() from None

    async def send(self, index: int, part: Part) -> None:
        if index < len(self.message_ids):  # reusing a message of the old revision
            await self._edit(index, part, self._live_markup(index))
        else:
            await self._send(part, self._live_markup(index))

    async def edit(self, index: int, part: Part) -> None:
        await self._edit(index, part, self._live_markup(index))

    async def delete(self, index: int) -> None:
        if index >= len(self.message_ids):
            return
        message_id = self.message_ids[index]
        try:
            await self.bot.delete_message(self.chat_id, message_id)
        except TelegramRetryAfter as exc:
            raise RetryLater(exc.retry_after) from None
        except TelegramForbiddenError:
            raise ChatUnavailable() from None
        except TelegramBadRequest as exc:
            if not _gone(exc):
                raise
        self.message_ids.pop(index)

    async def finish(self, parts: Sequence[Part], outcome: Outcome) -> None:
        """The last part with its buttons, its sources and the note on how the answer
        ended; messages of an old revision that are no longer needed are deleted."""
        text = "".join(part.text for part in parts)
        note = self.note(outcome, text) if self.note else None
        shown = final_layout(
            with_sources(parts, self.citations() if self.citations else ()),
            note,
            merge=with_note,
            note_part=lambda words: render(f"_{words}_")[0],
            empty=Part("…"),
        )
        markup = await self.final_markup() if self.final_markup else None
        first_new = len(parts) - 1 if parts else 0
        for index in range(first_new, len(shown)):
            final = index == len(shown) - 1
            if index < len(self.message_ids):
                await self._edit(index, shown[index], markup if final else None)
            else:
                await self._send(shown[index], markup if final else None)
        while len(self.message_ids) > len(shown):
            await self.delete(len(self.message_ids) - 1)

    # -- Telegram calls -----------------------------------------------------------

    async def _send(self, part: Part, markup: InlineKeyboardMarkup | None) -> None:
        reply = (
            ReplyParameters(message_id=self.reply_to, allow_sending_without_reply=True)
            if self.reply_to is not None and not self.message_ids
            else None
        )

        async def send(entities: list[MessageEntity]) -> Message:
            return await self.bot.send_message(
                self.chat_id,
                part.text,
                entities=entities,
                reply_markup=markup,
                reply_parameters=reply,
            )

        try:
            sent = await plain_if_refused(send, part, self.chat_id)
        except TelegramRetryAfter as exc:
            raise RetryLater(exc.retry_after) from None
        except TelegramForbiddenError:
            raise ChatUnavailable() from None
        except TelegramBadRequest as exc:
            if "chat not found" in exc.message:
                raise ChatUnavailable() from None
            raise
        self.message_ids.append(sent.message_id)
        if self.on_new_part is not None:
            # Linked at once: a Stop pressed on this message must find its answer.
            await self.on_new_part(list(self.message_ids))

    async def _edit(self, index: int, part: Part, markup: InlineKeyboardMarkup | None) -> None:
        message_id = self.message_ids[index]

        async def edit(entities: list[MessageEntity]) -> Message | bool:
            return await self.bot.edit_message_text(
                text=part.text,
                chat_id=self.chat_id,
                message_id=message_id,
                entities=entities,
                reply_markup=markup,
            )

        try:
            await plain_if_refused(edit, part, self.chat_id)
        except TelegramRetryAfter as exc:
            raise RetryLater(exc.retry_after) from None
        except TelegramForbiddenError:
            raise ChatUnavailable() from None
        except TelegramBadRequest as exc:
            if _not_modified(exc):
                return  # it already shows this: success
            if not _gone(exc):
                raise
            # The person deleted it: show this part in a fresh message instead.
            log.info("message %s in chat %s is gone; posting anew", message_id, self.chat_id)
            tail = self.message_ids[index + 1 :]
            del self.message_ids[index:]
            await self._send(part, markup)
            self.message_ids.extend(tail)
