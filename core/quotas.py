"""Usage quotas: reserve before a generation, give back when it did not count.

Every change is one atomic UPDATE (reset-if-due + check + increment), never a read
followed by a write, so concurrent reservations can never overshoot the limit.
"""

from __future__ import annotations

import functools
from collections.abc import Callable
from dataclasses import dataclass
from datetime import datetime
from typing import Any

from sqlalchemy import Integer, and_, bindparam, case, or_, select, update
from sqlalchemy.ext.asyncio import AsyncSession

from core import metrics
from core.clock import utcnow
from core.db.direct import Direct
from core.db.engine import Database
from core.db.models import UsageQuota
from core.db.models.base import table_of
from core.db.types import UTCDateTime
from core.db.upsert import insert_ignore
from core.errors import OneAIError
from core.tiers import TIERS, QuotaKey, ResetFrequency, Tier, lowest_tier_with, window_bounds


@dataclass(frozen=True)
class Reservation:
    """One unit taken from the window that started at `window_start`."""

    user_id: int
    quota_key: QuotaKey
    window_start: datetime
    used: int
    limit: int
    resets_at: datetime


@dataclass(frozen=True)
class QuotaStatus:
    key: QuotaKey
    used: int
    limit: int
    remaining: int
    reset_frequency: ResetFrequency
    # None for a rolling window that has not started (it starts at the next use).
    resets_at: datetime | None


class QuotaExceeded(OneAIError):
    code = "quota_exceeded"

    def __init__(self, key: QuotaKey, limit: int, resets_at: datetime | None, upgrade: Tier | None):
        when = resets_at.strftime("%Y-%m-%d %H:%M UTC") if resets_at else "soon"
        label = key.value.replace("_", " ")
        text = f"You have used all {limit} {label} of your plan. They reset at {when}."
        if upgrade is not None:
            text += f" The {TIERS[upgrade].name} plan raises the limit."
        super().__init__(text, key=key, limit=limit, resets_at=resets_at, upgrade=upgrade)
        self.key = key
        self.limit = limit
        self.resets_at = resets_at
        self.upgrade = upgrade


_EDGES = ("start", "end")


_QUOTAS = table_of(UsageQuota).c


def _window_case(edge: str) -> Any:
    """SQL choosing the new window's `edge` ("start" or "end") by the row's
    frequency, from the `{frequency}_{edge}` parameters."""
    bounds = {
        freq: bindparam(f"{freq.value}_{edge}", type_=UTCDateTime()) for freq in ResetFrequency
    }
    return case(
        (
            _QUOTAS.reset_frequency == ResetFrequency.THREE_HOUR.value,
            bounds[ResetFrequency.THREE_HOUR],
        ),
        (_QUOTAS.reset_frequency == ResetFrequency.DAILY.value, bounds[ResetFrequency.DAILY]),
        else_=bounds[ResetFrequency.MONTHLY],
    )


@functools.cache
def _reserve_statement() -> Direct:
    """Take `amount` units (1 for a message, seconds for a voice note), opening a
    new window first if the current one is over. Built once: constructing this
    statement cost more than running it."""
    now = bindparam("now", type_=UTCDateTime())
    amount = bindparam("amount", type_=Integer())
    due = _QUOTAS.next_reset_at <= now
    # On the table, not the entity: the ORM's bulk-update path costs more than
    # the statement, and no loaded objects need synchronizing.
    return Direct(
        update(table_of(UsageQuota))
        .where(
            _QUOTAS.user_id == bindparam("owner"),
            _QUOTAS.quota_key == bindparam("key"),
            _QUOTAS.quota_limit > 0,
            or_(
                and_(due, amount <= _QUOTAS.quota_limit),
                _QUOTAS.used_count + amount <= _QUOTAS.quota_limit,
            ),
        )
        .values(
            used_count=case((due, amount), else_=_QUOTAS.used_count + amount),
            last_reset_at=case((due, _window_case("start")), else_=_QUOTAS.last_reset_at),
            next_reset_at=case((due, _window_case("end")), else_=_QUOTAS.next_reset_at),
            last_usage_at=now,
            updated_at=now,
        )
        .returning(
            _QUOTAS.used_count,
            _QUOTAS.quota_limit,
            _QUOTAS.last_reset_at,
            _QUOTAS.next_reset_at,
        )
    )


class QuotaService:
    def __init__(self, db: Database, now: Callable[[], datetime] = utcnow) -> None:
        self.db = db
        self._now = now

    async def ensure_rows(self, session: AsyncSession, user_id: int, tier: Tier) -> None:
        """Create the user's quota rows for `tier` if missing. A fresh row's window is
        already due, so the first use opens it."""
        now = self._now()
        rows = [
            {
                "user_id": user_id,
                "subscription_tier": tier.value,
                "quota_key": key.value,
                "used_count": 0,
                "quota_limit": rule.limit,
                "reset_frequency": rule.reset.value,
                "last_reset_at": now,
                "next_reset_at": now,
                "created_at": now,
                "updated_at": now,
            }
            for key, rule in TIERS[tier].quotas.items()
        ]
        await insert_ignore(session, table_of(UsageQuota), rows, ["user_id", "quota_key"])

    async def reserve(
        self, session: AsyncSession, user_id: int, tier: Tier, key: QuotaKey, amount: int = 1
    ) -> Reservation:
        """Take `amount` units inside the caller's write transaction, or raise
        QuotaExceeded (then nothing is taken)."""
        if amount < 1:
            raise ValueError("a reservation takes at least one unit")
        reservation = await self._try_reserve(session, user_id, key, amount)
        if reservation is None:
            exists = await session.scalar(
                select(UsageQuota.id).where(
                    UsageQuota.user_id == user_id, UsageQuota.quota_key == key.value
                )
            )
            if exists is None:
                await self.ensure_rows(session, user_id, tier)
                reservation = await self._try_reserve(session, user_id, key, amount)
        if reservation is None:
            metrics.QUOTA_REFUSALS.labels(key.value).inc()
            raise await self._exceeded(session, user_id, tier, key)
        return reservation

    async def _try_reserve(
        self, session: AsyncSession, user_id: int, key: QuotaKey, amount: int = 1
    ) -> Reservation | None:
        now = self._now()
        params: dict[str, Any] = {"now": now, "owner": user_id, "key": key.value, "amount": amount}
        for freq in ResetFrequency:
            for edge, bound in zip(_EDGES, window_bounds(freq, now), strict=True):
                params[f"{freq.value}_{edge}"] = bound
        rows = await _reserve_statement().rows(session, params)
        if not rows:
            return None
        used, limit, start, end = rows[0]
        return Reservation(user_id, key, start, used, limit, end)

    async def _exceeded(
        self, session: AsyncSession, user_id: int, tier: Tier, key: QuotaKey
    ) -> QuotaExceeded:
        row = (
            await session.execute(
                select(UsageQuota.quota_limit, UsageQuota.next_reset_at).where(
                    UsageQuota.user_id == user_id, UsageQuota.quota_key == key.value
                )
            )
        ).one_or_none()
        limit, resets_at = (row[0], row[1]) if row else (0, None)
        return QuotaExceeded(key, limit, resets_at, lowest_tier_with(key, tier))

    async def release(
        self,
        session: AsyncSession,
        user_id: int,
        key: str,
        window_start: datetime,
        amount: int = 1,
    ) -> bool:
        """Give `amount` units back to the window they were taken from; never below
        zero, and never into a newer window (a reset or an upgrade since then wins)."""
        now = self._now()
        stmt = (
            update(UsageQuota)
            .where(
                and_(
                    UsageQuota.user_id == user_id,
                    UsageQuota.quota_key == key,
                    UsageQuota.last_reset_at == window_start,
                    UsageQuota.next_reset_at > now,
                    UsageQuota.used_count > 0,
                )
            )
            .values(
                used_count=case(
                    (UsageQuota.used_count > amount, UsageQuota.used_count - amount), else_=0
                ),
                updated_at=now,
            )
            .execution_options(synchronize_session=False)
        )
        result = await session.execute(stmt)
        return bool(result.rowcount)  # type: ignore[attr-defined]

    async def assign_tier(
        self, session: AsyncSession, user_id: int, tier: Tier, *, reset: bool
    ) -> None:
        """Set limits for `tier`. `reset=True` (new plan, upgrade) starts fresh windows;
        a renewal or a downgrade keeps the counters."""
        await self.ensure_rows(session, user_id, tier)
        now = self._now()
        for key, rule in TIERS[tier].quotas.items():
            values: dict[str, object] = {
                "subscription_tier": tier.value,
                "quota_limit": rule.limit,
                "reset_frequency": rule.reset.value,
                "updated_at": now,
            }
            if reset:
                values.update(used_count=0, last_reset_at=now, next_reset_at=now)
            await session.execute(
                update(UsageQuota)
                .where(UsageQuota.user_id == user_id, UsageQuota.quota_key == key.value)
                .values(**values)
                .execution_options(synchronize_session=False)
            )

    async def report(self, user_id: int, tier: Tier) -> list[QuotaStatus]:
        """Used, limit, remaining and reset time per quota key."""
        now = self._now()
        async with self.db.read() as session:
            rows = {
                row.quota_key: row
                for row in (
                    await session.scalars(select(UsageQuota).where(UsageQuota.user_id == user_id))
                ).all()
            }
        statuses = []
        for key, rule in TIERS[tier].quotas.items():
            row = rows.get(key.value)
            limit = row.quota_limit if row else rule.limit
            frequency = ResetFrequency(row.reset_frequency) if row else rule.reset
            resets_at: datetime | None
            if row is not None and row.next_reset_at > now:
                used, resets_at = row.used_count, row.next_reset_at
            else:
                used = 0
                resets_at = (
                    None
                    if frequency is ResetFrequency.THREE_HOUR
                    else window_bounds(frequency, now)[1]
                )
            statuses.append(
                QuotaStatus(key, used, limit, max(limit - used, 0), frequency, resets_at)
            )
        return statuses
