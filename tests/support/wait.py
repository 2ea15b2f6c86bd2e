"""Waiting in tests for something that changes without an event to wait on (a
database write, a task ending, a log line)."""

from __future__ import annotations

import asyncio
import inspect
from collections.abc import Awaitable, Callable


async def until(predicate: Callable[[], object | Awaitable[object]], within: float = 10) -> None:
    """Poll `predicate` (plain or async) until it is true; fail after `within` s."""
    async with asyncio.timeout(within):
        while True:
            value = predicate()
            if inspect.isawaitable(value):
                value = await value
            if value:
                return
            await asyncio.sleep(0.02)
