"""Which processes are alive.

Every process that streams answers proves it is alive on its own: with Redis, a
key with a TTL refreshed by a heartbeat, and a subscription to a channel of its
own (Redis drops the subscription the moment the process dies, so a crash is
seen at once, not only when the key runs out); without Redis, a row in `workers`
with a heartbeat time. Another process asks `gone(ids)` to learn which of the
workers named on streaming rows no longer prove it.
"""

from __future__ import annotations

import abc
import asyncio
import contextlib
import logging
import os
import socket
import uuid
from collections.abc import Callable, Collection
from datetime import datetime, timedelta
from typing import Any

from sqlalchemy import delete, select

from core.clock import utcnow
from core.db.engine import Database
from core.db.models import Worker
from core.db.models.base import table_of
from core.db.upsert import insert_or_update
from core.tasks import cancel_and_wait

log = logging.getLogger(__name__)

KEY_PREFIX = "oneai:worker:"


def new_worker_id() -> str:
    """Names this process on the rows it streams: host, PID and a random part (a
    restarted process may get the same PID)."""
    return f"{socket.gethostname()[:32]}:{os.getpid()}:{uuid.uuid4().hex[:8]}"


class WorkerRegistry(abc.ABC):
    """This process's proof of life, and the others' as far as it can see them."""

    # Whether a worker seen gone should be seen gone twice before its answers are
    # ended: Redis forgets every key and subscription when it restarts, and live
    # workers need a heartbeat to come back.
    confirm_gone = False

    def __init__(self, worker_id: str, role: str, timeout: float) -> None:
        self.worker_id = worker_id
        self.role = role
        self.timeout = timeout

    async def start(self) -> None:
        """Begin proving: the first heartbeat goes out now."""
        await self.beat()

    @abc.abstractmethod
    async def beat(self) -> None:
        """Prove this process is alive for another `timeout` seconds."""

    @abc.abstractmethod
    async def gone(self, worker_ids: Collection[str]) -> set[str]:
        """Those of `worker_ids` (other processes) that no longer prove they are alive."""

    async def others_of_role(self, role: str) -> set[str]:
        """Workers of `role` other than this one that were recorded (database only:
        without Redis, a bot that starts knows every other bot worker is gone)."""
        return set()

    @abc.abstractmethod
    async def forget(self) -> None:
        """A clean exit: this process stops being alive at once."""

    async def close(self) -> None:
        return None


class DatabaseWorkers(WorkerRegistry):
    """Without Redis: a row per process in `workers`."""

    def __init__(
        self,
        db: Database,
        worker_id: str,
        role: str,
        timeout: float,
        now: Callable[[], datetime] = utcnow,
    ) -> None:
        super().__init__(worker_id, role, timeout)
        self.db = db
        self._now = now
        self._started = now()

    async def beat(self) -> None:
        now = self._now()
        async with self.db.write() as session:
            await insert_or_update(
                session,
                table_of(Worker),
                [
                    {
                        "id": self.worker_id,
                        "role": self.role,
                        "started_at": self._started,
                        "heartbeat_at": now,
                    }
                ],
                ("id",),
                ("heartbeat_at",),
            )
            # Rows of workers long gone only take space.
            await session.execute(
                delete(Worker).where(Worker.heartbeat_at < now - timedelta(days=1))
            )

    async def gone(self, worker_ids: Collection[str]) -> set[str]:
        ids = set(worker_ids) - {self.worker_id}
        if not ids:
            return set()
        cutoff = self._now() - timedelta(seconds=self.timeout)
        async with self.db.read() as session:
            alive = set(
                (
                    await session.scalars(
                        select(Worker.id).where(Worker.id.in_(ids), Worker.heartbeat_at >= cutoff)
                    )
                ).all()
            )
        return ids - alive

    async def others_of_role(self, role: str) -> set[str]:
        async with self.db.read() as session:
            return set(
                (
                    await session.scalars(
                        select(Worker.id).where(Worker.role == role, Worker.id != self.worker_id)
                    )
                ).all()
            )

    async def forget(self) -> None:
        async with self.db.write() as session:
            await session.execute(delete(Worker).where(Worker.id == self.worker_id))


class RedisWorkers(WorkerRegistry):
    """With Redis: `oneai:worker:<id>` is both a key with a TTL and a channel this
    process listens on. A worker is gone when either is missing: the key runs out
    when the process hangs or loses Redis, the subscription ends with the process."""

    confirm_gone = True

    def __init__(self, url: str, worker_id: str, role: str, timeout: float) -> None:
        from core.redis_client import connect

        super().__init__(worker_id, role, timeout)
        self._redis: Any = connect(url, socket_connect_timeout=5, socket_timeout=5)
        self._url = url
        self._listener: asyncio.Task[None] | None = None
        self._subscribed = asyncio.Event()

    @property
    def name(self) -> str:
        return KEY_PREFIX + self.worker_id

    async def start(self) -> None:
        await self.beat()
        self._listener = asyncio.create_task(self._listen(), name="worker-subscription")
        async with asyncio.timeout(10):
            await self._subscribed.wait()

    async def _listen(self) -> None:
        """Hold the subscription; after a lost connection (a Redis restart) take it
        again, so this process soon looks alive again."""
        while True:
            pubsub = self._redis.pubsub()
            try:
                await pubsub.subscribe(self.name)
                self._subscribed.set()
                async for _ in pubsub.listen():
                    pass  # nothing is sent here; the subscription itself is the proof
            except asyncio.CancelledError:
                raise
            except Exception as exc:
                log.warning("worker subscription lost (%s); taking it again", exc)
                await asyncio.sleep(1.0)
            finally:
                with contextlib.suppress(Exception):
                    await pubsub.aclose()

    async def beat(self) -> None:
        await self._redis.set(self.name, self.role, ex=max(1, round(self.timeout)))

    async def gone(self, worker_ids: Collection[str]) -> set[str]:
        ids = sorted(set(worker_ids) - {self.worker_id})
        if not ids:
            return set()
        names = [KEY_PREFIX + worker for worker in ids]
        async with self._redis.pipeline(transaction=False) as pipe:
            for name in names:
                pipe.exists(name)
            pipe.pubsub_numsub(*names)
            *exists, subscribers = await pipe.execute()
        listening = {
            (channel.decode() if isinstance(channel, bytes) else str(channel)): int(count)
            for channel, count in subscribers
        }
        return {
            worker
            for worker, name, present in zip(ids, names, exists, strict=True)
            if not present or listening.get(name, 0) == 0
        }

    async def forget(self) -> None:
        await cancel_and_wait(self._listener)
        self._listener = None
        await self._redis.delete(self.name)

    async def close(self) -> None:
        await cancel_and_wait(self._listener)
        self._listener = None
        await self._redis.aclose()
