"""The broadcast pacer against the platform's count: calls per second as they arrive."""

from __future__ import annotations

import asyncio

from core.broadcast.pacing import Pacer


def _busiest_second(times: list[float]) -> int:
    times = sorted(times)
    return max((sum(1 for u in times if t <= u < t + 1.0) for t in times), default=0)


async def test_calls_held_up_on_the_way_never_crowd_a_second() -> None:
    """The first calls of a broadcast are held up on the way for 0.1 s (a busy
    loop, a slow connection) and arrive together: in the platform's count they
    share a second with the calls that follow, which must still stay within the
    limit."""
    loop = asyncio.get_running_loop()
    pacer = Pacer(25)
    arrivals: list[float] = []
    released = asyncio.Event()

    async def call(held: bool) -> None:
        if held:
            await released.wait()
        arrivals.append(loop.time())

    calls = []
    for index in range(40):
        await pacer.turn()
        await pacer.go()
        if index == 0:
            loop.call_later(0.1, released.set)
        calls.append(asyncio.create_task(call(held=index < 3)))
    await asyncio.gather(*calls)
    assert _busiest_second(arrivals) <= 25
