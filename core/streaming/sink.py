"""What a platform provides to show a streamed answer: its limits and five calls."""

from __future__ import annotations

import asyncio
import functools
from collections.abc import AsyncIterator, Awaitable, Callable, Hashable, Sequence
from dataclasses import dataclass
from enum import StrEnum
from typing import Protocol, TypeVar, runtime_checkable

from core.streaming.throttle import ChatThrottle, RateLimiter

Part = TypeVar("Part")


@dataclass(frozen=True)
class SinkLimits:
    """Limits a platform declares.

    `max_length` is the size `Sink.split` keeps every part within, in the
    platform's own units (Telegram: 4096 UTF-16 units of the rendered text;
    Discord: 2000 characters). `min_interval` is the least time, in seconds,
    between two calls in the same chat.
    """

    max_length: int
    min_interval: float = 1.0


class RetryLater(Exception):
    """A sink raises this when the platform refuses a call as too frequent (HTTP 429,
    Telegram flood wait). Nothing changed; the chat is left alone for `retry_after` s."""

    def __init__(self, retry_after: float) -> None:
        super().__init__(f"retry after {retry_after:g} s")
        self.retry_after = max(0.0, retry_after)


class ChatUnavailable(Exception):
    """A sink raises this when the chat can no longer be written to (the person
    blocked the bot, the chat is gone). The driver stops showing the answer at
    once and stops reading it."""


class StreamStatus(StrEnum):
    """How the deltas ended, from the driver's point of view. A generation that
    was stopped or failed inside ends its iterator normally (COMPLETE here); the
    sink that wraps it reads the generation's own result for that."""

    COMPLETE = "complete"  # the delta iterator ran out
    FAILED = "failed"  # the delta iterator raised
    CANCELLED = "cancelled"  # the task running the driver was cancelled


@dataclass(frozen=True)
class Outcome:
    """How the answer ended, which its final message shows: "complete",
    "cancelled" (stopped by the person), "failed" (with the error) or
    "interrupted" (cut short by us)."""

    status: str
    error: Exception | None = None

    @classmethod
    def of(cls, status: StreamStatus) -> Outcome:
        """For deltas that know nothing more than how their iteration ended."""
        if status is StreamStatus.CANCELLED:
            return cls("interrupted")
        return cls(status.value)


@runtime_checkable
class AnswerSource(Protocol):
    """Deltas that also know how the answer ended (a generation stopped or failed
    inside ends its iteration normally): `outcome` is set once iteration is over,
    before the driver delivers the final state."""

    def __aiter__(self) -> AsyncIterator[str]: ...

    @property
    def outcome(self) -> Outcome | None: ...


@runtime_checkable
class EndingSource(Protocol):
    """Deltas that tell when the text is complete but the iteration is not over yet
    (the answer is being saved): `ending` is True from then on."""

    def __aiter__(self) -> AsyncIterator[str]: ...

    @property
    def ending(self) -> bool: ...


def answer_source(deltas: object) -> AnswerSource | None:
    """`deltas` as an `AnswerSource`, or None. What `isinstance` against the
    protocol checks, without its per-call cost (tens of µs, at every answer)."""
    return deltas if hasattr(deltas, "outcome") and hasattr(deltas, "__aiter__") else None


def ending_source(deltas: object) -> EndingSource | None:
    """`deltas` as an `EndingSource`, or None (as `answer_source`)."""
    return deltas if hasattr(deltas, "ending") and hasattr(deltas, "__aiter__") else None


class Sink(Protocol[Part]):
    """One answer on one platform. `Part` is what a message shows: a string, or the
    sink's rendered form (e.g. text + entities); the driver only compares parts
    with `==` and hands them back."""

    @property
    def limits(self) -> SinkLimits: ...

    @property
    def chat_key(self) -> Hashable:
        """The chat the calls go to; streams with equal keys share its spacing."""
        ...

    def split(self, text: str) -> Sequence[Part]:
        """The whole text so far as message parts, each within `limits.max_length`
        once shown, together showing all of it. Earlier parts should stay the
        same as the text grows, or their messages are edited again."""
        ...

    async def start(self) -> None:
        """Show that an answer is coming (typing status). Best effort."""
        ...

    async def send(self, index: int, part: Part) -> None:
        """Post part `index` as a new message (parts are posted in order)."""
        ...

    async def edit(self, index: int, part: Part) -> None:
        """Replace what posted part `index` shows ("not modified" is success)."""
        ...

    async def delete(self, index: int) -> None:
        """Remove posted part `index`, the highest one, when the text needs fewer
        parts than were posted (its rendering got shorter)."""
        ...

    async def finish(self, parts: list[Part], outcome: Outcome) -> None:
        """Show the final state. Every part but the last is already shown as given and
        no posted part lies past the end: render the last part with its final
        controls and what `outcome` calls for (posting it if it was never sent), or
        with no parts, an empty/failed notice. Called again after RetryLater or an
        error."""
        ...


def split_plain(text: str, max_len: int) -> list[str]:
    """Cut plain text into parts of at most `max_len` characters that join back to
    `text`. A cut goes after a newline, else after a space, in the second half of
    the window, else at the limit. A part's cut depends only on the text inside
    its window, so parts stay fixed once the text has grown past them."""
    if max_len < 1:
        raise ValueError("max_len must be positive")
    parts: list[str] = []
    start = 0
    while len(text) - start > max_len:
        end = start + max_len
        floor = start + max_len // 2  # a cut before this would leave a stub part
        cut = text.rfind("\n", floor, end) + 1
        if cut <= start:
            cut = text.rfind(" ", floor, end) + 1
        if cut <= start:
            cut = end
        parts.append(text[start:cut])
        start = cut
    if start < len(text):
        parts.append(text[start:])
    return parts


def final_layout(
    parts: Sequence[Part],
    note: str | None,
    *,
    merge: Callable[[Part, str], Part | None],
    note_part: Callable[[str], Part],
    empty: Part,
) -> list[Part]:
    """What a finished answer shows: its parts with `note` (how it ended) below the
    last one, in the same message if `merge` can fit it there, else in one of its
    own; with no parts, the note alone, or `empty`."""
    shown = list(parts[:-1])
    if not parts:
        return [note_part(note)] if note else [empty]
    last = parts[-1]
    if not note:
        return [*shown, last]
    merged = merge(last, note)
    return [*shown, last, note_part(note)] if merged is None else [*shown, merged]


async def show_text(
    sink: Sink[Part],
    text: str,
    *,
    patience: float = 60.0,
    chats: ChatThrottle | None = None,
    limiter: RateLimiter | None = None,
) -> None:
    """Show a finished text at once in `sink` (a revision paged to, a cut answer),
    waiting out flood limits: this is a final state and must be delivered.
    With `chats` and `limiter` (the driver's), each call takes the chat's turn and
    a global token as streamed calls do, so it neither meets nor causes a 429.
    RetryLater past `patience` seconds is raised."""
    parts = sink.split(text)
    calls: list[Callable[[], Awaitable[object]]] = [
        functools.partial(sink.send, index, part) for index, part in enumerate(parts[:-1])
    ]
    calls.append(functools.partial(sink.finish, list(parts), Outcome("complete")))
    loop = asyncio.get_running_loop()
    deadline = loop.time() + patience
    done = 0
    while done < len(calls):
        try:
            await _paced(sink, calls[done], chats, limiter)
            done += 1
        except RetryLater as exc:
            if loop.time() + exc.retry_after > deadline:
                raise
            if chats is None:  # else the chat's gate holds the next turn back
                await asyncio.sleep(exc.retry_after)


async def _paced(
    sink: Sink[Part],
    call: Callable[[], Awaitable[object]],
    chats: ChatThrottle | None,
    limiter: RateLimiter | None,
) -> None:
    if chats is None:
        await call()
        return
    async with chats.turn(sink.chat_key) as gate:
        if limiter is not None:
            await limiter.acquire()
        try:
            await call()
        except RetryLater as exc:
            gate.hold(exc.retry_after)
            raise
        gate.hold(sink.limits.min_interval)
