"""Timed work on plans: expire them at period end (plus a grace period for renewals
that arrive late), remind people before the end, and retry provider notifications
whose processing was cut off.

Several bot processes may run the scheduler; each run takes a lock first, so a
job runs once per tick across all of them: a Redis key with an expiry when Redis
is configured, a PostgreSQL advisory lock otherwise, and a process-local lock on
SQLite (which has one process by design).
"""

from __future__ import annotations

import asyncio
import logging
import zlib
from collections.abc import AsyncIterator, Awaitable, Callable
from contextlib import asynccontextmanager
from datetime import UTC, datetime, timedelta
from typing import Any

from apscheduler.schedulers.asyncio import AsyncIOScheduler
from sqlalchemy import text

from core import metrics
from core.services import Services
from payments.service import Payments

log = logging.getLogger(__name__)

EXPIRE_EVERY = timedelta(minutes=5)
REMIND_EVERY = timedelta(hours=1)
RETRY_EVERY = timedelta(minutes=5)
RENEW_EVERY = timedelta(hours=1)
RENEW_BEFORE = timedelta(days=1)  # saved cards are charged this long before the end


class RunLock:
    """At most one holder of `name` at a time across processes."""

    def __init__(self, services: Services, redis_url: str | None) -> None:
        self.services = services
        self.redis_url = redis_url
        self._local: dict[str, asyncio.Lock] = {}

    @asynccontextmanager
    async def hold(self, name: str, ttl: float) -> AsyncIterator[bool]:
        """Yields True if this process got the lock (and should do the work)."""
        if self.redis_url is not None:
            async with self._redis(name, ttl) as got:
                yield got
        elif self.services.db.engine.dialect.name == "postgresql":
            async with self._advisory(name) as got:
                yield got
        else:
            lock = self._local.setdefault(name, asyncio.Lock())
            if lock.locked():
                yield False
                return
            async with lock:
                yield True

    @asynccontextmanager
    async def _redis(self, name: str, ttl: float) -> AsyncIterator[bool]:
        from redis.asyncio import Redis

        client = Redis.from_url(self.redis_url or "")
        key = f"oneai:job:{name}"
        token = self.services.worker_id
        try:
            got = bool(await client.set(key, token, nx=True, px=int(ttl * 1000)))
            try:
                yield got
            finally:
                if got:
                    # Release only our own lock (it may have expired and been taken).
                    await client.eval(
                        "if redis.call('get', KEYS[1]) == ARGV[1] then "
                        "return redis.call('del', KEYS[1]) else return 0 end",
                        1,
                        key,
                        token,
                    )
        finally:
            await client.aclose()

    @asynccontextmanager
    async def _advisory(self, name: str) -> AsyncIterator[bool]:
        key = zlib.crc32(f"oneai:{name}".encode())
        async with self.services.db.engine.connect() as conn:
            got = bool(
                (await conn.execute(text("SELECT pg_try_advisory_lock(:k)"), {"k": key})).scalar()
            )
            try:
                yield got
            finally:
                if got:
                    await conn.execute(text("SELECT pg_advisory_unlock(:k)"), {"k": key})
                await conn.commit()


class PlanScheduler:
    def __init__(self, services: Services, payments: Payments) -> None:
        self.services = services
        self.payments = payments
        settings = services.settings.payments
        self.grace = timedelta(hours=settings.expiry_grace_hours)
        self.remind_before = timedelta(days=settings.remind_days)
        self.lock = RunLock(services, services.settings.redis.redis_url)
        self._scheduler: AsyncIOScheduler | None = None
        self._running: set[asyncio.Task[Any]] = set()

    async def expire(self) -> int:
        async with self.lock.hold("expire", ttl=EXPIRE_EVERY.total_seconds()) as got:
            if not got:
                return 0
            changes = await self.services.subscriptions.expire_due(self.grace)
            if changes:
                log.info("expired %d plans", len(changes))
            return len(changes)

    async def remind(self) -> int:
        async with self.lock.hold("remind", ttl=REMIND_EVERY.total_seconds()) as got:
            if not got:
                return 0
            return await self.services.subscriptions.remind_due(self.remind_before)

    async def retry_notifications(self) -> int:
        if self.payments.yookassa is None:
            return 0
        async with self.lock.hold("retry-yookassa", ttl=RETRY_EVERY.total_seconds()) as got:
            if not got:
                return 0
            return await self.payments.yookassa.retry_unprocessed()

    async def renew(self) -> int:
        if self.payments.yookassa is None:
            return 0
        async with self.lock.hold("renew-yookassa", ttl=RENEW_EVERY.total_seconds()) as got:
            if not got:
                return 0
            return await self.payments.yookassa.renew_due(RENEW_BEFORE)

    def _job(self, work: Callable[[], Awaitable[int]], name: str) -> Callable[[], Any]:
        async def run() -> None:
            task = asyncio.current_task()
            if task is not None:
                self._running.add(task)
            try:
                await work()
            except asyncio.CancelledError:
                # Cut by `stop` at shutdown; the next process runs it again.
                log.info("scheduled job %s stopped at shutdown", name)
            except Exception:
                metrics.SCHEDULER_RUNS.labels(name, "failed").inc()
                log.exception("scheduled job %s failed", name)
            else:
                metrics.SCHEDULER_RUNS.labels(name, "ok").inc()
            finally:
                if task is not None:
                    self._running.discard(task)

        return run

    def start(self) -> None:
        scheduler = AsyncIOScheduler(timezone="UTC")
        jobs = (
            (self.expire, EXPIRE_EVERY, "expire"),
            (self.remind, REMIND_EVERY, "remind"),
            (self.retry_notifications, RETRY_EVERY, "retry-notifications"),
            (self.renew, RENEW_EVERY, "renew"),
        )
        for work, every, name in jobs:
            scheduler.add_job(
                self._job(work, name),
                "interval",
                seconds=every.total_seconds(),
                id=name,
                max_instances=1,
                coalesce=True,
                # First run soon after start: a restart must not postpone expiry.
                next_run_time=datetime.now(UTC) + timedelta(seconds=5),
            )
        scheduler.start()
        self._scheduler = scheduler

    async def stop(self, grace: float = 5.0) -> None:
        """No new runs; a job in progress gets `grace` seconds, then is cancelled
        here rather than by the loop's teardown (which would log it as a crash)."""
        if self._scheduler is not None:
            self._scheduler.shutdown(wait=False)
            self._scheduler = None
        running = list(self._running)
        if not running:
            return
        _, late = await asyncio.wait(running, timeout=grace)
        for task in late:
            task.cancel()
        await asyncio.gather(*late, return_exceptions=True)
