"""TELEGRAM_STREAM_MODE=draft: stream into a message draft (sendMessageDraft, private
chats only) and post the real message(s) at the end.

Parts that are complete (the answer rolled over to the next part) are posted as
messages at once; the part being written lives in the draft. Telegram drops a
draft after about 30 s without an update, so a quiet draft is refreshed.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
from collections.abc import Awaitable, Callable, Sequence

from aiogram import Bot
from aiogram.exceptions import TelegramRetryAfter
from aiogram.types import MessageEntity

from bot.telegram.render import Part
from bot.telegram.sink import Citations, FinalMarkup, Note, TelegramSink, plain_if_refused
from core.streaming import Outcome, RetryLater

log = logging.getLogger(__name__)

DRAFT_REFRESH = 20.0  # seconds; under Telegram's ~30 s draft lifetime


class DraftSink(TelegramSink):
    def __init__(
        self,
        bot: Bot,
        chat_id: int,
        *,
        draft_id: int,
        min_interval: float,
        final_markup: FinalMarkup | None = None,
        note: Note | None = None,
        on_new_part: Callable[[list[int]], Awaitable[None]] | None = None,
        reply_to: int | None = None,
        refresh: float = DRAFT_REFRESH,
        citations: Citations | None = None,
    ) -> None:
        super().__init__(
            bot,
            chat_id,
            min_interval=min_interval,
            final_markup=final_markup,
            note=note,
            on_new_part=on_new_part,
            reply_to=reply_to,
            citations=citations,
        )
        self.draft_id = draft_id
        self.refresh = refresh
        self._draft: Part | None = None
        self._draft_index = 0
        self._refresher: asyncio.Task[None] | None = None

    async def send(self, index: int, part: Part) -> None:
        # A new part means the previous one is complete: post it for real.
        if index > 0 and self._draft is not None and self._draft_index == index - 1:
            await self._send(self._draft, None)
        await self._show_draft(index, part)

    async def edit(self, index: int, part: Part) -> None:
        if index < len(self.message_ids):
            await self._edit(index, part, None)  # a posted part changed (rare)
        else:
            await self._show_draft(index, part)

    async def delete(self, index: int) -> None:
        if index < len(self.message_ids):
            await super().delete(index)

    async def finish(self, parts: Sequence[Part], outcome: Outcome) -> None:
        self._stop_refreshing()
        posted = len(self.message_ids)
        # Every earlier part not yet posted goes out now; `finish` of the base class
        # posts the last one with the buttons and the note.
        for index in range(posted, max(len(parts) - 1, 0)):
            await self._send(parts[index], None)
        await super().finish(parts, outcome)

    async def _send_draft(self, part: Part) -> None:
        async def send(entities: list[MessageEntity]) -> bool:
            return await self.bot.send_message_draft(
                chat_id=self.chat_id, draft_id=self.draft_id, text=part.text, entities=entities
            )

        await plain_if_refused(send, part, self.chat_id)

    async def _show_draft(self, index: int, part: Part) -> None:
        try:
            await self._send_draft(part)
        except TelegramRetryAfter as exc:
            raise RetryLater(exc.retry_after) from None
        self._draft, self._draft_index = part, index
        if self._refresher is None:
            self._refresher = asyncio.create_task(self._keep_alive())

    async def _keep_alive(self) -> None:
        while True:
            await asyncio.sleep(self.refresh)
            if self._draft is None:
                return
            with contextlib.suppress(Exception):  # best effort: the next update retries
                await self._send_draft(self._draft)

    def _stop_refreshing(self) -> None:
        if self._refresher is not None:
            self._refresher.cancel()
            self._refresher = None
