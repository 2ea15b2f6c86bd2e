"""The plan scheduler: its jobs do their work, and a run happens once even when
several processes' schedulers fire together."""

from __future__ import annotations

import asyncio
from datetime import timedelta

import pytest
from sqlalchemy import func, select

from core.accounts import PlatformProfile
from core.config import PaymentSettings, RedisSettings
from core.db.models import OutboxMessage, User
from core.services import Services
from core.subscriptions import Purchase
from core.tiers import Tier
from payments.scheduler import PlanScheduler, RunLock
from payments.service import Payments


def _with(services: Services, **sections: object) -> Services:
    for name, value in sections.items():
        services.settings.__dict__[name] = value  # cached_property storage
    return services


async def _paid_user(services: Services, name: str, days: float) -> int:
    user = await services.accounts.upsert(PlatformProfile("telegram", name))
    async with services.db.write() as session:
        await services.subscriptions.activate(
            session, user.id, Purchase(Tier.PRO, "test", period=timedelta(days=days))
        )
    return user.id


async def _tier(services: Services, user_id: int) -> str:
    async with services.db.read() as session:
        return str(await session.scalar(select(User.tier).where(User.id == user_id)))


async def test_jobs_expire_and_remind(services: Services) -> None:
    _with(services, payments=PaymentSettings(expiry_grace_hours=0, remind_days=3))
    ended = await _paid_user(services, "ended", days=-1)
    ending = await _paid_user(services, "ending", days=2)
    running = await _paid_user(services, "running", days=20)
    scheduler = PlanScheduler(services, Payments.build(services))
    assert await scheduler.expire() == 1
    assert await scheduler.remind() == 1
    assert await scheduler.remind() == 0
    assert [await _tier(services, u) for u in (ended, ending, running)] == ["free", "pro", "pro"]
    async with services.db.read() as session:
        kinds = (
            await session.scalars(
                select(OutboxMessage.kind).where(OutboxMessage.kind != "plan.activated")
            )
        ).all()
    assert sorted(kinds) == ["plan.expired", "plan.reminder"]


async def test_two_schedulers_firing_together_run_a_job_once(services: Services) -> None:
    """Each scheduler stands for a bot process; the lock is the one the
    configuration picks (Redis, else a PostgreSQL advisory lock, else local)."""
    for i in range(4):
        await _paid_user(services, f"u{i}", days=-2)
    payments = Payments.build(services)
    schedulers = [PlanScheduler(services, payments) for _ in range(3)]
    results = await asyncio.gather(*(s.expire() for s in schedulers))
    assert sum(results) == 4
    async with services.db.read() as session:
        expired = await session.scalar(
            select(func.count())
            .select_from(OutboxMessage)
            .where(OutboxMessage.kind == "plan.expired")
        )
    assert expired == 4


async def _contend(lock_a: RunLock, lock_b: RunLock) -> tuple[bool, bool, bool]:
    async with lock_a.hold("job", ttl=5) as first, lock_b.hold("job", ttl=5) as second:
        pass
    async with lock_b.hold("job", ttl=5) as after:
        pass
    return first, second, after


async def test_redis_lock_admits_one_holder(services: Services, redis_url: str | None) -> None:
    if redis_url is None:
        pytest.skip("needs TEST_REDIS_URL")
    _with(services, redis=RedisSettings(redis_url=redis_url))
    a, b = RunLock(services, redis_url), RunLock(services, redis_url)
    assert await _contend(a, b) == (True, False, True)


async def test_postgres_advisory_lock_admits_one_holder(
    services: Services, is_postgres: bool
) -> None:
    if not is_postgres:
        pytest.skip("needs PostgreSQL")
    a, b = RunLock(services, None), RunLock(services, None)
    assert await _contend(a, b) == (True, False, True)


async def test_local_lock_admits_one_holder(services: Services) -> None:
    lock = RunLock(services, None)
    if services.db.engine.dialect.name == "postgresql":
        pytest.skip("PostgreSQL uses the advisory lock")
    assert await _contend(lock, lock) == (True, False, True)


async def test_stop_lets_a_running_job_finish_and_cuts_a_stuck_one_quietly(
    services: Services, caplog: pytest.LogCaptureFixture
) -> None:
    """A job still running at shutdown used to be cancelled by the loop's
    teardown, which apscheduler logs as a crash with a traceback."""
    scheduler = PlanScheduler(services, Payments.build(services))
    finished: list[str] = []

    async def quick() -> int:
        await asyncio.sleep(0.05)
        finished.append("quick")
        return 1

    async def stuck() -> int:
        await asyncio.Event().wait()
        return 1

    jobs = [
        asyncio.create_task(scheduler._job(quick, "quick")()),
        asyncio.create_task(scheduler._job(stuck, "stuck")()),
    ]
    await asyncio.sleep(0.01)
    with caplog.at_level("INFO", logger="payments.scheduler"):
        await asyncio.wait_for(scheduler.stop(grace=0.3), timeout=5)
    assert all(job.done() and not job.cancelled() for job in jobs)
    assert finished == ["quick"]
    assert not [r for r in caplog.records if r.levelname in {"ERROR", "CRITICAL"}]
    assert "scheduled job stuck stopped at shutdown" in caplog.text
