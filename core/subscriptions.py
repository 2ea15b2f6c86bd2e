"""Plans: activation, renewal, upgrade, downgrade, cancellation, expiry and refund.

`subscriptions` is the authority (one current row per user); `users.tier` is a copy.
Every change runs inside the caller's write transaction (with the payment's ledger
row, when there is one) and does all of it there: the subscription row, the user's
tier, a `subscription_history` row, the quota limits, and the message to the person
in the outbox. Nothing here talks to a provider or a platform.
"""

from __future__ import annotations

import logging
from collections.abc import Callable
from dataclasses import dataclass, field
from datetime import datetime, timedelta
from enum import StrEnum
from typing import Any

from sqlalchemy import or_, select, update
from sqlalchemy.ext.asyncio import AsyncSession

from core.clock import utcnow
from core.db.engine import Database
from core.db.models import Subscription, SubscriptionHistory, User
from core.outbox import Outbox
from core.quotas import QuotaService
from core.tiers import Tier

log = logging.getLogger(__name__)

PERIOD = timedelta(days=30)


class Reason(StrEnum):
    NEW = "new_subscription"
    RENEWAL = "renewal"
    UPGRADE = "upgrade"
    DOWNGRADE = "downgrade"
    CANCELLATION = "cancellation"
    EXPIRY = "expiry"
    REFUND = "refund"
    GRANT = "grant"
    PAST_DUE = "past_due"
    UNPAID = "unpaid"
    REACTIVATED = "reactivated"


class Status(StrEnum):
    ACTIVE = "active"
    CANCELLED = "cancelled"  # ends at period end; access until then
    PAST_DUE = "past_due"
    UNPAID = "unpaid"
    EXPIRED = "expired"
    REFUNDED = "refunded"
    REPLACED = "replaced"  # an upgrade or downgrade took its place


# Statuses under which the plan still gives access (until its period end).
LIVE = (Status.ACTIVE, Status.CANCELLED, Status.PAST_DUE, Status.UNPAID)


@dataclass(frozen=True)
class PlanChange:
    user_id: int
    subscription_id: int | None
    old_tier: Tier
    new_tier: Tier
    reason: Reason
    period_end: datetime | None
    # A payment's change: the time it bought is [paid_from, period_end) (empty when
    # it added none). None for changes that bought nothing.
    paid_from: datetime | None = None


@dataclass(frozen=True)
class PlanView:
    tier: Tier
    status: str
    period_end: datetime | None
    cancel_at_period_end: bool
    provider: str | None
    provider_subscription_id: str | None
    recurring: bool


@dataclass(frozen=True)
class Purchase:
    """What a payment or a grant gives: `tier` until `period_end` (or one PERIOD
    from today, or from the current end when the same plan is extended)."""

    tier: Tier
    provider: str
    provider_subscription_id: str | None = None
    period_end: datetime | None = None
    period: timedelta = PERIOD  # used when period_end is not given
    recurring: bool = False
    # Extend the period but leave the status (a late charge after a newer event).
    keep_status: bool = False
    # Kept with the subscription (e.g. a saved payment method for renewals).
    meta: dict[str, Any] = field(default_factory=dict)
    platform: str | None = None
    reason: Reason | None = None  # e.g. GRANT; otherwise worked out from the change


class SubscriptionService:
    def __init__(
        self,
        db: Database,
        quotas: QuotaService,
        outbox: Outbox,
        now: Callable[[], datetime] = utcnow,
    ) -> None:
        self.db = db
        self.quotas = quotas
        self.outbox = outbox
        self._now = now

    # -- reading --------------------------------------------------------------------

    async def current(self, session: AsyncSession, user_id: int) -> Subscription | None:
        # populate_existing: what was read before the user lock may be stale by now.
        return await session.scalar(
            select(Subscription)
            .where(Subscription.user_id == user_id, Subscription.is_current)
            .execution_options(populate_existing=True)
        )

    async def view(self, user_id: int) -> PlanView:
        async with self.db.read() as session:
            user = await session.get(User, user_id)
            sub = await self.current(session, user_id)
        tier = Tier(user.tier) if user is not None else Tier.FREE
        if sub is None:
            return PlanView(tier, "active", None, False, None, None, False)
        return PlanView(
            tier,
            sub.status,
            sub.current_period_end,
            sub.cancel_at_period_end,
            sub.payment_provider,
            sub.provider_subscription_id,
            bool(sub.meta.get("recurring")),
        )

    async def _lock_user(self, session: AsyncSession, user_id: int) -> User:
        """Row lock on PostgreSQL, so two changes for one person queue up; SQLite
        already has one writer."""
        user = await session.scalar(
            select(User)
            .where(User.id == user_id)
            .with_for_update()
            .execution_options(populate_existing=True)
        )
        if user is None:
            raise LookupError(f"no user {user_id}")
        return user

    # -- changes ----------------------------------------------------------------------

    async def activate(
        self, session: AsyncSession, user_id: int, purchase: Purchase
    ) -> PlanChange | None:
        """A payment or a grant: a new plan, an upgrade, a downgrade or a renewal.

        A payment for a smaller plan never takes a live bigger one away (the only
        such payment is a late renewal of a plan an upgrade replaced): it is
        recorded and changes nothing (None). An operator's grant can downgrade."""
        user = await self._lock_user(session, user_id)
        now = self._now()
        old_tier = Tier(user.tier)
        current = await self.current(session, user_id)
        tier = purchase.tier
        if current is not None and current.tier == tier.value:
            return await self._extend(session, user, current, purchase, now)
        if (
            current is not None
            and purchase.reason is None
            and tier.rank < Tier(current.tier).rank
            and current.status in LIVE
        ):
            log.warning(
                "user %d: a %s payment while %s is live changes nothing",
                user_id,
                tier.value,
                current.tier,
            )
            return None
        if current is not None:
            current.is_current = False
            current.status = Status.REPLACED
            # The partial unique index cannot be deferred: clear before inserting.
            await session.flush()
        if purchase.reason is not None:
            reason = purchase.reason
        elif tier.rank < old_tier.rank:
            reason = Reason.DOWNGRADE
        elif old_tier is Tier.FREE:
            reason = Reason.NEW
        else:
            reason = Reason.UPGRADE
        sub = await self._provider_row(session, user_id, purchase)
        if sub is None:
            sub = Subscription(user_id=user_id, payment_provider=purchase.provider)
            session.add(sub)
        # A provider subscription that lapsed here (expired, replaced) and is paid
        # again comes back as the same row: it is one subscription at the provider.
        sub.tier = tier.value
        sub.status = Status.ACTIVE
        sub.is_current = True
        sub.provider_subscription_id = purchase.provider_subscription_id
        sub.current_period_start = now
        sub.current_period_end = purchase.period_end or now + purchase.period
        sub.cancel_at_period_end = False
        sub.canceled_at = None
        sub.reminded_at = None
        sub.meta = {**purchase.meta, "recurring": purchase.recurring}
        await session.flush()
        user.tier = tier.value
        user.tier_status = Status.ACTIVE
        # A new plan or an upgrade starts with fresh quotas; a downgrade changes limits.
        await self.quotas.assign_tier(session, user_id, tier, reset=tier.rank >= old_tier.rank)
        kind = "plan.downgraded" if tier.rank < old_tier.rank else "plan.activated"
        return self._record(
            session, user, sub, old_tier, reason, kind, purchase.platform, paid_from=now
        )

    async def _provider_row(
        self, session: AsyncSession, user_id: int, purchase: Purchase
    ) -> Subscription | None:
        if purchase.provider_subscription_id is None:
            return None
        return await session.scalar(
            select(Subscription)
            .where(
                Subscription.user_id == user_id,
                Subscription.payment_provider == purchase.provider,
                Subscription.provider_subscription_id == purchase.provider_subscription_id,
            )
            .execution_options(populate_existing=True)
        )

    async def _extend(
        self,
        session: AsyncSession,
        user: User,
        sub: Subscription,
        purchase: Purchase,
        now: datetime,
    ) -> PlanChange:
        """The same plan paid again: the period moves on, the counters stay."""
        if purchase.period_end is not None:
            end = purchase.period_end
        else:
            end = max(sub.current_period_end, now) + purchase.period
        # What this payment buys: from the old end (or now, if that is past) to the
        # new end; nothing if the end does not move.
        added_from = max(sub.current_period_end, now) if end > sub.current_period_end else None
        if end > sub.current_period_end:
            sub.current_period_start = min(sub.current_period_end, now)
            sub.current_period_end = end
            sub.reminded_at = None
        if not purchase.keep_status:
            sub.status = Status.CANCELLED if sub.cancel_at_period_end else Status.ACTIVE
        new_id = purchase.provider_subscription_id
        if new_id is not None and new_id != sub.provider_subscription_id:
            if sub.meta.get("recurring") and sub.provider_subscription_id is not None:
                # Cancelling must reach the subscription that renews: keep its id.
                log.warning(
                    "user %d: %s %s paid while %s %s renews; keeping the latter",
                    user.id,
                    purchase.provider,
                    new_id,
                    sub.payment_provider,
                    sub.provider_subscription_id,
                )
            else:
                sub.payment_provider = purchase.provider
                sub.provider_subscription_id = new_id
        if purchase.recurring or purchase.meta:
            recurring = purchase.recurring or bool(sub.meta.get("recurring"))
            sub.meta = {**sub.meta, **purchase.meta, "recurring": recurring}
        user.tier_status = sub.status
        await self.quotas.assign_tier(session, user.id, Tier(sub.tier), reset=False)
        reason = purchase.reason or Reason.RENEWAL
        return self._record(
            session,
            user,
            sub,
            Tier(user.tier),
            reason,
            "plan.renewed",
            purchase.platform,
            paid_from=added_from or sub.current_period_end,
        )

    async def end(
        self,
        session: AsyncSession,
        user_id: int,
        reason: Reason,
        *,
        subscription_id: int | None = None,
        due_before: datetime | None = None,
        platform: str | None = None,
    ) -> PlanChange | None:
        """Back to free (expiry, refund). With `subscription_id`, only if that row is
        still the current one: a refund of a plan already replaced changes nothing.
        With `due_before`, only if the period still ends by then (checked under the
        lock, so a renewal that committed a moment ago wins)."""
        user = await self._lock_user(session, user_id)
        sub = await self.current(session, user_id)
        if sub is None or (subscription_id is not None and sub.id != subscription_id):
            return None
        if due_before is not None and sub.current_period_end > due_before:
            return None
        old_tier = Tier(user.tier)
        sub.is_current = False
        sub.status = Status.REFUNDED if reason is Reason.REFUND else Status.EXPIRED
        user.tier = Tier.FREE.value
        user.tier_status = Status.ACTIVE
        await session.flush()
        await self.quotas.assign_tier(session, user_id, Tier.FREE, reset=False)
        kind = "plan.refunded" if reason is Reason.REFUND else "plan.expired"
        return self._record(session, user, sub, old_tier, reason, kind, platform)

    async def refund(
        self,
        session: AsyncSession,
        subscription_id: int,
        *,
        paid_from: datetime | None,
        paid_until: datetime | None,
        platform: str | None = None,
    ) -> PlanChange | None:
        """A payment that bought [paid_from, paid_until) on `subscription_id` was
        refunded (DESIGN.md's rule):

        - The payment that bought the current period (its period reaches the
          plan's end; a renewal included): the plan ends now, and the person falls
          back to an earlier plan still paid for (a smaller one an upgrade
          replaced), or to free.
        - An older period: no plan changes.
        - The latest payment of a plan that is not the current one (replaced): it
          keeps no time to fall back to; the person's plan stays.

        Without a recorded period (payments from before periods were kept) the
        payment counts as having bought the current period. None: no plan change."""
        found = await session.get(Subscription, subscription_id)
        if found is None:
            return None
        user = await self._lock_user(session, found.user_id)
        sub = await session.scalar(
            select(Subscription)
            .where(Subscription.id == subscription_id)
            .execution_options(populate_existing=True)
        )
        if sub is None:
            return None
        now = self._now()
        end = sub.current_period_end
        if paid_until is None:
            if not sub.is_current:
                return None
            paid_from, paid_until = now, end
        if end <= now or paid_until < end:
            # An older period: used up, or followed by the one the latest payment
            # bought. The plan stays as it is.
            return None
        if not sub.is_current:
            # A replaced plan's latest payment: no time is left to fall back to.
            sub.current_period_end = max(paid_from or now, now)
            return None
        old_tier = Tier(user.tier)
        sub.is_current = False
        sub.status = Status.REFUNDED
        # The partial unique index cannot be deferred: clear before another is current.
        await session.flush()
        back = await self._still_paid(session, user.id, below=Tier(sub.tier), now=now)
        if back is None:
            user.tier = Tier.FREE.value
            user.tier_status = Status.ACTIVE
            await self.quotas.assign_tier(session, user.id, Tier.FREE, reset=False)
            return self._record(
                session, user, sub, old_tier, Reason.REFUND, "plan.refunded", platform
            )
        back.is_current = True
        back.status = Status.CANCELLED if back.cancel_at_period_end else Status.ACTIVE
        await session.flush()
        user.tier = back.tier
        user.tier_status = back.status
        await self.quotas.assign_tier(session, user.id, Tier(back.tier), reset=False)
        return self._record(
            session, user, back, old_tier, Reason.REFUND, "plan.refunded_back", platform
        )

    async def _still_paid(
        self, session: AsyncSession, user_id: int, *, below: Tier, now: datetime
    ) -> Subscription | None:
        """The best earlier plan with time left that an upgrade replaced."""
        rows = (
            await session.scalars(
                select(Subscription)
                .where(
                    Subscription.user_id == user_id,
                    Subscription.is_current.is_(False),
                    Subscription.status == Status.REPLACED,
                    Subscription.current_period_end > now,
                )
                .execution_options(populate_existing=True)
            )
        ).all()
        candidates = [row for row in rows if 0 < Tier(row.tier).rank < below.rank]
        if not candidates:
            return None
        return max(candidates, key=lambda row: (Tier(row.tier).rank, row.current_period_end))

    async def shorten(
        self,
        session: AsyncSession,
        user_id: int,
        until: datetime,
        *,
        subscription_id: int,
        due_before: datetime | None = None,
        platform: str | None = None,
    ) -> PlanChange | None:
        """The provider ends the period sooner than recorded (a subscription cancelled
        there): the plan stays until `until` and does not renew; a time already past
        ends it now (expiry). Only for `subscription_id` while it is the current row,
        only backwards, and with `due_before` only if the period still ends by then
        (a later payment that extended it keeps its time). None: nothing changed."""
        user = await self._lock_user(session, user_id)
        sub = await self.current(session, user_id)
        if sub is None or sub.id != subscription_id:
            return None
        if due_before is not None and sub.current_period_end > due_before:
            return None
        now = self._now()
        if until <= now:
            return await self.end(
                session, user_id, Reason.EXPIRY, subscription_id=subscription_id, platform=platform
            )
        if until >= sub.current_period_end:
            return None
        sub.current_period_end = until
        sub.cancel_at_period_end = True
        sub.canceled_at = sub.canceled_at or now
        sub.status = Status.CANCELLED
        user.tier_status = Status.CANCELLED
        return self._record(
            session, user, sub, Tier(user.tier), Reason.CANCELLATION, "plan.cancelled", platform
        )

    async def cancel(
        self, session: AsyncSession, user_id: int, *, platform: str | None = None
    ) -> PlanChange | None:
        """Stop renewing; access stays until the period end. None: nothing to cancel."""
        user = await self._lock_user(session, user_id)
        sub = await self.current(session, user_id)
        if sub is None or sub.cancel_at_period_end:
            return None
        sub.cancel_at_period_end = True
        sub.canceled_at = self._now()
        sub.status = Status.CANCELLED
        user.tier_status = Status.CANCELLED
        return self._record(
            session, user, sub, Tier(user.tier), Reason.CANCELLATION, "plan.cancelled", platform
        )

    async def set_status(
        self,
        session: AsyncSession,
        sub: Subscription,
        status: Status,
        reason: Reason,
        *,
        platform: str | None = None,
    ) -> PlanChange | None:
        """past_due / unpaid after a failed charge, active again after a retry."""
        if sub.status == status:
            return None
        user = await self._lock_user(session, sub.user_id)
        sub.status = status
        user.tier_status = status
        kind = {
            Reason.PAST_DUE: "plan.past_due",
            Reason.UNPAID: "plan.unpaid",
        }.get(reason, "plan.renewed")
        return self._record(session, user, sub, Tier(user.tier), reason, kind, platform)

    def _record(
        self,
        session: AsyncSession,
        user: User,
        sub: Subscription,
        old_tier: Tier,
        reason: Reason,
        kind: str,
        platform: str | None,
        *,
        paid_from: datetime | None = None,
    ) -> PlanChange:
        new_tier = Tier(user.tier)
        session.add(
            SubscriptionHistory(
                user_id=user.id,
                subscription_id=sub.id,
                old_tier=old_tier.value,
                new_tier=new_tier.value,
                change_reason=reason.value,
                changed_at=self._now(),
                meta={"provider": sub.payment_provider, "status": sub.status},
            )
        )
        self.outbox.add(
            session,
            user.id,
            kind,
            {
                "tier": new_tier.value,
                "old_tier": old_tier.value,
                "period_end": sub.current_period_end.isoformat(),
                "reason": reason.value,
            },
            platform=platform,
        )
        log.info(
            "user %d: %s -> %s (%s), until %s",
            user.id,
            old_tier.value,
            new_tier.value,
            reason.value,
            sub.current_period_end.isoformat(),
        )
        return PlanChange(
            user.id, sub.id, old_tier, new_tier, reason, sub.current_period_end, paid_from
        )

    # -- the scheduler's work ---------------------------------------------------------

    async def expire_due(self, grace: timedelta) -> list[PlanChange]:
        """End every plan whose period (plus `grace`, for renewals that arrive late)
        is over. Each in its own transaction; a plan renewed meanwhile is skipped."""
        cutoff = self._now() - grace
        async with self.db.read() as session:
            due = (
                await session.execute(
                    select(Subscription.id, Subscription.user_id).where(
                        Subscription.is_current, Subscription.current_period_end <= cutoff
                    )
                )
            ).all()
        changes = []
        for sub_id, user_id in due:
            async with self.db.write() as session:
                change = await self.end(
                    session, user_id, Reason.EXPIRY, subscription_id=sub_id, due_before=cutoff
                )
            if change is not None:
                changes.append(change)
        if changes:
            self.outbox.wake()
        return changes

    async def remind_due(self, before: timedelta) -> int:
        """Tell each person once per period, `before` its end, that the plan ends
        (or renews)."""
        now = self._now()
        reminded = 0
        async with self.db.write() as session:
            rows = (
                await session.execute(
                    update(Subscription)
                    .where(
                        Subscription.is_current,
                        Subscription.current_period_end > now,
                        Subscription.current_period_end <= now + before,
                        or_(
                            Subscription.reminded_at.is_(None),
                            Subscription.reminded_at < Subscription.current_period_start,
                        ),
                    )
                    .values(reminded_at=now)
                    .returning(
                        Subscription.user_id,
                        Subscription.tier,
                        Subscription.current_period_end,
                        Subscription.cancel_at_period_end,
                        Subscription.meta,
                    )
                    .execution_options(synchronize_session=False)
                )
            ).all()
            for user_id, tier, end, cancelled, meta in rows:
                renews = bool((meta or {}).get("recurring")) and not cancelled
                payload: dict[str, Any] = {
                    "tier": tier,
                    "period_end": end.isoformat(),
                    "renews": renews,
                }
                self.outbox.add(session, user_id, "plan.reminder", payload)
                reminded += 1
        if reminded:
            self.outbox.wake()
        return reminded
