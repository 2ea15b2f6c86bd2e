"""Limits that several processes keep together through Redis: the global budget,
a chat's turns and spacing, the flood guard, and deliveries taken by a process
that died. Each "process" here is its own Redis client and its own limiter, as two
`oneai run` processes would have; Redis's clock decides, so the assertions read
the time each grant was made.

Without TEST_REDIS_URL these tests are skipped (CI runs them in its PostgreSQL +
Redis pass)."""

from __future__ import annotations

import asyncio
import itertools
import time
import uuid
from collections.abc import AsyncIterator, Collection
from typing import Any

import pytest

from core.flood import Verdict
from core.once import RedisSeen
from core.redis_client import connect
from core.shared_flood import SharedFloodGuard
from core.streaming import shared
from core.streaming.shared import SharedChatThrottle, SharedRateLimiter

EPS = 0.004  # seconds of slack for the event loop waking late


@pytest.fixture
async def clients(redis_url: str | None) -> AsyncIterator[list[Any]]:
    if redis_url is None:
        pytest.skip("shared limits need Redis (TEST_REDIS_URL)")
    made = [connect(redis_url) for _ in range(2)]
    try:
        yield made
    finally:
        for client in made:
            await client.aclose()


def prefix() -> str:
    return f"oneai:test:{uuid.uuid4().hex}:"


def busiest_second(times: list[float]) -> int:
    return max(sum(1 for t in times if start <= t < start + 1.0) for start in times)


async def test_two_processes_share_one_global_budget(clients: list[Any]) -> None:
    key, rate = prefix() + "calls", 20.0
    limiters = [SharedRateLimiter(client, key, rate, burst=1) for client in clients]
    grants: list[float] = []

    async def call(limiter: SharedRateLimiter) -> None:
        await limiter.acquire()
        grants.append(time.monotonic())

    began = time.monotonic()
    # 30 calls from each process at once: alone each would go at 20/s.
    await asyncio.gather(*(call(limiters[i % 2]) for i in range(60)))
    took = time.monotonic() - began
    grants.sort()
    # Grants are seen when this loop gets to them: a stall of the loop can bunch a
    # few, never add calls to a second.
    assert busiest_second(grants) <= rate + 2
    assert took >= 59 / rate - 0.05


async def test_cosmetic_calls_take_only_spare_budget(clients: list[Any]) -> None:
    key, rate = prefix() + "calls", 2.0  # a token every 0.5 s: slow enough to see
    first, second = (SharedRateLimiter(client, key, rate, burst=1) for client in clients)
    await first.acquire()
    assert not await second.try_take()  # the other process just took it
    await asyncio.sleep(1 / rate + EPS)
    assert await second.try_take()
    assert not await first.try_take()


async def test_a_chat_takes_turns_across_processes(clients: list[Any]) -> None:
    name = prefix() + "chat:"
    throttles = [SharedChatThrottle(client, name) for client in clients]
    interval = 0.15
    spans: list[tuple[float, float]] = []

    async def call(throttle: SharedChatThrottle) -> None:
        async with throttle.turn(("telegram", 7)) as gate:
            started = time.monotonic()
            await asyncio.sleep(0.03)  # the platform call
            spans.append((started, time.monotonic()))
            gate.hold(interval)

    await asyncio.gather(*(call(throttles[i % 2]) for i in range(8)))
    spans.sort()
    for (_, ended), (started, _) in itertools.pairwise(spans):
        # One call at a time, the next `interval` after the previous one returned.
        assert started >= ended + interval - EPS
    # Another chat is not held up by this one.
    async with throttles[1].turn(("telegram", 8)):
        pass


async def test_a_long_turn_keeps_its_lease(
    clients: list[Any], monkeypatch: pytest.MonkeyPatch
) -> None:
    """A turn that waits long (for a global token under load) renews its lease:
    no other process calls the chat meanwhile."""
    monkeypatch.setattr(shared, "LEASE_SECONDS", 0.3)
    name = prefix() + "chat:"
    first, second = (SharedChatThrottle(client, name) for client in clients)
    ended: list[float] = []

    async def long_turn() -> None:
        async with first.turn(("telegram", 11)):
            await asyncio.sleep(1.0)  # three leases long
            ended.append(time.monotonic())

    holder = asyncio.create_task(long_turn())
    await asyncio.sleep(0.05)
    async with second.turn(("telegram", 11)):
        entered = time.monotonic()
    await holder
    assert entered >= ended[0]


async def test_a_429_holds_the_chat_in_every_process(clients: list[Any]) -> None:
    name = prefix() + "chat:"
    first, second = (SharedChatThrottle(client, name) for client in clients)
    async with first.turn(("telegram", 9)) as gate:
        gate.hold(0.5)  # retry_after
    began = time.monotonic()
    async with second.turn(("telegram", 9)):
        waited = time.monotonic() - began
    assert waited >= 0.5 - 0.05


async def test_the_flood_guard_counts_a_person_once_across_processes(
    clients: list[Any],
) -> None:
    name = prefix() + "flood:"
    guards = [SharedFloodGuard(client, name, limit=5, window=1.0) for client in clients]
    verdicts = [await guards[i % 2].check(42) for i in range(8)]
    assert verdicts == [Verdict.PASS] * 5 + [Verdict.WARN, Verdict.DROP, Verdict.DROP]
    # Someone else is counted apart.
    assert await guards[1].check(43) is Verdict.PASS
    await asyncio.sleep(1.05)
    assert await guards[0].check(42) is Verdict.PASS


async def test_without_redis_the_limits_fall_back_to_this_process() -> None:
    # Nothing listens on port 1: every Redis call fails at once.
    dead = connect("redis://127.0.0.1:1/0", socket_connect_timeout=0.2)
    try:
        limiter = SharedRateLimiter(dead, "k", 50.0, burst=1)
        await limiter.acquire()
        assert await limiter.try_take() is False  # the local bucket is empty now
        throttle = SharedChatThrottle(dead, "c:")
        async with throttle.turn(1) as gate:
            gate.hold(0.01)
        guard = SharedFloodGuard(dead, "f:", limit=1)
        assert [await guard.check(1) for _ in range(3)] == [
            Verdict.PASS,
            Verdict.WARN,
            Verdict.DROP,
        ]
    finally:
        await dead.aclose()


async def test_a_delivery_taken_by_a_dead_process_is_handled_by_one_survivor(
    redis_url: str | None,
) -> None:
    if redis_url is None:
        pytest.skip("needs Redis (TEST_REDIS_URL)")
    dead, alive_a, alive_b = "host:11:0000000a", "host:12:0000000b", "host:13:0000000c"

    async def gone(ids: Collection[str]) -> set[str]:
        return {worker for worker in ids if worker == dead}

    space = prefix()
    first = RedisSeen(redis_url, space, worker_id=dead, gone=gone)
    seen = [RedisSeen(redis_url, space, worker_id=w, gone=gone) for w in (alive_a, alive_b)]
    try:
        keys = ["tg:1:u:5", "tg:1:m:7:9"]
        assert await first.first(keys)  # taken, then the process died unanswered
        answers = await asyncio.gather(*(s.first(keys) for s in seen))
        assert sorted(answers) == [False, True]  # one survivor handles it
        # Delivered yet again: the survivor that took it is alive, so nobody does.
        assert not any(await asyncio.gather(*(s.first(keys) for s in seen)))
        # A live process's delivery is never taken over.
        assert await seen[0].first(["tg:1:u:6"])
        assert not await seen[1].first(["tg:1:u:6"])
    finally:
        for s in (first, *seen):
            await s.close()
