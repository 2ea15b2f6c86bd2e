"""Deliveries already taken: a platform may hand the same update over twice (a
webhook redelivered after a slow answer, a second poller by mistake), and it must
be acted on once. With Redis every process shares what was seen; without it one
process serves the bot and remembers on its own.

With Redis each delivery is recorded with the process that took it. A delivery
seen again is dropped, unless the process that took it is gone (killed before it
answered the webhook, so Telegram delivered the update again): then the first
process to notice takes it over, and the update is handled after all.
"""

from __future__ import annotations

import abc
import logging
import re
from collections import OrderedDict
from collections.abc import Awaitable, Callable, Collection, Sequence
from typing import Any

log = logging.getLogger(__name__)

REMEMBER_SECONDS = 24 * 3600  # platforms give up redelivering well within a day
REMEMBER_LOCALLY = 100_000
_WORKER = re.compile(r".+:\d+:[0-9a-f]{8}")  # core.workers.new_worker_id


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


# Hand a key over from `ARGV[1]` (a gone process) to `ARGV[2]`, if nobody did yet.
_TAKE_OVER = """
if redis.call('GET', KEYS[1]) == ARGV[1] then
  redis.call('SET', KEYS[1], ARGV[2], 'EX', tonumber(ARGV[3]))
  return 1
end
return 0
"""


class RedisSeen(SeenDeliveries):
    """`gone`: which of the given processes (worker ids) are no longer alive."""

    def __init__(
        self,
        url: str,
        prefix: str = "oneai:seen:",
        *,
        worker_id: str = "",
        gone: Callable[[Collection[str]], Awaitable[set[str]]] | None = None,
    ) -> None:
        from core.redis_client import connect

        self._redis: Any = connect(url, socket_connect_timeout=3, socket_timeout=3)
        self.prefix = prefix
        self.worker_id = worker_id or "-"
        self._gone = gone
        self._take_over = self._redis.register_script(_TAKE_OVER)

    async def first(self, keys: Sequence[str]) -> bool:
        names = [self.prefix + key for key in keys]
        try:
            async with self._redis.pipeline(transaction=False) as pipe:
                for name in names:
                    pipe.set(name, self.worker_id, nx=True, ex=REMEMBER_SECONDS)
                results = await pipe.execute()
            if all(results):
                return True
            taken = [name for name, fresh in zip(names, results, strict=True) if not fresh]
            return await self._orphaned(taken)
        except Exception as exc:
            # Answering twice is better than not answering: without Redis, go on.
            log.warning("could not check for a repeated delivery: %s", exc)
            return True

    async def _orphaned(self, names: list[str]) -> bool:
        """Whether the deliveries `names` were taken by processes now gone, and are
        this process's now."""
        if self._gone is None:
            return False
        found = [_text(owner) for owner in await self._redis.mget(names)]
        owners = [owner for owner in found if owner is not None]
        if len(owners) != len(found) or self.worker_id in owners:
            return False  # taken here (a real repeat), or expired meanwhile
        others = set(owners)
        if not all(_WORKER.fullmatch(owner) for owner in others):
            return False  # recorded without a process (older versions)
        if await self._gone(others) != others:
            return False
        for name, owner in zip(names, owners, strict=True):
            handed = await self._take_over(
                keys=[name], args=[owner, self.worker_id, REMEMBER_SECONDS]
            )
            if not handed:
                return False  # another process took it over first
        log.info("a delivery taken by a gone process is handled here")
        return True

    async def close(self) -> None:
        await self._redis.aclose()


def _text(value: bytes | str | None) -> str | None:
    return value.decode() if isinstance(value, bytes) else value
