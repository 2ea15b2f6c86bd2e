"""Synchronous filters run on the event loop.

aiogram runs a filter that is not a coroutine (`F.text`, a `State`, a lambda) in a
worker thread (`asyncio.to_thread`): a thread hop and a loop wake-up for each filter
of each handler an update is tried against, about a dozen per text message here.
Ours are pure lookups on the update, so they run where they are awaited.
"""

from __future__ import annotations

from collections.abc import Callable
from typing import Any

from aiogram import Router
from aiogram.dispatcher.event.handler import FilterObject


def _inline(callback: Callable[..., Any]) -> Callable[..., Any]:
    async def run(*args: Any, **kwargs: Any) -> Any:
        return callback(*args, **kwargs)

    return run


def inline_filters(router: Router) -> int:
    """Make every synchronous filter under `router` run inline; how many there were.
    The filters keep their parameters: aiogram passes them what the original takes."""
    changed = 0
    for each in router.chain_tail:
        for observer in each.observers.values():
            handlers = [*getattr(observer, "handlers", ())]
            outer = getattr(observer, "_handler", None)  # the observer's own filters
            if outer is not None:
                handlers.append(outer)
            for handler in handlers:
                for filter_ in handler.filters or ():
                    if isinstance(filter_, FilterObject) and not filter_.awaitable:
                        filter_.callback = _inline(filter_.callback)
                        filter_.awaitable = True
                        changed += 1
    return changed
