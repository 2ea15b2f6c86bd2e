"""The streaming driver, against a recording fake sink.

Most tests run on a virtual-clock event loop: sleeping is instant and the clock
jumps to the next timer, so timings are exact and the suite is fast and never
flaky. One smoke test runs on the real clock to show the defaults hold there too.
"""

from __future__ import annotations

import asyncio
import itertools
import logging
import random
import selectors
from collections.abc import AsyncIterator, Callable, Coroutine, Hashable, Iterable, Sequence
from dataclasses import dataclass
from typing import Any, TypeVar

import pytest
from hypothesis import given
from hypothesis import strategies as st

from core.streaming import (
    ChatThrottle,
    ChatUnavailable,
    DriverResult,
    EndingSource,
    Outcome,
    RateLimiter,
    RetryLater,
    SinkLimits,
    StreamDriver,
    StreamStatus,
    split_plain,
)
from core.streaming.sink import ending_source

T = TypeVar("T")
EPS = 1e-6


# --- a virtual clock ---------------------------------------------------------


class _VirtualSelector(selectors.SelectSelector):
    """Polls real descriptors without blocking; waiting for a timer moves the clock."""

    def __init__(self) -> None:
        super().__init__()
        self.now = 0.0

    def select(self, timeout: float | None = None) -> list[tuple[selectors.SelectorKey, int]]:
        ready = super().select(0)
        if ready or timeout == 0:
            return ready
        if timeout is None:
            raise RuntimeError("deadlock: every task waits and no timer is due")
        self.now += timeout
        return []


class VirtualClockLoop(asyncio.SelectorEventLoop):
    def __init__(self) -> None:
        self._virtual = _VirtualSelector()
        super().__init__(self._virtual)

    def time(self) -> float:
        return self._virtual.now


def virtual(main: Coroutine[Any, Any, T]) -> T:
    with asyncio.Runner(loop_factory=VirtualClockLoop) as runner:
        return runner.run(main)


def now() -> float:
    return asyncio.get_running_loop().time()


# --- a recording sink ----------------------------------------------------------


@dataclass(frozen=True)
class Call:
    at: float
    op: str  # start | send | edit | delete | finish
    index: int
    text: str
    chat: Hashable
    error: BaseException | None  # raised instead of doing the call


Fault = Callable[[str, int], BaseException | None]


class FakeSink:
    """Records every call and keeps what the chat would show. Contract breaches are
    collected in `problems` (raising would only make the driver retry)."""

    def __init__(
        self,
        *,
        chat: Hashable = 1,
        max_length: int = 4096,
        min_interval: float = 1.0,
        delay: float = 0.0,
        fault: Fault | None = None,
        split: Callable[[str], list[str]] | None = None,
    ) -> None:
        self.limits = SinkLimits(max_length=max_length, min_interval=min_interval)
        self.chat_key = chat
        self.delay = delay
        self.fault = fault
        self.calls: list[Call] = []
        self._split = split
        self.messages: dict[int, str] = {}
        self.final: tuple[list[str], str] | None = None
        self.problems: list[str] = []
        self._count = 0
        self.live: set[int] = set()  # the parts showing the live controls

    def split(self, text: str) -> list[str]:
        parts = (
            self._split(text)
            if self._split is not None
            else split_plain(text, self.limits.max_length)
        )
        self._count = len(parts)
        return parts

    def _track_live(self, index: int) -> None:
        # Like a platform sink: the live controls (Stop) show under the last part.
        if index == self._count - 1:
            self.live.add(index)
        else:
            self.live.discard(index)

    async def _call(self, op: str, index: int = -1, text: str = "") -> None:
        error = self.fault(op, index) if self.fault else None
        self.calls.append(Call(now(), op, index, text, self.chat_key, error))
        if self.delay:
            await asyncio.sleep(self.delay)
        if error is not None:
            raise error

    def _check(self, ok: bool, problem: str) -> None:
        if not ok:
            self.problems.append(problem)

    async def start(self) -> None:
        await self._call("start")

    async def send(self, index: int, part: str) -> None:
        self._check(index == len(self.messages), f"send({index}) out of order")
        self._check(len(part) <= self.limits.max_length, f"part {index} too long")
        await self._call("send", index, part)
        self.messages[index] = part
        self._track_live(index)

    async def edit(self, index: int, part: str) -> None:
        self._check(index in self.messages, f"edit({index}) of a part never sent")
        dropping_controls = index in self.live and index < self._count - 1
        self._check(
            self.messages.get(index) != part or dropping_controls, f"edit({index}) changes nothing"
        )
        self._check(len(part) <= self.limits.max_length, f"part {index} too long")
        await self._call("edit", index, part)
        self.messages[index] = part
        self._track_live(index)

    async def delete(self, index: int) -> None:
        self._check(index == max(self.messages, default=-1), f"delete({index}) not the last")
        await self._call("delete", index)
        del self.messages[index]

    async def finish(self, parts: Sequence[str], outcome: Outcome) -> None:
        last = len(parts) - 1
        self._check(
            [self.messages.get(i) for i in range(last)] == list(parts[:-1]),
            "finish before earlier parts were shown",
        )
        self._check(max(self.messages, default=-1) <= last, "finish with extra parts posted")
        await self._call("finish", last, parts[-1] if parts else "")
        if parts:
            self.messages[last] = parts[-1]
        self.final = (list(parts), outcome.status)

    def visible(self) -> str:
        return "".join(self.messages[i] for i in sorted(self.messages))

    def done(self, op: str | None = None) -> list[Call]:
        """Calls that went through (not refused), optionally of one kind."""
        return [c for c in self.calls if c.error is None and (op is None or c.op == op)]


def updates(calls: Iterable[Call]) -> list[Call]:
    """Calls the chat throttle governs (typing is not one of them)."""
    return [c for c in calls if c.op != "start"]


def assert_spaced(calls: Iterable[Call], interval: float) -> None:
    times = sorted(c.at for c in updates(calls))
    gaps = [b - a for a, b in itertools.pairwise(times)]
    assert all(gap >= interval - EPS for gap in gaps), min(gaps)


def words(length: int) -> str:
    """Deterministic prose-like text of exactly `length` characters."""
    out: list[str] = []
    size = 0
    i = 0
    while size < length:
        piece = f"word{i}" + ("\n" if i % 12 == 11 else " ")
        out.append(piece)
        size += len(piece)
        i += 1
    return "".join(out)[:length]


def chunks(text: str, size: int) -> list[str]:
    return [text[i : i + size] for i in range(0, len(text), size)]


async def paced(
    deltas: Iterable[str],
    every: float,
    *,
    first_after: float = 0.0,
    times: list[float] | None = None,
) -> AsyncIterator[str]:
    """Yield `deltas` `every` seconds apart; `times` records when each was yielded
    and, last, when the consumer asked past the end."""
    await asyncio.sleep(first_after)
    for i, delta in enumerate(deltas):
        if i:
            await asyncio.sleep(every)
        if times is not None:
            times.append(now())
        yield delta
    if times is not None:
        times.append(now())


def driver(rate: float = 1000.0, burst: float | None = None) -> StreamDriver:
    return StreamDriver(global_limiter=RateLimiter(rate, burst))


# --- split_plain ------------------------------------------------------------------


def test_split_plain_prefers_newlines_then_spaces_then_cuts() -> None:
    assert split_plain("", 10) == []
    assert split_plain("short", 10) == ["short"]
    assert split_plain("aaaaaa\nbbbbbbbb", 10) == ["aaaaaa\n", "bbbbbbbb"]
    assert split_plain("aaaaaa bbbbbbbb", 10) == ["aaaaaa ", "bbbbbbbb"]
    assert split_plain("a" * 25, 10) == ["a" * 10, "a" * 10, "a" * 5]
    # A newline early in the window would leave a stub part: cut at a later space.
    assert split_plain("a\nbbbbb cccccc", 10) == ["a\nbbbbb ", "cccccc"]


@given(st.text(alphabet="ab \n", max_size=300), st.integers(1, 40), st.data())
def test_split_plain_keeps_all_text_and_earlier_parts_stable(
    text: str, max_len: int, data: st.DataObject
) -> None:
    parts = split_plain(text, max_len)
    assert "".join(parts) == text
    assert all(0 < len(p) <= max_len for p in parts)
    # Parts before the last never change as the text grows.
    prefix = text[: data.draw(st.integers(0, len(text)))]
    early = split_plain(prefix, max_len)[:-1]
    assert parts[: len(early)] == early


# --- limits ---------------------------------------------------------------------


def test_rate_limiter_allows_a_burst_then_the_rate() -> None:
    async def main() -> None:
        limiter = RateLimiter(rate=5, burst=2)
        times = []
        for _ in range(6):
            await limiter.acquire()
            times.append(now())
        assert times == pytest.approx([0, 0, 0.2, 0.4, 0.6, 0.8])
        assert not limiter.try_acquire()
        await asyncio.sleep(0.2)
        assert limiter.try_acquire()

    virtual(main())


def test_rate_limiter_does_not_catch_up_after_the_loop_stalls() -> None:
    """Waiters that overslept a stalled loop (a GC pause, a slow callback) must not
    all go at once: the platform counts calls as they arrive and would answer the
    catch-up with 429s."""

    async def main() -> None:
        loop = asyncio.get_running_loop()
        assert isinstance(loop, VirtualClockLoop)
        rate = 25.0
        limiter = RateLimiter(rate, burst=1)
        grants: list[float] = []

        async def call() -> None:
            await limiter.acquire()
            grants.append(now())

        def stall() -> None:  # the loop runs nothing for half a second
            loop._virtual.now += 0.5

        loop.call_at(0.3, stall)
        await asyncio.gather(*(call() for _ in range(100)))
        windows = [sum(1 for t in grants if start <= t < start + 1.0) for start in grants]
        assert max(windows) <= rate + 1
        gaps = [b - a for a, b in itertools.pairwise(grants)]
        assert min(gaps) >= 1 / rate - EPS

    virtual(main())


def test_rate_limiter_serves_waiters_in_order_and_survives_cancellation() -> None:
    async def main() -> None:
        limiter = RateLimiter(rate=10, burst=1)
        order: list[int] = []

        async def call(index: int) -> None:
            await limiter.acquire()
            order.append(index)

        tasks = [asyncio.create_task(call(i)) for i in range(5)]
        await asyncio.sleep(0)
        tasks[2].cancel()
        await asyncio.gather(*tasks, return_exceptions=True)
        assert order == [0, 1, 3, 4]
        assert not limiter.try_acquire()  # the last call just took the token
        await asyncio.sleep(0.1 + EPS)
        assert limiter.try_acquire()

    virtual(main())


def test_chat_throttle_forgets_idle_chats() -> None:
    async def main() -> None:
        throttle = ChatThrottle()
        for key in range(1000):
            async with throttle.turn(("old", key)) as gate:
                gate.hold(1.0)
        await asyncio.sleep(2)
        for key in range(2000):
            async with throttle.turn(("new", key)) as gate:
                gate.hold(1.0)
        assert len(throttle) == 2000

    virtual(main())


# --- the driver: timing ---------------------------------------------------------


def test_typing_is_refreshed_until_the_first_token_then_stops() -> None:
    async def main() -> None:
        sink = FakeSink(min_interval=1.0)
        deltas = paced(["x"] * 11, every=1.0, first_after=10.0)
        await driver().run(sink, deltas, typing_interval=4.0)
        starts = [c.at for c in sink.calls if c.op == "start"]
        assert starts == pytest.approx([0, 4, 8])
        assert sink.calls[0].op == "start"
        assert sink.done("send")[0].at == pytest.approx(10.0)

    virtual(main())


def test_typing_only_uses_spare_global_budget() -> None:
    """Typing is cosmetic: with the budget spent by others (posts and edits of
    other streams) it is skipped, and the first post is not delayed by it."""

    async def main() -> None:
        limiter = RateLimiter(rate=0.1, burst=1)
        await limiter.acquire()  # the budget is spent by someone else
        sink = FakeSink()
        await StreamDriver(global_limiter=limiter).run(
            sink, paced(["hi"], 0, first_after=10.0), typing_interval=4.0
        )
        assert [c.at for c in sink.calls if c.op == "start"] == []
        assert sink.done("send")[0].at == pytest.approx(10.0)

    virtual(main())


def test_first_token_is_posted_at_once_even_with_a_long_interval() -> None:
    async def main() -> None:
        sink = FakeSink(min_interval=30.0)
        deltas = paced(["Hel", "lo", "!"], every=0.5, first_after=2.5)
        result = await driver().run(sink, deltas)
        first = sink.done("send")[0]
        assert first.at == pytest.approx(2.5, abs=EPS)
        assert (first.index, first.text) == (0, "Hel")
        # The rest waits for the chat's interval, then arrives in one final call.
        assert [c.op for c in updates(sink.calls)] == ["send", "finish"]
        assert sink.done("finish")[0].at == pytest.approx(32.5)
        assert sink.visible() == result.text == "Hello!"

    virtual(main())


def test_a_burst_of_deltas_does_not_hold_back_the_first_post() -> None:
    """Deltas that are all there at once (one network read) are read on while the
    first post is in flight, not before it starts: the first post carries the first
    token, and every delta is still read at once."""

    async def main() -> None:
        read: list[int] = []
        sink = FakeSink(min_interval=1.0, delay=0.3)

        async def burst() -> AsyncIterator[str]:
            for i in range(50):
                read.append(len(sink.calls))
                yield f"d{i} "

        result = await driver().run(sink, burst())
        first = sink.done("send")[0]
        assert (first.at, first.text) == (0.0, "d0 ")
        assert read[-1] > read[0]  # the post started while the burst was read
        assert [c.op for c in updates(sink.calls)] == ["send", "finish"]
        assert sink.done("finish")[0].at == pytest.approx(1.3)  # after the 0.3 s post
        assert sink.visible() == result.text == "".join(f"d{i} " for i in range(50))

    virtual(main())


def test_edits_are_spaced_per_chat_and_show_the_newest_text() -> None:
    async def main() -> None:
        deltas = [f"t{i} " for i in range(500)]
        times: list[float] = []
        sink = FakeSink(min_interval=1.0)
        result = await driver().run(sink, paced(deltas, 0.01, times=times))
        assert_spaced(sink.calls, 1.0)
        assert [c.op for c in updates(sink.calls)] == ["send"] + ["edit"] * 4 + ["finish"]
        full = "".join(deltas)
        for call in updates(sink.calls):
            arrived = "".join(d for d, t in zip(deltas, times, strict=False) if t < call.at - EPS)
            assert full.startswith(call.text) or call.op == "finish"
            assert len(call.text) >= len(arrived)  # nothing older than what had arrived
        assert sink.visible() == result.text == full
        assert sink.final == ([full], StreamStatus.COMPLETE)
        assert not sink.problems

    virtual(main())


def test_a_burst_within_one_interval_is_merged_into_one_edit() -> None:
    async def bursty() -> AsyncIterator[str]:
        yield "start "
        await asyncio.sleep(0.5)
        for i in range(100):
            yield f"b{i} "
            await asyncio.sleep(0.001)
        await asyncio.sleep(5)
        yield "end"

    async def main() -> None:
        sink = FakeSink(min_interval=1.0)
        result = await driver().run(sink, bursty())
        during = [c for c in updates(sink.calls) if c.at < 5]
        assert [c.op for c in during] == ["send", "edit"]
        assert during[1].text == "start " + "".join(f"b{i} " for i in range(100))
        assert sink.visible() == result.text

    virtual(main())


def test_a_slow_sink_does_not_slow_reading_the_deltas() -> None:
    async def main() -> None:
        times: list[float] = []
        deltas = [f"d{i} " for i in range(100)]
        sink = FakeSink(min_interval=0.05, delay=0.2)
        result = await driver().run(sink, paced(deltas, 0.01, times=times))
        assert times[-1] == pytest.approx(0.99, abs=EPS)  # as if the sink took no time
        # Meanwhile the sink was busy all along: back-to-back 0.2 s calls.
        starts = [c.at for c in updates(sink.calls)]
        assert len(starts) >= 5 and starts[-1] >= times[-1]
        assert sink.visible() == result.text == "".join(deltas)

    virtual(main())


def test_two_streams_in_one_chat_share_its_interval() -> None:
    async def main() -> None:
        a = FakeSink(chat="c", min_interval=1.0)
        b = FakeSink(chat="c", min_interval=1.0)
        d = driver()
        ra, rb = await asyncio.gather(
            d.run(a, paced([f"a{i} " for i in range(120)], 0.05)),
            d.run(b, paced([f"b{i} " for i in range(120)], 0.05, first_after=0.3)),
        )
        assert_spaced(a.calls + b.calls, 1.0)
        # The chat's turns alternate between the streams.
        chat = [c.text[0] for c in sorted(updates(a.calls + b.calls), key=lambda c: c.at)]
        assert chat == ["a", "b", "a", "b", "a", "b", "a", "b"]
        assert (a.visible(), b.visible()) == (ra.text, rb.text)
        # b's first token arrived at 0.3 and waited only for the chat's interval
        # after a's first post: a, once posted, asks for a turn when one can come.
        assert b.done("send")[0].at == pytest.approx(1.0)

    virtual(main())


def test_the_chat_interval_counts_from_when_a_call_returned() -> None:
    """The platform spaces a chat's calls by when they arrive, and a slow call may
    arrive as late as it returns: the next one starts an interval after that."""

    async def main() -> None:
        latency, interval = 0.3, 1.0
        sink = FakeSink(min_interval=interval, delay=latency)
        result = await driver().run(sink, paced([f"w{i} " for i in range(30)], 0.1))
        assert result.delivered and sink.visible() == result.text
        assert len(updates(sink.calls)) > 2
        assert_spaced(sink.calls, interval + latency)

    virtual(main())


def test_the_global_limiter_caps_calls_across_50_chats() -> None:
    async def main() -> None:
        rate, burst = 25.0, 5.0
        d = driver(rate, burst)
        sinks = [FakeSink(chat=i, min_interval=1.0) for i in range(50)]
        texts = [[f"c{i}w{j} " for j in range(80)] for i in range(50)]
        results = await asyncio.gather(
            *(d.run(s, paced(t, 0.05)) for s, t in zip(sinks, texts, strict=True))
        )
        times = sorted(c.at for s in sinks for c in updates(s.calls))
        windows = [sum(1 for t in times if start <= t < start + 1.0) for start in times]
        assert max(windows) <= burst + rate
        assert max(windows) >= rate - 1  # the cap, not the chats' own pace, was binding
        for sink, text, result in zip(sinks, texts, results, strict=True):
            assert result.delivered and sink.visible() == "".join(text)
            assert_spaced(sink.calls, 1.0)

    virtual(main())


# --- the driver: retries and errors ---------------------------------------------


@pytest.mark.parametrize("seed", range(5))
def test_a_storm_of_retry_later_still_ends_with_the_exact_text(seed: int) -> None:
    rng = random.Random(seed)

    def fault(op: str, index: int) -> BaseException | None:
        if op != "start" and rng.random() < 0.5:
            return RetryLater(rng.uniform(0.1, 1.5))
        return None

    async def main() -> None:
        deltas = [f"s{i} " for i in range(400)]
        sink = FakeSink(min_interval=0.5, max_length=300, fault=fault)
        result = await driver().run(sink, paced(deltas, 0.02))
        full = "".join(deltas)
        assert result.delivered and result.retries >= 5
        assert sink.visible() == result.text == full
        assert sink.final == (split_plain(full, 300), StreamStatus.COMPLETE)
        calls = updates(sink.calls)
        for call, following in itertools.pairwise(calls):
            if isinstance(call.error, RetryLater):
                assert following.at >= call.at + call.error.retry_after - EPS
        assert_spaced(calls, 0.5)
        assert not sink.problems

    virtual(main())


def test_other_sink_errors_are_logged_and_retried(caplog: pytest.LogCaptureFixture) -> None:
    failed: list[bool] = []

    def fault(op: str, index: int) -> BaseException | None:
        if op == "edit" and not failed:
            failed.append(True)
            return RuntimeError("network")
        return None

    async def main() -> DriverResult[str]:
        sink = FakeSink(min_interval=1.0, fault=fault)
        result = await driver().run(sink, paced([f"e{i} " for i in range(300)], 0.01))
        assert sink.visible() == result.text
        return result

    with caplog.at_level(logging.WARNING, logger="core.streaming"):
        result = virtual(main())
    assert result.failures == 1 and result.delivered
    assert "streaming call failed" in caplog.text


def test_an_unavailable_chat_ends_the_stream_at_once() -> None:
    """A person who blocked the bot: no more calls, and the deltas stop being read."""
    read: list[float] = []

    def fault(op: str, index: int) -> BaseException | None:
        return ChatUnavailable() if op == "edit" else None

    async def main() -> tuple[DriverResult[str], FakeSink]:
        sink = FakeSink(min_interval=1.0, fault=fault)
        deltas = paced([f"x{i} " for i in range(100)], 0.1, times=read)
        return await driver().run(sink, deltas), sink

    result, sink = virtual(main())
    assert result.abandoned
    assert result.status is StreamStatus.CANCELLED
    assert [c.op for c in sink.calls if c.op != "start"] == ["send", "edit"]
    assert len(read) < 20  # stopped reading soon after the refusal, not at the end


def test_final_delivery_gives_up_after_the_timeout(caplog: pytest.LogCaptureFixture) -> None:
    def fault(op: str, index: int) -> BaseException | None:
        return RetryLater(7.0) if op == "finish" else None

    async def main() -> tuple[DriverResult[str], float]:
        result = await driver().run(FakeSink(fault=fault), paced(["hi"], 0))
        return result, now()

    with caplog.at_level(logging.ERROR, logger="core.streaming"):
        result, ended_at = virtual(main())
    assert not result.delivered
    assert ended_at == pytest.approx(60.0)
    assert "gave up showing the final answer" in caplog.text


async def cancelled_twice(sink: FakeSink) -> None:
    """A run of 100 deltas 0.1 s apart, cancelled at 0.55 s and again at 0.65 s (the
    caller gives up waiting for the final edit): it re-raises."""
    task = asyncio.create_task(driver().run(sink, paced(["x"] * 100, 0.1)))
    await asyncio.sleep(0.55)
    task.cancel()
    await asyncio.sleep(0.1)
    task.cancel()
    with pytest.raises(asyncio.CancelledError):
        await task


def test_a_delivery_its_caller_stopped_waiting_for_still_gives_up_in_time(
    caplog: pytest.LogCaptureFixture,
) -> None:
    """Cancelled twice, `run` re-raises at once; the final call goes on being
    retried, and stops `final_timeout` after the deltas ended, as when awaited."""

    def fault(op: str, index: int) -> BaseException | None:
        return RetryLater(7.0) if op == "finish" else None

    async def main() -> FakeSink:
        sink = FakeSink(fault=fault)
        await cancelled_twice(sink)
        await asyncio.sleep(120)
        return sink

    with caplog.at_level(logging.ERROR, logger="core.streaming"):
        sink = virtual(main())
    finishes = [c.at for c in sink.calls if c.op == "finish"]
    assert sink.final is None and len(finishes) > 5
    assert max(finishes) < 0.55 + 60.0 <= max(finishes) + 7.0 + EPS
    assert "gave up showing the final answer" in caplog.text


# --- the driver: parts ----------------------------------------------------------


def test_a_long_answer_rolls_over_into_new_messages_without_losing_text() -> None:
    async def main() -> None:
        full = words(10_000)
        sink = FakeSink(max_length=4096, min_interval=0.5)
        result = await driver().run(sink, paced(chunks(full, 25), 0.01))
        final_parts = split_plain(full, 4096)
        assert len(final_parts) == 3
        assert sink.final == (final_parts, StreamStatus.COMPLETE)
        assert sink.visible() == result.text == full
        assert [len(p) <= 4096 for p in result.parts] == [True] * 3
        done = updates(sink.done())
        for index in (1, 2):
            # The part appears with a send, or with finish when it is the last.
            rollover = next(i for i, c in enumerate(done) if c.index == index)
            before = [c for c in done[:rollover] if c.index == index - 1]
            after = [c for c in done[rollover:] if c.index == index - 1]
            # The earlier part got its final text before the next part appeared...
            assert before[-1].text == final_parts[index - 1]
            # ...and was left alone from then on.
            assert after == []
        assert not sink.problems

    virtual(main())


def _shrinking_split(text: str) -> list[str]:
    # Like an unclosed code block that renders longer than the closed one.
    if "!" in text or len(text) <= 3:
        return [text]
    return [text[:3], text[3:]]


@pytest.mark.parametrize("tail", [[], ["ghi"]], ids=["at-the-end", "while-streaming"])
def test_a_part_no_longer_needed_is_deleted_after_its_text_moved(tail: list[str]) -> None:
    async def main() -> None:
        sink = FakeSink(min_interval=1.0, split=_shrinking_split)
        result = await driver().run(sink, paced(["abc", "def", "!", *tail], 1.5))
        ops = [(c.op, c.index, c.text) for c in updates(sink.done())]
        assert ops[:3] == [("send", 0, "abc"), ("send", 1, "def"), ("edit", 0, "abcdef!")]
        assert ("delete", 1, "") in ops and ops[-1][:2] == ("finish", 0)
        deleted_at = sink.done("delete")[0].at
        assert (deleted_at < 1.5 * (2 + len(tail))) == bool(tail)  # before the deltas end?
        assert sink.messages == {0: result.text} and result.deletes == 1
        assert not sink.problems

    virtual(main())


def test_an_empty_answer_still_finishes() -> None:
    async def main() -> None:
        sink = FakeSink()
        result = await driver().run(sink, paced(["", ""], 0.1))
        assert [c.op for c in sink.calls] == ["start", "finish"]
        assert sink.final == ([], StreamStatus.COMPLETE)
        assert result.parts == () and result.text == ""

    virtual(main())


# --- the driver: how the deltas end ---------------------------------------------


def test_a_failing_iterator_still_finishes_with_the_text_so_far() -> None:
    async def broken() -> AsyncIterator[str]:
        yield "a"
        await asyncio.sleep(0.5)
        yield "b"
        await asyncio.sleep(0.5)
        raise ValueError("the model broke")

    async def main() -> None:
        sink = FakeSink()
        result = await driver().run(sink, broken())
        assert result.status == StreamStatus.FAILED
        assert isinstance(result.error, ValueError)
        assert sink.final == (["ab"], StreamStatus.FAILED)
        assert sink.visible() == "ab"

    virtual(main())


def test_an_iterator_failing_before_any_token_finishes_empty() -> None:
    async def broken() -> AsyncIterator[str]:
        await asyncio.sleep(1)
        raise ValueError("no route")
        yield ""  # makes this an async generator

    async def main() -> None:
        sink = FakeSink()
        result = await driver().run(sink, broken())
        assert sink.final == ([], StreamStatus.FAILED) and result.status == StreamStatus.FAILED

    virtual(main())


class StoppedSource:
    """Deltas of an answer the person stopped: iteration ends normally, and the
    source knows more than the driver about why."""

    def __init__(self, deltas: list[str]) -> None:
        self.deltas = deltas
        self.outcome: Outcome | None = None

    async def _iterate(self) -> AsyncIterator[str]:
        for delta in self.deltas:
            await asyncio.sleep(0.1)
            yield delta
        self.outcome = Outcome("cancelled")

    def __aiter__(self) -> AsyncIterator[str]:
        return self._iterate()


def test_the_sources_own_outcome_reaches_finish() -> None:
    async def main() -> None:
        sink = FakeSink()
        result = await driver().run(sink, StoppedSource(["half ", "an answer"]))
        assert result.status == StreamStatus.COMPLETE
        assert result.outcome == Outcome("cancelled")
        assert sink.final == (["half an answer"], "cancelled")

    virtual(main())


class SavingSource:
    """Deltas 0.1 s apart, then a save of `save` seconds before the iteration ends."""

    def __init__(self, deltas: list[str], save: float) -> None:
        self.deltas = deltas
        self.save = save
        self._ending = False

    async def _iterate(self) -> AsyncIterator[str]:
        try:
            for delta in self.deltas:
                await asyncio.sleep(0.1)
                yield delta
        finally:
            self._ending = True
            await asyncio.sleep(self.save)

    def __aiter__(self) -> AsyncIterator[str]:
        return self._iterate()


class TellingSource(SavingSource):
    """The same, telling when its text is complete (an EndingSource)."""

    @property
    def ending(self) -> bool:
        return self._ending


@pytest.mark.parametrize("tells", [True, False])
def test_text_that_came_while_the_answer_is_saved_waits_for_the_final_call(
    tells: bool,
) -> None:
    """Once the source says its text is complete, the text since the last call is
    shown by the final call, not by an edit of its own while the save runs."""

    async def main() -> None:
        sink = FakeSink(min_interval=0.5)
        kind = TellingSource if tells else SavingSource
        source = kind(["a ", "b ", "c ", "d "], save=2.0)
        assert isinstance(source, EndingSource) == tells
        assert (ending_source(source) is not None) == tells  # what the driver checks
        result = await driver().run(sink, source)
        ops = [(c.op, c.at) for c in updates(sink.calls)]
        if tells:
            assert [op for op, _ in ops] == ["send", "finish"]
            assert [at for _, at in ops] == pytest.approx([0.1, 2.4])
        else:  # plain deltas: the newest text goes out at the next turn
            assert [op for op, _ in ops] == ["send", "edit", "finish"]
        assert sink.visible() == result.text == "a b c d "

    virtual(main())


def test_the_pusher_does_not_look_every_interval_while_the_answer_is_saved() -> None:
    """Once the source is ending, nothing goes out before the final call: the pusher
    waits for the reader to end instead of waking every interval during the save."""

    async def main(tells: bool) -> int:
        loop = asyncio.get_running_loop()
        timers: list[float] = []
        call_at = loop.call_at

        def counting(when: float, *args: Any, **kwargs: Any) -> asyncio.TimerHandle:
            timers.append(loop.time())
            return call_at(when, *args, **kwargs)

        loop.call_at = counting  # type: ignore[method-assign,assignment]
        sink = FakeSink(min_interval=0.05)
        kind = TellingSource if tells else SavingSource
        source = kind(["a ", "b "], save=2.0)
        result = await driver().run(sink, source)
        assert sink.visible() == result.text == "a b "
        # Timers set while the save runs (0.2 s to 2.2 s): the source's own sleep
        # and, for a source that does not tell, the pusher's looks.
        return sum(0.25 < at < 2.15 for at in timers)

    assert virtual(main(tells=True)) == 0
    assert virtual(main(tells=False)) > 30


def test_stop_leaves_a_part_whose_text_was_complete_when_the_next_one_came() -> None:
    """A part posted as the last one shows Stop; when the answer goes on in a new
    part at exactly its end (its text unchanged), it is still edited to drop Stop."""

    async def main() -> None:
        sink = FakeSink(max_length=10, min_interval=0.5)
        await driver().run(sink, paced(["aaaaaaaaa\n", "bbb", "ccc"], 1.0))
        ops = [(c.op, c.index) for c in updates(sink.calls)]
        assert ops[:2] == [("send", 0), ("send", 1)]
        assert ("edit", 0) in ops[2:]
        assert sink.live <= {len(sink.messages) - 1}
        assert not sink.problems

    virtual(main())


def test_cancelling_delivers_the_final_state_then_reraises() -> None:
    closed: list[float] = []

    async def endless() -> AsyncIterator[str]:
        try:
            i = 0
            while True:
                yield f"t{i} "
                i += 1
                await asyncio.sleep(0.1)
        finally:
            closed.append(now())

    refusals = iter([RetryLater(2.0)])

    def fault(op: str, index: int) -> BaseException | None:
        return next(refusals, None) if op == "finish" else None

    async def main() -> None:
        sink = FakeSink(fault=fault)
        task = asyncio.create_task(driver().run(sink, endless()))
        await asyncio.sleep(1.05)
        task.cancel()
        with pytest.raises(asyncio.CancelledError):
            await task
        text = "".join(f"t{i} " for i in range(11))
        assert sink.final == ([text], "interrupted")
        assert sink.visible() == text
        assert closed == [pytest.approx(1.05)]
        # The final call waited for the chat's interval (the last edit was at 1.0);
        # refused, it was retried after retry_after, all before run re-raised.
        assert [c.at for c in sink.calls if c.op == "finish"] == pytest.approx([2.0, 4.0])

    virtual(main())


def test_cancelling_twice_does_not_lose_the_final_state() -> None:
    def fault(op: str, index: int) -> BaseException | None:
        return RetryLater(5.0) if op == "finish" and now() < 1 else None

    async def main() -> None:
        sink = FakeSink(fault=fault)
        await cancelled_twice(sink)
        assert sink.final is None
        await asyncio.sleep(10)
        assert sink.final == (["xxxxxx"], "interrupted")

    virtual(main())


# --- on the real clock ----------------------------------------------------------


async def test_smoke_on_the_real_clock() -> None:
    times: list[float] = []
    deltas = [f"r{i} " for i in range(60)]
    sink = FakeSink(min_interval=0.05)
    result = await driver().run(sink, paced(deltas, 0.005, times=times))
    assert sink.visible() == result.text == "".join(deltas)
    assert sink.done("send")[0].at - times[0] < 0.05
    assert_spaced(sink.calls, 0.05 - 0.002)
    assert len(updates(sink.calls)) >= 3
