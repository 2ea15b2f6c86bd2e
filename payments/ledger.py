"""Orders the bot offers and the ledger of money that moved.

Exactly once is the database's job: a ledger row is keyed by (provider, the
provider's charge or event id), inserted with ON CONFLICT DO NOTHING, and the plan
change it pays for happens in the same transaction only when that insert wrote a
row. The same payment delivered again, or ten times at once, finds the key taken
and changes nothing.

A refund is keyed by the payment it returns (`refund:<charge id>`), whoever
reports it: the provider's notice or an admin's refund (payments/refunds.py), whose
claim on that key is completed here. It marks the payment `refunded` and takes back
the time that payment bought and that is not used yet (SubscriptionService.refund),
which is why a payment's row keeps the period it bought (`bought_from`,
`bought_until`).
"""

from __future__ import annotations

import logging
import uuid
from dataclasses import dataclass, field, replace
from datetime import datetime
from typing import Any, Literal

from sqlalchemy import select, update
from sqlalchemy.ext.asyncio import AsyncSession

from core import metrics
from core.clock import utcnow
from core.db.engine import Database
from core.db.models import AuditLog, Payment, PaymentOrder, User
from core.db.upsert import insert_new
from core.outbox import Outbox
from core.subscriptions import PlanChange, Purchase, SubscriptionService
from core.tiers import Tier

log = logging.getLogger(__name__)

Kind = Literal["payment", "renewal", "refund"]
PAID_KINDS = ("payment", "renewal")
# A refund row while it is not done: claimed by an admin (the provider call under
# way or its answer lost), accepted by the provider but not finished, or refused.
REFUND_OPEN = ("requested", "pending", "failed")


def refund_key(charge_id: str) -> str:
    """The ledger key of the refund of payment `charge_id`: one per payment."""
    return f"refund:{charge_id}"


def _moment(value: Any) -> datetime | None:
    return datetime.fromisoformat(value) if isinstance(value, str) and value else None


@dataclass(frozen=True)
class Order:
    id: uuid.UUID
    user_id: int
    provider: str
    tier: Tier
    amount_minor: int
    currency: str
    idempotence_key: str
    status: str
    provider_payment_id: str | None
    meta: dict[str, Any]


@dataclass(frozen=True)
class LedgerEntry:
    """One movement of money as the provider reported it."""

    provider: str
    charge_id: str  # unique per provider: the charge, refund or event id
    kind: Kind
    user_id: int
    amount_minor: int
    currency: str
    status: str = "succeeded"
    tier: Tier | None = None
    order_id: uuid.UUID | None = None
    # What the payment buys (payment, renewal); None records the money only.
    purchase: Purchase | None = None
    # For a refund: the ledger key of the payment it returns.
    refund_of: str | None = None
    platform: str | None = None  # where the person is told
    payload: dict[str, Any] = field(default_factory=dict)


@dataclass(frozen=True)
class Settled:
    duplicate: bool
    change: PlanChange | None = None


def platform_of(meta: dict[str, Any]) -> str | None:
    """Where the person bought (kept in an order's or a subscription's metadata)."""
    return str(meta.get("platform") or "") or None


def _order(row: PaymentOrder) -> Order:
    return Order(
        row.id,
        row.user_id,
        row.provider,
        Tier(row.tier),
        row.amount_minor,
        row.currency,
        row.idempotence_key,
        row.status,
        row.provider_payment_id,
        dict(row.meta or {}),
    )


class Ledger:
    def __init__(self, db: Database, subscriptions: SubscriptionService, outbox: Outbox) -> None:
        self.db = db
        self.subscriptions = subscriptions
        self.outbox = outbox

    # -- orders -----------------------------------------------------------------------

    async def create_order(
        self,
        user_id: int,
        provider: str,
        tier: Tier,
        amount_minor: int,
        currency: str,
        meta: dict[str, Any] | None = None,
        idempotence_key: str | None = None,
    ) -> Order:
        """A new order with its own idempotence key: every retry of the provider call
        for this order sends the same key, so the provider charges once. A key given
        here that is taken already raises IntegrityError (that order exists)."""
        order_id = uuid.uuid4()
        row = PaymentOrder(
            id=order_id,
            user_id=user_id,
            provider=provider,
            tier=tier.value,
            amount_minor=amount_minor,
            currency=currency,
            idempotence_key=idempotence_key or order_id.hex,
            status="created",
            meta=meta or {},
        )
        async with self.db.write() as session:
            session.add(row)
        return _order(row)

    async def order(self, order_id: uuid.UUID) -> Order | None:
        async with self.db.read() as session:
            row = await session.get(PaymentOrder, order_id)
        return _order(row) if row is not None else None

    async def order_by_key(self, idempotence_key: str) -> Order | None:
        async with self.db.read() as session:
            row = await session.scalar(
                select(PaymentOrder).where(PaymentOrder.idempotence_key == idempotence_key)
            )
        return _order(row) if row is not None else None

    async def order_by_payment(self, provider: str, payment_id: str) -> Order | None:
        async with self.db.read() as session:
            row = await session.scalar(
                select(PaymentOrder).where(
                    PaymentOrder.provider == provider,
                    PaymentOrder.provider_payment_id == payment_id,
                )
            )
        return _order(row) if row is not None else None

    async def attach_payment(
        self, order_id: uuid.UUID, payment_id: str, status: str = "pending"
    ) -> None:
        """Remember the provider's id for the order (YooKassa payment, Razorpay
        subscription) so its webhooks find their way back."""
        async with self.db.write() as session:
            await session.execute(
                update(PaymentOrder)
                .where(PaymentOrder.id == order_id)
                .values(provider_payment_id=payment_id, status=status)
            )

    async def move_order(self, order_id: uuid.UUID, old: str, new: str) -> bool:
        """Change the order's status only if it is still `old`: of several callers,
        exactly one gets True (the one that may go on to charge)."""
        async with self.db.write() as session:
            moved = await session.execute(
                update(PaymentOrder)
                .where(PaymentOrder.id == order_id, PaymentOrder.status == old)
                .values(status=new)
                .returning(PaymentOrder.id)
            )
            return moved.first() is not None

    async def mark_order(self, order_id: uuid.UUID, status: str) -> None:
        async with self.db.write() as session:
            await session.execute(
                update(PaymentOrder).where(PaymentOrder.id == order_id).values(status=status)
            )

    # -- the ledger ---------------------------------------------------------------------

    async def settle(self, entry: LedgerEntry) -> Settled:
        """Write the ledger row and, if it is new, the plan change it causes, in one
        transaction. A key already taken means this was applied before."""
        async with self.db.write() as session:
            settled = await self.settle_in(session, entry)
        if not settled.duplicate:
            self.outbox.wake()
        return settled

    async def settle_in(self, session: AsyncSession, entry: LedgerEntry) -> Settled:
        """`settle` inside the caller's transaction (the caller wakes the outbox)."""
        settled = await self._settle_in(session, entry)
        result = "duplicate" if settled.duplicate else "applied"
        metrics.PAYMENTS.labels(entry.provider, entry.kind, result).inc()
        return settled

    async def _settle_in(self, session: AsyncSession, entry: LedgerEntry) -> Settled:
        if entry.kind == "refund":
            return await self._settle_refund(session, entry)
        payment_id = await self._insert(session, entry)
        if payment_id is None:
            log.info("%s %s %s: already recorded", entry.provider, entry.kind, entry.charge_id)
            return Settled(duplicate=True)
        change = await self._apply(session, entry)
        if change is not None and change.subscription_id is not None:
            values: dict[str, Any] = {"subscription_id": change.subscription_id}
            if change.paid_from is not None and change.period_end is not None:
                # The time this payment bought: what a refund of it takes back.
                values["payload"] = {
                    **entry.payload,
                    "bought_from": change.paid_from.isoformat(),
                    "bought_until": change.period_end.isoformat(),
                }
            await session.execute(update(Payment).where(Payment.id == payment_id).values(**values))
        if entry.order_id is not None and entry.purchase is not None:
            await session.execute(
                update(PaymentOrder).where(PaymentOrder.id == entry.order_id).values(status="paid")
            )
        return Settled(duplicate=False, change=change)

    async def _insert(self, session: AsyncSession, entry: LedgerEntry) -> int | None:
        values = {
            "user_id": entry.user_id,
            "provider": entry.provider,
            "provider_charge_id": entry.charge_id,
            "kind": entry.kind,
            "status": entry.status,
            "tier": entry.tier.value if entry.tier is not None else None,
            "amount_minor": entry.amount_minor,
            "currency": entry.currency,
            "order_id": entry.order_id,
            "payload": entry.payload,
        }
        return await insert_new(session, Payment, values, ["provider", "provider_charge_id"])

    async def _apply(self, session: AsyncSession, entry: LedgerEntry) -> PlanChange | None:
        if entry.purchase is None:
            return None
        if entry.order_id is not None and entry.purchase.provider_subscription_id is not None:
            # The order remembers the provider's subscription, so a renewal that
            # finds no plan here (it lapsed) still knows what it renews.
            await session.execute(
                update(PaymentOrder)
                .where(
                    PaymentOrder.id == entry.order_id,
                    PaymentOrder.provider_payment_id.is_(None),
                )
                .values(provider_payment_id=entry.purchase.provider_subscription_id)
            )
        change = await self.subscriptions.activate(session, entry.user_id, entry.purchase)
        if change is None:
            # Money for a smaller plan than the live one: nothing to give, so the
            # person hears it and support can refund it.
            self.outbox.add(
                session,
                entry.user_id,
                "plan.payment_unused",
                {
                    "tier": entry.purchase.tier.value,
                    "amount": entry.amount_minor,
                    "currency": entry.currency,
                },
                platform=entry.platform,
            )
        return change

    # -- refunds ------------------------------------------------------------------------

    async def _settle_refund(self, session: AsyncSession, entry: LedgerEntry) -> Settled:
        """A refund the provider reports done (its notification, or its answer to
        our call). Keyed by the payment it returns (`refund_key`), so a payment is
        refunded once in the ledger: an admin's claim on that key (requested,
        pending or failed) is completed now; a finished refund makes this a
        duplicate."""
        row_id = await self._insert(session, entry)
        claim: dict[str, Any] = {}
        if row_id is None:
            row = await session.scalar(
                select(Payment)
                .where(
                    Payment.provider == entry.provider,
                    Payment.provider_charge_id == entry.charge_id,
                )
                .with_for_update()
                .execution_options(populate_existing=True)
            )
            assert row is not None  # the key is taken
            if row.status not in REFUND_OPEN:
                return await self._another_refund(session, entry, row)
            claim = dict(row.payload or {})
            row.status = "succeeded"
            row.payload = {**claim, **entry.payload}
            row.amount_minor = entry.amount_minor
            row.currency = entry.currency
            row.created_at = utcnow()  # when the money went back
            row_id = row.id
        change = await self._refund_plan(session, entry, row_id, claim)
        return Settled(duplicate=False, change=change)

    async def _another_refund(
        self, session: AsyncSession, entry: LedgerEntry, done: Payment
    ) -> Settled:
        """The payment was refunded already. A different refund of it at the
        provider (a partial one made by hand) is money too: recorded on a key of
        its own, with no plan change."""
        mine = (done.payload or {}).get("refund_id")
        other = entry.payload.get("refund_id")
        if not other or not mine or other == mine:
            log.info("%s refund %s: already recorded", entry.provider, entry.charge_id)
            return Settled(duplicate=True)
        extra = replace(entry, charge_id=f"{entry.charge_id}:{other}")
        if await self._insert(session, extra) is None:
            return Settled(duplicate=True)
        log.warning(
            "%s: another refund %s of %s recorded; the plan is not changed again",
            entry.provider,
            other,
            entry.refund_of,
        )
        return Settled(duplicate=False)

    async def _refund_plan(
        self, session: AsyncSession, entry: LedgerEntry, row_id: int, claim: dict[str, Any]
    ) -> PlanChange | None:
        """What the refund of `entry.refund_of` does: that payment is marked
        refunded, the plan loses the time it bought (SubscriptionService.refund),
        the person is told, and an admin's refund is audited."""
        original = None
        if entry.refund_of is not None:
            original = await session.scalar(
                select(Payment)
                .where(
                    Payment.provider == entry.provider,
                    Payment.provider_charge_id == entry.refund_of,
                    Payment.kind.in_(PAID_KINDS),
                )
                .with_for_update()
                .execution_options(populate_existing=True)
            )
        if original is None or original.user_id is None:
            log.warning(
                "%s refund %s: no payment %s on record; the plan stays",
                entry.provider,
                entry.charge_id,
                entry.refund_of,
            )
            return None
        user_id = original.user_id
        before = await self._plan_of(session, user_id)
        was = original.status
        original.status = "refunded"
        change = None
        if was != "refunded":
            if original.subscription_id is not None:
                bought = original.payload or {}
                change = await self.subscriptions.refund(
                    session,
                    original.subscription_id,
                    paid_from=_moment(bought.get("bought_from")),
                    paid_until=_moment(bought.get("bought_until")),
                    platform=entry.platform,
                )
            if change is None:
                self.outbox.add(
                    session,
                    user_id,
                    "plan.payment_refunded",
                    {"amount": entry.amount_minor, "currency": entry.currency},
                    platform=entry.platform,
                )
        await session.execute(
            update(Payment)
            .where(Payment.id == row_id)
            .values(user_id=user_id, subscription_id=original.subscription_id)
        )
        if "requested_by" in claim:
            after = await self._plan_of(session, user_id)
            session.add(
                AuditLog(
                    actor_user_id=claim.get("requested_by"),
                    action="refund",
                    target_user_id=user_id,
                    details={
                        "outcome": "refunded",
                        "payment_id": original.id,
                        "provider": entry.provider,
                        "charge_id": original.provider_charge_id,
                        "refund_id": entry.payload.get("refund_id"),
                        "amount": entry.amount_minor,
                        "currency": entry.currency,
                        "reason": claim.get("reason"),
                        "before": {"payment": was, **before},
                        "after": {"payment": "refunded", **after},
                    },
                )
            )
        return change

    async def refund_failed(
        self, provider: str, charge_id: str, refund_id: str | None, reason: str
    ) -> bool:
        async with self.db.write() as session:
            return await self.refund_failed_in(session, provider, charge_id, refund_id, reason)

    async def refund_failed_in(
        self,
        session: AsyncSession,
        provider: str,
        charge_id: str,
        refund_id: str | None,
        reason: str,
    ) -> bool:
        """The provider gave up on the refund of payment `charge_id` (refund
        `refund_id`): an open claim on it becomes `failed`, so it can be pressed
        again. True if a claim changed."""
        row = await session.scalar(
            select(Payment)
            .where(
                Payment.provider == provider, Payment.provider_charge_id == refund_key(charge_id)
            )
            .with_for_update()
            .execution_options(populate_existing=True)
        )
        if row is None or row.status not in ("requested", "pending"):
            return False
        payload = dict(row.payload or {})
        if refund_id and payload.get("refund_id") not in (None, refund_id):
            return False  # another refund of it failed, not this one
        row.status = "failed"
        row.payload = {**payload, "refund_id": refund_id, "error": reason[:500]}
        log.warning("%s refund of %s failed: %s", provider, charge_id, reason)
        return True

    async def _plan_of(self, session: AsyncSession, user_id: int) -> dict[str, Any]:
        user = await session.get(User, user_id)
        sub = await self.subscriptions.current(session, user_id)
        return {
            "tier": user.tier if user is not None else None,
            "plan_status": user.tier_status if user is not None else None,
            "period_end": sub.current_period_end.isoformat() if sub is not None else None,
        }

    async def is_recorded(self, provider: str, charge_id: str) -> bool:
        async with self.db.read() as session:
            found = await session.scalar(
                select(Payment.id).where(
                    Payment.provider == provider, Payment.provider_charge_id == charge_id
                )
            )
        return found is not None
