"""The driver: reads the deltas, keeps the platform showing the newest text under
its limits, and always delivers the final state.

Rules, and where they are kept:

1. `sink.start()` (typing) is called at once and again every `typing_interval`
   until the first token, each time only with spare global budget (`keep_typing`).
2. The first token is posted as soon as it arrives, never held back to collect
   more text. Like every call it takes the chat's turn and a global token: the
   platform limits calls per chat whichever stream makes them, so it can wait
   for the turns other streams of the same chat queued first (`push`).
3. Every call takes the chat's turn (`ChatThrottle`: one call at a time, each
   starting at least `min_interval` after the previous one returned, shared by
   all streams of the chat) and a global token (`RateLimiter`). The text is read
   after both waits, so each call shows the newest text and nothing stale is
   ever queued. Deltas are read by their own task (`read`), which never awaits
   the sink.
4. `RetryLater` holds the chat for `retry_after`; the next call uses the newest
   text. Other errors are logged and retried after a growing pause.
5. `sink.split` gives the parts; they are synced lowest index first (edit a part
   whose text changed, post the next one, delete parts the text no longer
   needs), so an answer past the limit goes on in a new message, the earlier one
   gets its final text, and nothing is cut.
6. Once an `EndingSource` says its text is complete, the next call is the final
   one: the text that came since the last call waits for it, instead of taking a
   call of its own while the answer is being saved.
7. When the deltas end (run out, raise, or the task is cancelled) the final state
   is delivered: earlier parts synced, extra parts deleted, then `finish` with
   the answer's `Outcome` (the source's own, for an `AnswerSource`), retried
   until it succeeds or `final_timeout` passes (then logged). The pusher keeps
   that deadline itself (`_Stream.push`), so delivery needs no task of its own.
8. `run` returns a `DriverResult`; an exception from the deltas becomes status
   FAILED and `result.error`. Cancelling `run` delivers the final state (status
   CANCELLED), then re-raises CancelledError; cancelling it again while it waits
   for that delivery does not stop the delivery.
9. `ChatUnavailable` from the sink (the person blocked the bot) ends everything at
   once: no more calls, the deltas stop being read, `result.abandoned` is True.
"""

from __future__ import annotations

import asyncio
import logging
from collections.abc import AsyncIterable, Coroutine, Sequence
from dataclasses import dataclass
from typing import Any, Generic, Literal, TypeVar

from core.streaming.sink import (
    ChatUnavailable,
    Outcome,
    RetryLater,
    Sink,
    StreamStatus,
    answer_source,
    ending_source,
)
from core.streaming.throttle import ChatThrottle, RateLimiter

log = logging.getLogger(__name__)

Part = TypeVar("Part")
T = TypeVar("T")

_MAX_ERROR_PAUSE = 10.0  # seconds; cap of the pause after a failed (non-429) call

_Op = tuple[Literal["send", "edit", "delete", "finish"], int]


@dataclass(frozen=True)
class DriverResult(Generic[Part]):
    """What one stream did. `delivered` is False only when the final state could
    not be shown within `final_timeout`."""

    text: str
    parts: tuple[Part, ...]
    status: StreamStatus
    outcome: Outcome
    delivered: bool
    sends: int
    edits: int
    deletes: int
    retries: int  # calls refused with RetryLater
    failures: int  # calls that raised anything else
    error: BaseException | None = None  # what the delta iterator raised
    abandoned: bool = False  # the chat became unavailable (ChatUnavailable)


class StreamDriver:
    """Shows streamed answers on one platform. Create one per bot and share it:
    its limiter and chat throttle are what keep all the streams within limits."""

    def __init__(
        self,
        *,
        global_limiter: RateLimiter,
        chats: ChatThrottle | None = None,
        final_timeout: float = 60.0,
    ) -> None:
        self.limiter = global_limiter
        self.chats = chats if chats is not None else ChatThrottle()
        self.final_timeout = final_timeout
        # Tasks that may outlive `run` (a cancelled reader, a pusher delivering)
        # need a strong reference until they end.
        self._tasks: set[asyncio.Task[Any]] = set()

    async def run(
        self, sink: Sink[Part], deltas: AsyncIterable[str], *, typing_interval: float = 4.0
    ) -> DriverResult[Part]:
        stream = _Stream(self, sink, deltas)
        typing = self._spawn(stream.keep_typing(typing_interval))
        reader = stream.reader = self._spawn(stream.read(deltas))
        pusher = self._spawn(stream.push())
        try:
            # Only the reader is awaited: the pusher cancels it if the chat becomes
            # unavailable, so one wait covers both ends.
            await asyncio.wait([reader])
        except asyncio.CancelledError:
            reader.cancel()
            # The source settles its outcome as its iteration unwinds.
            await asyncio.shield(asyncio.wait([reader], timeout=self.final_timeout))
            await self._settle(stream, StreamStatus.CANCELLED, typing, pusher)
            raise
        if stream.abandoned:  # the pusher gave up first: the chat is unavailable
            typing.cancel()
            stream.end(StreamStatus.CANCELLED)
            return stream.result()
        if reader.cancelled():  # the iterator raised CancelledError by itself
            await self._settle(stream, StreamStatus.CANCELLED, typing, pusher)
        elif (error := reader.exception()) is not None:
            stream.error = error
            await self._settle(stream, StreamStatus.FAILED, typing, pusher)
        else:
            await self._settle(stream, StreamStatus.COMPLETE, typing, pusher)
        return stream.result()

    async def _settle(
        self,
        stream: _Stream[Any],
        status: StreamStatus,
        typing: asyncio.Task[None],
        pusher: asyncio.Task[None],
    ) -> None:
        typing.cancel()
        stream.end(status)  # the pusher now has `final_timeout` to deliver it
        # Waiting does not cancel the pusher if the caller is cancelled again: the
        # final edit still goes out (the pusher is held in `_tasks`).
        await asyncio.wait([pusher])

    def _spawn(self, coro: Coroutine[Any, Any, T]) -> asyncio.Task[T]:
        task = asyncio.create_task(coro)
        self._tasks.add(task)
        task.add_done_callback(self._tasks.discard)
        return task


class _Stream(Generic[Part]):
    """One answer: the text that arrived and what the platform shows of it."""

    def __init__(self, driver: StreamDriver, sink: Sink[Part], deltas: AsyncIterable[str]) -> None:
        self.driver = driver
        self.sink = sink
        self.deltas = deltas
        # The source's own `ending` (rule 6), when it has one.
        self._ends = ending_source(deltas)
        self.text = ""
        self.status: StreamStatus | None = None  # set once the deltas ended
        self.outcome: Outcome | None = None
        self.reader: asyncio.Task[None] | None = None  # the task reading the deltas
        self.error: BaseException | None = None
        self.abandoned = False
        self.changed = asyncio.Event()  # there may be something new to show
        self.has_text = asyncio.Event()  # first token (or the end): typing stops
        self.parts: Sequence[Part] = ()  # the newest split
        self.shown: list[Part] = []  # what each posted part shows
        self.live: set[int] = set()  # the posted parts showing the live controls
        self.delivered = False
        self._deadline: asyncio.Timeout | None = None  # the pusher's, while it runs
        self.sends = self.edits = self.deletes = self.retries = self.failures = 0
        self._streak = 0  # consecutive failed calls

    def end(self, status: StreamStatus) -> None:
        self.status = status
        source = answer_source(self.deltas)
        own = source.outcome if source is not None else None
        self.outcome = own or Outcome.of(status)
        self.has_text.set()
        self.changed.set()
        self._arm()

    def _arm(self) -> None:
        """Once the deltas ended, the final state has `final_timeout` to go out."""
        if self._deadline is not None and self._deadline.when() is None:
            loop = asyncio.get_running_loop()
            self._deadline.reschedule(loop.time() + self.driver.final_timeout)

    def result(self) -> DriverResult[Part]:
        assert self.status is not None and self.outcome is not None
        return DriverResult(
            text=self.text,
            parts=tuple(self.parts),
            status=self.status,
            outcome=self.outcome,
            delivered=self.delivered,
            sends=self.sends,
            edits=self.edits,
            deletes=self.deletes,
            retries=self.retries,
            failures=self.failures,
            error=self.error,
            abandoned=self.abandoned,
        )

    async def read(self, deltas: AsyncIterable[str]) -> None:
        async for delta in deltas:
            if delta:
                self.text += delta
                self.has_text.set()
                self.changed.set()
                if not self.shown:
                    # Until the first post is back, a burst of deltas is read one
                    # loop turn at a time: the post (and, on this loop, whatever
                    # serves it) goes first. Reading is not held up in time.
                    await asyncio.sleep(0)

    async def keep_typing(self, interval: float) -> None:
        while True:
            # Typing is cosmetic: it never takes budget that posts and edits are
            # waiting for (under load it is skipped).
            if await self.driver.limiter.try_take():
                try:
                    await self.sink.start()
                except Exception:
                    log.debug("typing status failed in chat %r", self.sink.chat_key, exc_info=True)
            try:
                # A timeout scope, not wait_for: no task of its own per answer.
                async with asyncio.timeout(interval):
                    await self.has_text.wait()
                return
            except TimeoutError:
                pass

    async def push(self) -> None:
        """Until the final state is shown (or `final_timeout` after the deltas
        ended): wait for news, take a turn, make one call."""
        deadline = self._deadline = asyncio.timeout(None)
        try:
            async with deadline:
                if self.status is not None:
                    self._arm()
                await self._push()
        except TimeoutError:
            if not deadline.expired():
                raise
            log.error(
                "gave up showing the final answer in chat %r after %g s",
                self.sink.chat_key,
                self.driver.final_timeout,
            )
        finally:
            self._deadline = None

    async def _push(self) -> None:
        interval = self.sink.limits.min_interval
        while not self.delivered:
            await self._news(interval)
            async with self.driver.chats.turn(self.sink.chat_key) as gate:
                if self.status is None and self.shown and self._ending():
                    self.changed.clear()
                    continue  # the final call comes next (rule 6)
                await self.driver.limiter.acquire()
                # Cleared only now: whatever arrived during the waits is shown below.
                self.changed.clear()
                final = self.status is not None
                try:
                    self.parts = self.sink.split(self.text)
                    op = self._next_op(final)
                    if op is None:
                        continue
                    gate.hold(interval)
                    await self._apply(op)
                    # Again from the answer: the platform spaces calls by when they
                    # arrived, which may be later than when they were sent.
                    gate.hold(interval)
                except ChatUnavailable:
                    log.info("chat %r is unavailable; the answer is dropped", self.sink.chat_key)
                    self.abandoned = True
                    self.delivered = True
                    if self.reader is not None:
                        self.reader.cancel()  # stop reading the answer too
                    return
                except RetryLater as exc:
                    self.retries += 1
                    gate.hold(exc.retry_after)
                    self.changed.set()
                    continue
                except Exception:
                    self.failures += 1
                    self._streak += 1
                    log.warning(
                        "streaming call failed in chat %r", self.sink.chat_key, exc_info=True
                    )
                    gate.hold(min(interval * 2**self._streak, _MAX_ERROR_PAUSE))
                    self.changed.set()
                    continue
                self._streak = 0
                if not self.delivered and self._next_op(final) is not None:
                    self.changed.set()

    def _ending(self) -> bool:
        return self._ends is not None and self._ends.ending

    async def _news(self, interval: float) -> None:
        """Until there may be something new to show. Before the first post, at once
        (the first token is never held back). After it, the next call waits its
        turn anyway: look again every `interval`, or as soon as the deltas end
        (only the latter once the source is ending).
        Waiting on the reader rather than on an event also lets a simulated clock
        see a streaming answer as one wait on the network."""
        reader = self.reader
        while not self.changed.is_set():
            if not self.shown or reader is None or reader.done():
                await self.changed.wait()
            elif self._ending():
                # Nothing goes out before the final call (rule 6), which comes
                # when the reader ends: no need to look every interval meanwhile.
                await asyncio.wait({reader})
            else:
                await asyncio.wait({reader}, timeout=interval)

    def _next_op(self, final: bool) -> _Op | None:
        """The next call that brings what is shown closer to `parts`, or None.

        Lower parts first, and a part's new text before a part is deleted, so the
        text is never missing from the chat (if briefly shown twice). At the end
        the last part is left to `finish`, which adds the final controls in the
        same call.
        """
        parts, shown = self.parts, self.shown
        synced = len(parts) - 1 if final else len(parts)
        for index in range(min(synced, len(shown))):
            if parts[index] != shown[index]:
                return ("edit", index)
        if len(shown) < synced:
            return ("send", len(shown))
        # A part posted as the last one carries the live controls (Stop): once the
        # part after it is posted (with them), it is edited to drop them, even if
        # its text stayed the same.
        for index in sorted(self.live):
            if index < min(synced, len(shown)) and index < len(parts) - 1:
                return ("edit", index)
        if len(shown) > len(parts):
            return ("delete", len(shown) - 1)
        return ("finish", len(parts) - 1) if final else None

    def _track_live(self, index: int) -> None:
        """The sink shows the live controls under the last part only."""
        if index == len(self.parts) - 1:
            self.live.add(index)
        else:
            self.live.discard(index)

    async def _apply(self, op: _Op) -> None:
        kind, index = op
        parts = self.parts
        if kind == "edit":
            await self.sink.edit(index, parts[index])
            self.shown[index] = parts[index]
            self.edits += 1
            self._track_live(index)
        elif kind == "send":
            await self.sink.send(index, parts[index])
            self.shown.append(parts[index])
            self.sends += 1
            self._track_live(index)
        elif kind == "delete":
            await self.sink.delete(index)
            self.shown.pop()
            self.deletes += 1
        else:
            assert self.outcome is not None
            await self.sink.finish(list(parts), self.outcome)
            self.shown = list(parts)
            self.delivered = True
