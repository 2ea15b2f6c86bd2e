"""Quota reservation, give-back and windows, on the real database."""

from __future__ import annotations

import asyncio
from datetime import UTC, datetime, timedelta

import pytest
from sqlalchemy import select, update

from core.accounts import AccountService, PlatformProfile
from core.db.engine import Database
from core.db.models import UsageQuota
from core.quotas import QuotaExceeded, QuotaService, Reservation
from core.tiers import QuotaKey, ResetFrequency, Tier


class FakeNow:
    def __init__(self, moment: datetime) -> None:
        self.moment = moment

    def __call__(self) -> datetime:
        return self.moment

    def advance(self, **kwargs: float) -> None:
        self.moment += timedelta(**kwargs)


async def _user(db: Database, name: str = "u1") -> int:
    user = await AccountService(db).upsert(PlatformProfile("test", name))
    return user.id


async def _reserve(quotas: QuotaService, user_id: int, key: QuotaKey) -> Reservation:
    async with quotas.db.write() as session:
        return await quotas.reserve(session, user_id, Tier.FREE, key)


async def _set_limit(db: Database, user_id: int, key: QuotaKey, limit: int) -> None:
    async with db.write() as session:
        await session.execute(
            update(UsageQuota)
            .where(UsageQuota.user_id == user_id, UsageQuota.quota_key == key.value)
            .values(quota_limit=limit)
        )


async def test_200_concurrent_reservations_grant_exactly_the_limit(db: Database) -> None:
    quotas = QuotaService(db)
    user_id = await _user(db)
    async with db.write() as session:
        await quotas.ensure_rows(session, user_id, Tier.FREE)
    await _set_limit(db, user_id, QuotaKey.SMALL, 50)

    async def attempt() -> bool:
        try:
            await _reserve(quotas, user_id, QuotaKey.SMALL)
        except QuotaExceeded:
            return False
        return True

    results = await asyncio.gather(*(attempt() for _ in range(200)), return_exceptions=True)
    errors = [r for r in results if isinstance(r, BaseException)]
    assert errors == []  # no "database is locked", no serialization failures
    assert results.count(True) == 50
    assert results.count(False) == 150
    report = {s.key: s for s in await quotas.report(user_id, Tier.FREE)}
    assert report[QuotaKey.SMALL].used == 50
    assert report[QuotaKey.SMALL].remaining == 0


async def test_limit_then_refusal_names_reset_and_upgrade(db: Database) -> None:
    now = FakeNow(datetime(2026, 3, 14, 10, 0, tzinfo=UTC))
    quotas = QuotaService(db, now=now)
    user_id = await _user(db)
    for _ in range(20):
        await _reserve(quotas, user_id, QuotaKey.LARGE)
    with pytest.raises(QuotaExceeded) as info:
        await _reserve(quotas, user_id, QuotaKey.LARGE)
    assert info.value.limit == 20
    assert info.value.resets_at == datetime(2026, 4, 1, tzinfo=UTC)
    assert info.value.upgrade is Tier.PRO
    assert "2026-04-01 00:00 UTC" in info.value.user_message
    assert "Pro" in info.value.user_message


async def test_monthly_window_resets_on_the_first(db: Database) -> None:
    now = FakeNow(datetime(2026, 1, 31, 23, 59, tzinfo=UTC))
    quotas = QuotaService(db, now=now)
    user_id = await _user(db)
    for _ in range(20):
        await _reserve(quotas, user_id, QuotaKey.LARGE)
    with pytest.raises(QuotaExceeded):
        await _reserve(quotas, user_id, QuotaKey.LARGE)
    now.advance(minutes=1)  # 2026-02-01 00:00 UTC
    reservation = await _reserve(quotas, user_id, QuotaKey.LARGE)
    assert reservation.used == 1
    assert reservation.window_start == datetime(2026, 2, 1, tzinfo=UTC)
    assert reservation.resets_at == datetime(2026, 3, 1, tzinfo=UTC)


async def test_three_hour_window_is_rolling_from_first_use(db: Database) -> None:
    now = FakeNow(datetime(2026, 5, 1, 10, 17, tzinfo=UTC))
    quotas = QuotaService(db, now=now)
    user_id = await _user(db)
    first = await _reserve(quotas, user_id, QuotaKey.IMAGE)
    assert first.window_start == now.moment
    assert first.resets_at == now.moment + timedelta(hours=3)
    for _ in range(4):
        await _reserve(quotas, user_id, QuotaKey.IMAGE)
    with pytest.raises(QuotaExceeded):
        await _reserve(quotas, user_id, QuotaKey.IMAGE)
    now.advance(hours=5)  # idle past the end: the next window starts at the next use
    started = now.moment
    again = await _reserve(quotas, user_id, QuotaKey.IMAGE)
    assert again.used == 1
    assert again.window_start == started
    assert again.resets_at == started + timedelta(hours=3)


async def test_daily_window_resets_at_midnight_utc(db: Database) -> None:
    now = FakeNow(datetime(2026, 5, 1, 23, 30, tzinfo=UTC))
    quotas = QuotaService(db, now=now)
    user_id = await _user(db)
    await _reserve(quotas, user_id, QuotaKey.SMALL)
    async with db.write() as session:
        await session.execute(
            update(UsageQuota)
            .where(UsageQuota.user_id == user_id, UsageQuota.quota_key == "small_messages")
            .values(reset_frequency=ResetFrequency.DAILY.value, next_reset_at=now.moment)
        )
    first = await _reserve(quotas, user_id, QuotaKey.SMALL)
    assert first.window_start == datetime(2026, 5, 1, tzinfo=UTC)
    assert first.resets_at == datetime(2026, 5, 2, tzinfo=UTC)
    now.advance(minutes=31)
    second = await _reserve(quotas, user_id, QuotaKey.SMALL)
    assert second.used == 1
    assert second.window_start == datetime(2026, 5, 2, tzinfo=UTC)


async def test_release_returns_only_to_its_window_and_never_below_zero(db: Database) -> None:
    now = FakeNow(datetime(2026, 5, 1, 10, 0, tzinfo=UTC))
    quotas = QuotaService(db, now=now)
    user_id = await _user(db)
    taken = await _reserve(quotas, user_id, QuotaKey.IMAGE)
    async with db.write() as session:
        assert await quotas.release(session, user_id, QuotaKey.IMAGE, taken.window_start)
    async with db.write() as session:  # a second give-back of the same unit finds 0
        assert not await quotas.release(session, user_id, QuotaKey.IMAGE, taken.window_start)
    report = {s.key: s for s in await quotas.report(user_id, Tier.FREE)}
    assert report[QuotaKey.IMAGE].used == 0

    old = await _reserve(quotas, user_id, QuotaKey.IMAGE)
    now.advance(hours=4)
    new = await _reserve(quotas, user_id, QuotaKey.IMAGE)
    assert new.window_start != old.window_start
    async with db.write() as session:  # the old window's unit does not refill the new one
        assert not await quotas.release(session, user_id, QuotaKey.IMAGE, old.window_start)
    report = {s.key: s for s in await quotas.report(user_id, Tier.FREE)}
    assert report[QuotaKey.IMAGE].used == 1


async def test_upgrade_resets_renewal_keeps_downgrade_changes_limits(db: Database) -> None:
    now = FakeNow(datetime(2026, 5, 10, 12, 0, tzinfo=UTC))
    quotas = QuotaService(db, now=now)
    user_id = await _user(db)
    for _ in range(7):
        await _reserve(quotas, user_id, QuotaKey.SMALL)

    async with db.write() as session:
        await quotas.assign_tier(session, user_id, Tier.PRO, reset=True)  # upgrade
    pro = {s.key: s for s in await quotas.report(user_id, Tier.PRO)}
    assert (pro[QuotaKey.SMALL].used, pro[QuotaKey.SMALL].limit) == (0, 500)

    for _ in range(3):
        async with db.write() as session:
            await quotas.reserve(session, user_id, Tier.PRO, QuotaKey.SMALL)
    async with db.write() as session:
        await quotas.assign_tier(session, user_id, Tier.PRO, reset=False)  # renewal
    renewed = {s.key: s for s in await quotas.report(user_id, Tier.PRO)}
    assert (renewed[QuotaKey.SMALL].used, renewed[QuotaKey.SMALL].limit) == (3, 500)

    async with db.write() as session:
        await quotas.assign_tier(session, user_id, Tier.FREE, reset=False)  # downgrade
    free = {s.key: s for s in await quotas.report(user_id, Tier.FREE)}
    assert (free[QuotaKey.SMALL].used, free[QuotaKey.SMALL].limit) == (3, 100)
    assert free[QuotaKey.SMALL].remaining == 97


async def test_report_of_a_new_user(db: Database) -> None:
    now = FakeNow(datetime(2026, 5, 10, 12, 0, tzinfo=UTC))
    quotas = QuotaService(db, now=now)
    user_id = await _user(db)
    report = {s.key: s for s in await quotas.report(user_id, Tier.FREE)}
    assert report[QuotaKey.SMALL].remaining == 100
    assert report[QuotaKey.SMALL].resets_at == datetime(2026, 6, 1, tzinfo=UTC)
    assert report[QuotaKey.IMAGE].resets_at is None  # rolling window not started
    assert report[QuotaKey.IMAGE].limit == 5


async def _used(db: Database, user_id: int, key: QuotaKey) -> int:
    async with db.read() as session:
        row = await session.scalar(
            select(UsageQuota.used_count).where(
                UsageQuota.user_id == user_id, UsageQuota.quota_key == key.value
            )
        )
    return int(row or 0)


async def test_voice_seconds_are_reserved_and_given_back_by_the_amount(db: Database) -> None:
    quotas = QuotaService(db)
    user_id = await _user(db)
    async with db.write() as session:
        first = await quotas.reserve(session, user_id, Tier.FREE, QuotaKey.VOICE, 250)
    assert (first.used, first.limit) == (250, 300)
    # More than is left takes nothing; what fits is taken.
    with pytest.raises(QuotaExceeded):
        async with db.write() as session:
            await quotas.reserve(session, user_id, Tier.FREE, QuotaKey.VOICE, 51)
    assert await _used(db, user_id, QuotaKey.VOICE) == 250
    async with db.write() as session:
        await quotas.reserve(session, user_id, Tier.FREE, QuotaKey.VOICE, 50)
    async with db.write() as session:
        assert await quotas.release(session, user_id, "voice_seconds", first.window_start, 250)
    assert await _used(db, user_id, QuotaKey.VOICE) == 50
    async with db.write() as session:  # never below zero
        await quotas.release(session, user_id, "voice_seconds", first.window_start, 80)
    assert await _used(db, user_id, QuotaKey.VOICE) == 0
    with pytest.raises(ValueError):
        async with db.write() as session:
            await quotas.reserve(session, user_id, Tier.FREE, QuotaKey.VOICE, 0)


async def test_concurrent_voice_reservations_never_overshoot(db: Database) -> None:
    quotas = QuotaService(db)
    user_id = await _user(db)
    async with db.write() as session:
        await quotas.ensure_rows(session, user_id, Tier.FREE)

    async def attempt() -> int:
        try:
            async with db.write() as session:
                await quotas.reserve(session, user_id, Tier.FREE, QuotaKey.VOICE, 7)
        except QuotaExceeded:
            return 0
        return 7

    taken = await asyncio.gather(*(attempt() for _ in range(60)))
    assert sum(taken) == await _used(db, user_id, QuotaKey.VOICE) == 294  # 42 × 7 ≤ 300
