"""The Discord side of the streaming driver: post, edit and delete channel
messages, and map Discord's answers (429, a deleted message, a closed DM) to what
the driver understands.

Answers are channel messages, never interaction follow-ups: they do not depend
on an interaction token, which expires after 15 minutes.
"""

from __future__ import annotations

import logging
from collections.abc import Awaitable, Callable, Sequence

import discord

from bot.discord.render import DISCORD_LIMIT, split_message
from bot.discord.sources import with_sources
from core.llm.citations import Citation
from core.streaming import ChatUnavailable, Outcome, RetryLater, SinkLimits
from core.streaming.sink import final_layout

log = logging.getLogger(__name__)

# What Discord answers when the bot may no longer write there.
_CLOSED_CODES = {
    10003,  # unknown channel
    50001,  # missing access
    50007,  # cannot send messages to this user (DMs closed, bot blocked)
    50013,  # missing permissions
}
_DEFAULT_RETRY = 1.0

FinalView = Callable[[], Awaitable[discord.ui.View | None]]
Note = Callable[[Outcome, str], str | None]
Citations = Callable[[], Sequence[Citation]]


def retry_after(exc: discord.HTTPException) -> float:
    """The wait a 429 asks for: the JSON body's `retry_after`, else the header."""
    response = getattr(exc, "response", None)
    headers = getattr(response, "headers", None) or {}
    for value in (getattr(exc, "retry_after", None), headers.get("Retry-After")):
        try:
            if value is not None:
                return float(value)
        except ValueError:
            continue
    return _DEFAULT_RETRY


def translate(exc: Exception) -> Exception:
    """A Discord error as the driver's: RetryLater, ChatUnavailable, or itself."""
    if isinstance(exc, discord.RateLimited):
        return RetryLater(exc.retry_after)
    if isinstance(exc, discord.HTTPException):
        if exc.status == 429:
            return RetryLater(retry_after(exc))
        if exc.code in _CLOSED_CODES:
            return ChatUnavailable()
    return exc


def with_note(part: str, note: str) -> str | None:
    """`part` with a small note line below it, if it still fits one message."""
    merged = f"{part}\n-# {note}"
    return merged if len(merged) <= DISCORD_LIMIT else None


class DiscordSink:
    def __init__(
        self,
        channel: discord.abc.Messageable,
        channel_id: int,
        *,
        min_interval: float,
        streaming_view: Callable[[], discord.ui.View | None] | None = None,
        final_view: FinalView | None = None,
        existing: Sequence[int] = (),
        reply_to: int | None = None,
        note: Note | None = None,
        on_new_part: Callable[[list[int]], Awaitable[None]] | None = None,
        citations: Citations | None = None,
    ) -> None:
        self.citations = citations
        self.channel = channel
        self.channel_id = channel_id
        self.streaming_view = streaming_view
        self.final_view = final_view
        self.message_ids: list[int] = list(existing)
        self.reply_to = reply_to
        self.note = note
        self.on_new_part = on_new_part
        self._limits = SinkLimits(max_length=DISCORD_LIMIT, min_interval=min_interval)
        self._part_count = 0

    @property
    def limits(self) -> SinkLimits:
        return self._limits

    @property
    def chat_key(self) -> tuple[str, int]:
        return ("discord", self.channel_id)

    def split(self, text: str) -> list[str]:
        parts = split_message(text)
        self._part_count = len(parts)
        return parts

    def _live_view(self, index: int) -> discord.ui.View | None:
        """Stop belongs under the part being written, not under finished ones."""
        if self.streaming_view is None or index < self._part_count - 1:
            return None
        return self.streaming_view()

    async def start(self) -> None:
        try:
            await self.channel.typing()
        except discord.HTTPException as exc:
            raise translate(exc) from None

    async def send(self, index: int, part: str) -> None:
        if index < len(self.message_ids):  # reusing a message of the old revision
            await self._edit(index, part, self._live_view(index))
        else:
            await self._send(part, self._live_view(index))

    async def edit(self, index: int, part: str) -> None:
        await self._edit(index, part, self._live_view(index))

    async def delete(self, index: int) -> None:
        if index >= len(self.message_ids):
            return
        message = self.channel.get_partial_message(self.message_ids[index])  # type: ignore[attr-defined]
        try:
            await message.delete()
        except discord.NotFound:
            pass
        except discord.HTTPException as exc:
            raise translate(exc) from None
        self.message_ids.pop(index)

    async def finish(self, parts: Sequence[str], outcome: Outcome) -> None:
        """The last part with its buttons, its sources and the note on how the answer
        ended; messages of an old revision that are no longer needed are deleted."""
        note = self.note(outcome, "".join(parts)) if self.note else None
        sourced = with_sources(parts, self.citations() if self.citations else ())
        shown = final_layout(
            sourced, note, merge=with_note, note_part=lambda words: f"-# {words}", empty="…"
        )
        view = await self.final_view() if self.final_view else None
        first_new = len(parts) - 1 if parts else 0
        for index in range(first_new, len(shown)):
            final = index == len(shown) - 1
            if index < len(self.message_ids):
                await self._edit(index, shown[index], view if final else None)
            else:
                await self._send(shown[index], view if final else None)
        while len(self.message_ids) > len(shown):
            await self.delete(len(self.message_ids) - 1)

    # -- Discord calls --------------------------------------------------------------

    async def _send(self, text: str, view: discord.ui.View | None) -> None:
        reference = None
        if self.reply_to is not None and not self.message_ids:
            reference = discord.MessageReference(
                message_id=self.reply_to, channel_id=self.channel_id, fail_if_not_exists=False
            )
        try:
            if view is None:
                sent = await self.channel.send(text, reference=reference)  # type: ignore[arg-type]
            else:
                sent = await self.channel.send(text, reference=reference, view=view)  # type: ignore[arg-type]
        except discord.HTTPException as exc:
            raise translate(exc) from None
        self.message_ids.append(sent.id)
        if self.on_new_part is not None:
            # Linked at once: a Stop pressed on this message must find its answer.
            await self.on_new_part(list(self.message_ids))

    async def _edit(self, index: int, text: str, view: discord.ui.View | None) -> None:
        message = self.channel.get_partial_message(self.message_ids[index])  # type: ignore[attr-defined]
        try:
            await message.edit(content=text, view=view)
        except discord.NotFound:
            # The person deleted it: show this part in a fresh message instead.
            log.info("message %s in channel %s is gone; posting anew", message.id, self.channel_id)
            tail = self.message_ids[index + 1 :]
            del self.message_ids[index:]
            await self._send(text, view)
            self.message_ids.extend(tail)
        except discord.HTTPException as exc:
            raise translate(exc) from None
