"""When an update counts as taken, for a webhook that must not say so too early.

A webhook answered 200 is never delivered again. If the process dies after the
200 but before the message left a trace in the database, the person's message is
lost without a word. So the webhook route answers once the update's handling has
reached a point another process can recover from (`taken()`: the prompt and its
answer row are committed; from then on a dead worker's answer is ended and the
person told) or has finished, whichever comes first; a process that dies before
then never answered, and Telegram delivers the update again, to a process that
lives.

The route opens a `Receipt` in the context the update's task is created in, so
the flow deep below reports to it without knowing about webhooks.
"""

from __future__ import annotations

import asyncio
import contextlib
from collections.abc import Iterator
from contextvars import ContextVar
from typing import Any

_receipt: ContextVar[asyncio.Event | None] = ContextVar("oneai_intake_receipt", default=None)


def taken() -> None:
    """The update being handled can no longer be lost (see above)."""
    event = _receipt.get()
    if event is not None:
        event.set()


@contextlib.contextmanager
def receipt() -> Iterator[asyncio.Event]:
    """Tasks created inside report `taken()` to the event yielded."""
    event = asyncio.Event()
    token = _receipt.set(event)
    try:
        yield event
    finally:
        _receipt.reset(token)


async def wait_taken(event: asyncio.Event, task: asyncio.Future[Any], within: float) -> None:
    """Until the update is taken, its handling ended, or `within` seconds passed."""
    waiter: asyncio.Future[Any] = asyncio.ensure_future(event.wait())
    try:
        await asyncio.wait({waiter, task}, timeout=within, return_when=asyncio.FIRST_COMPLETED)
    finally:
        waiter.cancel()
