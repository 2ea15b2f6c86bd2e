"""How a benchmark drives simcord's clock (simcord 3.2).

In bot-owned work simcord makes time.monotonic() and loop.time() virtual, while
time.perf_counter() and time.time() stay real. Its clock moves only when a bot
timer fires, and only once every bot task waits on something simcord recognizes
(a timer, a declared external wait, a listener). For a benchmark that distorts
what it measures: real time spent idle does not count (a chat paced for 50 ms
stays closed however long the person waited before writing again), one task
queued on an asyncio.Lock or waiting for the database thread stops the clock (two
answers in flight: the second queues on the global limiter's lock), and the
bookkeeping costs more CPU than the bot does.

`real_time` makes the bot live in real time (simcord still simulates Discord);
`simcord_clock` keeps simcord's clock as tests/discord use it, with the waits
that would stop it counted as parked.
"""

from __future__ import annotations

import asyncio
import time
from collections.abc import Iterator
from contextlib import contextmanager
from typing import Any

import simcord
import simcord.env as simcord_env
from httpcore._backends.anyio import AnyIOStream
from simcord._clock import Clock
from simcord.env import Env

REAL_MONOTONIC = time.monotonic  # simcord replaces time.monotonic while a bot runs


@contextmanager
def patched(owner: Any, name: str, value: Any) -> Iterator[None]:
    original = getattr(owner, name)
    setattr(owner, name, value)
    try:
        yield
    finally:
        setattr(owner, name, original)


class MonotonicClock(Clock):
    """simcord's clock reading the real monotonic clock."""

    @property
    def elapsed(self) -> float:
        return REAL_MONOTONIC()

    @elapsed.setter
    def elapsed(self, value: float) -> None:
        pass  # real time moves by itself


@contextmanager
def real_time(env: Env) -> Iterator[None]:
    """time.monotonic() and loop.time() in bot work read the real clock again, and
    the bot's timers are the event loop's own (simcord restores its loop hooks when
    the bot detaches; env.advance_time is not supported)."""
    env.backend.clock = MonotonicClock()
    loop, runtime = asyncio.get_running_loop(), env._runtime
    assert runtime is not None
    loop.call_later, loop.call_at = runtime.call_later, runtime.call_at  # type: ignore[method-assign]
    yield


def not_runnable(self: object, task: asyncio.Task[Any], deadline: float) -> bool:
    waiter = getattr(task, "_fut_waiter", None)
    return task.done() or (waiter is not None and not waiter.done())


@contextmanager
def simcord_clock(env: Env) -> Iterator[None]:
    """The LLM stream (httpcore), a socket simcord does not know, declared as an
    external wait so the bot's timers run beside it, as in tests/discord; and any
    bot task that is not runnable counts as parked."""
    original = AnyIOStream.read

    async def read(self: AnyIOStream, max_bytes: int, timeout: float | None = None) -> bytes:  # noqa: ASYNC109
        try:
            data = await env.external_wait(original(self, max_bytes, timeout), reason="LLM stream")
        except simcord.SetupError:
            return await original(self, max_bytes, timeout)
        assert isinstance(data, bytes)
        return data

    with patched(AnyIOStream, "read", read), patched(simcord_env, "_is_parked", not_runnable):
        yield
