"""Stop requests that reach the process streaming the answer.

In one process the running generation is in memory. With several processes (webhook
mode behind a load balancer) the Stop press may land on another one: the request is
published on Redis and every process stops the generation if it runs there.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
import uuid
from collections.abc import Callable
from typing import Any

log = logging.getLogger(__name__)

CHANNEL = "oneai:stop"


class RedisStopBus:
    def __init__(self, url: str) -> None:
        from redis.asyncio import Redis

        self._redis: Any = Redis.from_url(url)
        self._task: asyncio.Task[None] | None = None

    async def publish(self, user_id: int, message_id: uuid.UUID) -> None:
        await self._redis.publish(CHANNEL, f"{user_id}:{message_id.hex}")

    async def start(self, on_stop: Callable[[int, uuid.UUID], object]) -> None:
        """Listen for stop requests and hand them to `on_stop` (user id, row id)."""
        pubsub = self._redis.pubsub()
        await pubsub.subscribe(CHANNEL)
        # Read the subscription confirmation, so a publish right after start() is seen.
        await pubsub.get_message(timeout=1.0)

        async def listen() -> None:
            try:
                async for item in pubsub.listen():
                    if item.get("type") != "message":
                        continue
                    try:
                        raw = item["data"].decode()
                        user, _, row = raw.partition(":")
                        on_stop(int(user), uuid.UUID(hex=row))
                    except (ValueError, AttributeError):
                        log.warning("ignoring a malformed stop request: %r", item.get("data"))
            finally:
                with contextlib.suppress(Exception):
                    await pubsub.aclose()

        self._task = asyncio.create_task(listen(), name="stop-bus")

    async def close(self) -> None:
        if self._task is not None:
            self._task.cancel()
            with contextlib.suppress(asyncio.CancelledError, Exception):
                await self._task
        await self._redis.aclose()
