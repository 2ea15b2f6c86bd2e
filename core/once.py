"""Deliveries already taken: a platform may hand the same update over twice (a
webhook redelivered after a slow answer, a second poller by mistake), and it must
be acted on once. With Redis every process shares what was seen; without it one
process serves the bot and remembers on its own.
"""

from __future__ import annotations

import abc
import logging
from collections import OrderedDict
from collections.abc import Sequence
from typing import Any

log = logging.getLogger(__name__)

REMEMBER_SECONDS = 24 * 3600  # platforms give up redelivering well within a day
REMEMBER_LOCALLY = 100_000


class SeenDeliveries(abc.ABC):
    @abc.abstractmethod
    async def first(self, keys: Sequence[str]) -> bool:
        """Record `keys`; True unless one of them was recorded before."""

    async def close(self) -> None:
        return None


class LocalSeen(SeenDeliveries):
    def __init__(self, capacity: int = REMEMBER_LOCALLY) -> None:
        self.capacity = capacity
        self._seen: OrderedDict[str, None] = OrderedDict()

    async def first(self, keys: Sequence[str]) -> bool:
        fresh = not any(key in self._seen for key in keys)
        for key in keys:
            self._seen[key] = None
            self._seen.move_to_end(key)
        while len(self._seen) > self.capacity:
            self._seen.popitem(last=False)
        return fresh


class RedisSeen(SeenDeliveries):
    def __init__(self, url: str, prefix: str = "oneai:seen:") -> None:
        from core.redis_client import connect

        self._redis: Any = connect(url, socket_connect_timeout=3, socket_timeout=3)
        self.prefix = prefix

    async def first(self, keys: Sequence[str]) -> bool:
        try:
            async with self._redis.pipeline(transaction=False) as pipe:
                for key in keys:
                    pipe.set(self.prefix + key, 1, nx=True, ex=REMEMBER_SECONDS)
                results = await pipe.execute()
        except Exception as exc:
            # Answering twice is better than not answering: without Redis, go on.
            log.warning("could not check for a repeated delivery: %s", exc)
            return True
        return all(results)

    async def close(self) -> None:
        await self._redis.aclose()
