"""DESIGN's refund rules on a controlled clock: what the refund of one payment does
to the plan (the admin's Refunds service and the providers' refund notices share
it through the ledger). Stars stand in for any provider here; the provider calls
are tested over HTTP in test_refunds.py."""

from __future__ import annotations

from datetime import UTC, datetime, timedelta
from typing import Any

import pytest
from sqlalchemy import func, select

from core.accounts import AccountService, PlatformProfile
from core.db.engine import Database
from core.db.models import AuditLog, OutboxMessage, Payment, Subscription, SubscriptionHistory, User
from core.outbox import Outbox
from core.quotas import QuotaService
from core.subscriptions import Purchase, SubscriptionService
from core.tiers import Tier
from payments.ledger import Ledger, LedgerEntry, Settled, refund_key
from payments.refunds import AlreadyRefunded, Refunds
from payments.stars import STARS
from tests.test_quotas import FakeNow

START = datetime(2026, 3, 10, 12, 0, tzinfo=UTC)
DAY = timedelta(days=1)
TELEGRAM_ID = 1001


class World:
    def __init__(self, db: Database) -> None:
        self.db = db
        self.now = FakeNow(START)
        self.quotas = QuotaService(db, now=self.now)
        self.outbox = Outbox(db, now=self.now)
        self.subs = SubscriptionService(db, self.quotas, self.outbox, now=self.now)
        self.ledger = Ledger(db, self.subs, self.outbox)
        self.star_refunds: list[tuple[int, str]] = []
        self.refunds = Refunds(
            db, self.ledger, self.subs, refund_star_payment=self._refund_star, now=self.now
        )

    async def _refund_star(self, user_id: int, charge_id: str) -> bool:
        self.star_refunds.append((user_id, charge_id))
        return True

    async def user(self) -> int:
        profile = PlatformProfile("telegram", str(TELEGRAM_ID))
        return (await AccountService(self.db).upsert(profile)).id

    async def pay(
        self, user_id: int, charge: str, tier: Tier = Tier.PRO, *, renewal: bool = False
    ) -> Settled:
        return await self.ledger.settle(
            LedgerEntry(
                provider=STARS,
                charge_id=charge,
                kind="renewal" if renewal else "payment",
                user_id=user_id,
                amount_minor=500 if tier is Tier.PRO else 2000,
                currency="XTR",
                tier=tier,
                purchase=Purchase(tier=tier, provider=STARS, platform="telegram"),
                platform="telegram",
            )
        )

    async def refund_notice(self, user_id: int, charge: str) -> Settled:
        """Telegram's refunded_payment for `charge`."""
        return await self.ledger.settle(
            LedgerEntry(
                provider=STARS,
                charge_id=refund_key(charge),
                kind="refund",
                user_id=user_id,
                amount_minor=500,
                currency="XTR",
                refund_of=charge,
                platform="telegram",
            )
        )

    async def plan(self, user_id: int) -> tuple[str, datetime | None]:
        async with self.db.read() as session:
            user = await session.get(User, user_id)
            sub = await self.subs.current(session, user_id)
        assert user is not None
        return user.tier, sub.current_period_end if sub is not None else None

    async def history(self, user_id: int) -> list[tuple[str | None, str, str]]:
        async with self.db.read() as session:
            rows = await session.execute(
                select(
                    SubscriptionHistory.old_tier,
                    SubscriptionHistory.new_tier,
                    SubscriptionHistory.change_reason,
                )
                .where(SubscriptionHistory.user_id == user_id)
                .order_by(SubscriptionHistory.id)
            )
            return [(old, new, why) for old, new, why in rows.all()]

    async def notices(self, user_id: int) -> list[str]:
        async with self.db.read() as session:
            rows = await session.scalars(
                select(OutboxMessage.kind)
                .where(OutboxMessage.user_id == user_id)
                .order_by(OutboxMessage.id)
            )
            return list(rows.all())

    async def payment(self, charge: str) -> Payment:
        async with self.db.read() as session:
            row = await session.scalar(select(Payment).where(Payment.provider_charge_id == charge))
        assert row is not None
        return row

    async def count(self, model: type[Any]) -> int:
        async with self.db.read() as session:
            return int(await session.scalar(select(func.count()).select_from(model)) or 0)


@pytest.fixture
def world(db: Database) -> World:
    return World(db)


async def test_refund_of_the_payment_for_the_current_period_ends_the_plan_now(
    world: World,
) -> None:
    uid = await world.user()
    await world.pay(uid, "c1")
    world.now.advance(days=10)

    result = await world.refunds.refund("c1", admin_user_id=uid, reason="asked")

    assert world.star_refunds == [(TELEGRAM_ID, "c1")]
    assert result.status == "refunded"
    assert (result.before.tier, result.after.tier) == (Tier.PRO, Tier.FREE)
    assert await world.plan(uid) == ("free", None)
    assert await world.history(uid) == [
        ("free", "pro", "new_subscription"),
        ("pro", "free", "refund"),
    ]
    assert await world.notices(uid) == ["plan.activated", "plan.refunded"]
    assert (await world.payment("c1")).status == "refunded"
    refund = await world.payment(refund_key("c1"))
    assert (refund.kind, refund.status, refund.amount_minor) == ("refund", "succeeded", 500)
    async with world.db.read() as session:
        subs = (await session.scalars(select(Subscription))).all()
        audit = (await session.scalars(select(AuditLog))).all()
    assert [(s.is_current, s.status) for s in subs] == [(False, "refunded")]
    (entry,) = audit
    assert (entry.actor_user_id, entry.action, entry.target_user_id) == (uid, "refund", uid)
    assert entry.details["reason"] == "asked"
    assert entry.details["before"]["tier"] == "pro"
    assert entry.details["after"]["tier"] == "free"
    assert entry.details["before"]["payment"] == "succeeded"
    assert entry.details["after"]["payment"] == "refunded"
    # Telegram's refunded_payment message that follows changes nothing more.
    assert (await world.refund_notice(uid, "c1")).duplicate
    assert await world.notices(uid) == ["plan.activated", "plan.refunded"]
    with pytest.raises(AlreadyRefunded):
        await world.refunds.refund("c1", admin_user_id=uid, reason=None)
    assert len(world.star_refunds) == 1


async def test_refund_of_an_older_used_period_keeps_the_current_plan(world: World) -> None:
    uid = await world.user()
    await world.pay(uid, "c1")  # days 0-30
    world.now.advance(days=29)
    await world.pay(uid, "c2", renewal=True)  # days 30-60
    world.now.advance(days=5)  # day 34: c1's period is over
    before = await world.plan(uid)

    result = await world.refunds.refund("c1", admin_user_id=None, reason=None)

    assert result.status == "refunded" and result.change is None
    assert result.before == result.after
    assert await world.plan(uid) == before == ("pro", START + 60 * DAY)
    assert [why for _, _, why in await world.history(uid)] == ["new_subscription", "renewal"]
    # The person still hears that the money went back.
    assert (await world.notices(uid))[-1] == "plan.payment_refunded"
    assert (await world.payment("c1")).status == "refunded"
    # The payment for the current period still ends it.
    await world.refunds.refund("c2", admin_user_id=None, reason=None)
    assert await world.plan(uid) == ("free", None)


async def test_refund_of_a_renewal_ends_the_plan_at_once(world: World) -> None:
    """The renewal bought the plan's current end: its refund ends the plan now,
    even when it was paid before the earlier period ran out."""
    uid = await world.user()
    await world.pay(uid, "c1")  # days 0-30
    world.now.advance(days=27)
    await world.pay(uid, "c2", renewal=True)  # paid early: days 30-60
    world.now.advance(days=1)

    await world.refunds.refund("c2", admin_user_id=None, reason=None)

    assert await world.plan(uid) == ("free", None)
    assert (await world.history(uid))[-1] == ("pro", "free", "refund")
    assert (await world.notices(uid))[-1] == "plan.refunded"


async def test_refund_of_an_upgrade_falls_back_to_the_plan_it_replaced(world: World) -> None:
    uid = await world.user()
    await world.pay(uid, "pro-1")  # pro, days 0-30
    world.now.advance(days=5)
    await world.pay(uid, "ent-1", Tier.ENTERPRISE)  # upgrade: enterprise, days 5-35
    world.now.advance(days=1)

    await world.refunds.refund("ent-1", admin_user_id=None, reason=None)

    assert await world.plan(uid) == ("pro", START + 30 * DAY)
    assert (await world.history(uid))[-1] == ("enterprise", "pro", "refund")
    assert (await world.notices(uid))[-1] == "plan.refunded_back"
    async with world.db.read() as session:
        current = await world.subs.current(session, uid)
    assert current is not None and (current.tier, current.status) == ("pro", "active")


async def test_a_refunded_replaced_plan_is_not_fallen_back_to(world: World) -> None:
    uid = await world.user()
    await world.pay(uid, "pro-1")
    world.now.advance(days=5)
    await world.pay(uid, "ent-1", Tier.ENTERPRISE)
    world.now.advance(days=1)

    # The replaced plan's payment: the current plan stays.
    await world.refunds.refund("pro-1", admin_user_id=None, reason=None)
    assert (await world.plan(uid))[0] == "enterprise"
    assert (await world.notices(uid))[-1] == "plan.payment_refunded"
    # Then the upgrade's: nothing paid is left to fall back to.
    await world.refunds.refund("ent-1", admin_user_id=None, reason=None)
    assert await world.plan(uid) == ("free", None)
    assert (await world.history(uid))[-1] == ("enterprise", "free", "refund")


async def test_a_payment_recorded_before_periods_were_kept_counts_for_the_current_period(
    world: World,
) -> None:
    uid = await world.user()
    await world.pay(uid, "c1")
    async with world.db.write() as session:
        row = await session.scalar(select(Payment).where(Payment.provider_charge_id == "c1"))
        assert row is not None
        row.payload = {}
    world.now.advance(days=3)
    await world.refund_notice(uid, "c1")
    assert await world.plan(uid) == ("free", None)
