"""Plan changes, expiry, reminders and the outbox, on the real database with a
controlled clock."""

from __future__ import annotations

import asyncio
from datetime import UTC, datetime, timedelta
from typing import Any

import pytest
from sqlalchemy import func, select

from core.accounts import AccountService, PlatformProfile
from core.db.engine import Database
from core.db.models import OutboxMessage, Subscription, SubscriptionHistory, User
from core.outbox import Outbox, OutgoingMessage, Undeliverable
from core.quotas import QuotaService
from core.subscriptions import PERIOD, PlanChange, Purchase, Reason, Status, SubscriptionService
from core.tiers import TIERS, QuotaKey, Tier
from tests.test_quotas import FakeNow

START = datetime(2026, 3, 10, 12, 0, tzinfo=UTC)
GRACE = timedelta(hours=24)


class World:
    def __init__(self, db: Database) -> None:
        self.db = db
        self.now = FakeNow(START)
        self.quotas = QuotaService(db, now=self.now)
        self.outbox = Outbox(db, now=self.now)
        self.subs = SubscriptionService(db, self.quotas, self.outbox, now=self.now)

    async def user(self, name: str = "ann") -> int:
        user = await AccountService(self.db).upsert(PlatformProfile("telegram", name))
        return user.id

    async def buy(self, user_id: int, tier: Tier = Tier.PRO, **purchase: Any) -> PlanChange | None:
        async with self.db.write() as session:
            return await self.subs.activate(
                session,
                user_id,
                Purchase(tier=tier, provider=str(purchase.pop("provider", "test")), **purchase),
            )

    async def use(self, user_id: int, tier: Tier, times: int) -> None:
        for _ in range(times):
            async with self.db.write() as session:
                await self.quotas.reserve(session, user_id, tier, QuotaKey.SMALL)

    async def count(self, model: type[object], **where: object) -> int:
        async with self.db.read() as session:
            query = select(func.count()).select_from(model)
            for name, value in where.items():
                query = query.where(getattr(model, name) == value)
            return int(await session.scalar(query) or 0)

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
            return [tuple(row) for row in rows.all()]  # type: ignore[misc]

    async def kinds(self, user_id: int) -> list[str]:
        async with self.db.read() as session:
            return list(
                (
                    await session.scalars(
                        select(OutboxMessage.kind)
                        .where(OutboxMessage.user_id == user_id)
                        .order_by(OutboxMessage.id)
                    )
                ).all()
            )

    async def tier(self, user_id: int) -> tuple[str, str]:
        async with self.db.read() as session:
            user = await session.get(User, user_id)
            assert user is not None
            return user.tier, user.tier_status

    async def current(self, user_id: int) -> Subscription | None:
        async with self.db.read() as session:
            return await self.subs.current(session, user_id)

    async def used(self, user_id: int) -> tuple[int, int]:
        report = {s.key: s for s in await self.quotas.report(user_id, Tier.FREE)}
        small = report[QuotaKey.SMALL]
        return small.used, small.limit


@pytest.fixture
def world(db: Database) -> World:
    return World(db)


async def test_a_new_plan_writes_everything_in_one_go(world: World) -> None:
    uid = await world.user()
    await world.use(uid, Tier.FREE, 7)
    change = await world.buy(uid)
    assert change is not None
    assert await world.tier(uid) == ("pro", "active")
    sub = await world.current(uid)
    assert sub is not None and sub.status == Status.ACTIVE
    assert sub.current_period_end == START + PERIOD
    assert await world.history(uid) == [("free", "pro", "new_subscription")]
    assert await world.kinds(uid) == ["plan.activated"]
    # A new plan starts with fresh quotas at the new limits.
    assert await world.used(uid) == (0, TIERS[Tier.PRO].quotas[QuotaKey.SMALL].limit)


async def test_renewal_extends_from_the_end_and_keeps_the_counters(world: World) -> None:
    uid = await world.user()
    await world.buy(uid)
    await world.use(uid, Tier.PRO, 5)
    world.now.advance(days=20)
    await world.buy(uid)
    sub = await world.current(uid)
    assert sub is not None
    assert sub.current_period_end == START + 2 * PERIOD
    assert await world.used(uid) == (5, 500)
    assert await world.history(uid) == [
        ("free", "pro", "new_subscription"),
        ("pro", "pro", "renewal"),
    ]
    assert await world.count(Subscription, user_id=uid) == 1


async def test_a_provider_period_end_never_shortens_the_plan(world: World) -> None:
    uid = await world.user()
    await world.buy(uid, period_end=START + timedelta(days=40))
    await world.buy(uid, period_end=START + timedelta(days=30))
    sub = await world.current(uid)
    assert sub is not None and sub.current_period_end == START + timedelta(days=40)


async def test_mid_cycle_upgrade_resets_quotas_and_replaces_the_row(world: World) -> None:
    uid = await world.user()
    await world.buy(uid)
    await world.use(uid, Tier.PRO, 42)
    world.now.advance(days=10)
    await world.buy(uid, Tier.ENTERPRISE, reason=Reason.GRANT, period=timedelta(days=90))
    assert await world.tier(uid) == ("enterprise", "active")
    assert await world.used(uid) == (0, 5000)
    sub = await world.current(uid)
    assert sub is not None and sub.tier == "enterprise"
    assert sub.current_period_end == START + timedelta(days=100)
    assert await world.count(Subscription, user_id=uid, status=Status.REPLACED) == 1
    assert (await world.history(uid))[-1] == ("pro", "enterprise", "grant")


async def test_an_upgrade_by_payment_is_called_an_upgrade(world: World) -> None:
    uid = await world.user()
    await world.buy(uid)
    await world.buy(uid, Tier.ENTERPRISE)
    assert (await world.history(uid))[-1] == ("pro", "enterprise", "upgrade")


async def test_a_downgrade_changes_only_the_limits(world: World) -> None:
    uid = await world.user()
    await world.buy(uid, Tier.ENTERPRISE, reason=Reason.GRANT)
    await world.use(uid, Tier.ENTERPRISE, 3)
    await world.buy(uid, Tier.PRO, reason=Reason.GRANT)
    assert await world.used(uid) == (3, 500)
    assert await world.kinds(uid) == ["plan.activated", "plan.downgraded"]


async def test_a_smaller_payment_never_takes_a_live_bigger_plan_away(world: World) -> None:
    uid = await world.user()
    await world.buy(uid, Tier.ENTERPRISE, reason=Reason.GRANT)
    assert await world.buy(uid, Tier.PRO) is None
    assert await world.tier(uid) == ("enterprise", "active")
    assert len(await world.history(uid)) == 1


async def test_cancel_keeps_access_until_the_end_then_expiry_after_grace(world: World) -> None:
    uid = await world.user()
    await world.buy(uid)
    async with world.db.write() as session:
        assert await world.subs.cancel(session, uid) is not None
    async with world.db.write() as session:
        assert await world.subs.cancel(session, uid) is None  # once
    assert await world.tier(uid) == ("pro", "cancelled")
    world.now.advance(days=30, hours=23)  # past the end, inside the grace period
    assert await world.subs.expire_due(GRACE) == []
    world.now.advance(hours=2)
    changes = await world.subs.expire_due(GRACE)
    assert [c.reason for c in changes] == [Reason.EXPIRY]
    assert await world.tier(uid) == ("free", "active")
    assert await world.used(uid) == (0, 100)
    assert await world.current(uid) is None
    assert await world.kinds(uid) == ["plan.activated", "plan.cancelled", "plan.expired"]
    assert await world.subs.expire_due(GRACE) == []  # nothing twice


async def test_a_late_renewal_inside_the_grace_period_keeps_the_plan(world: World) -> None:
    uid = await world.user()
    await world.buy(uid)
    world.now.advance(days=30, hours=5)
    await world.buy(uid, period_end=world.now() + PERIOD)
    world.now.advance(hours=30)
    assert await world.subs.expire_due(GRACE) == []
    assert await world.tier(uid) == ("pro", "active")


async def test_concurrent_expiry_runs_end_a_plan_once(world: World) -> None:
    uid = await world.user()
    await world.buy(uid)
    world.now.advance(days=32)
    results = await asyncio.gather(*(world.subs.expire_due(GRACE) for _ in range(5)))
    assert sum(len(r) for r in results) == 1
    assert await world.kinds(uid) == ["plan.activated", "plan.expired"]


async def test_reminder_once_per_period_three_days_before(world: World) -> None:
    uid = await world.user()
    await world.buy(uid)
    before = timedelta(days=3)
    world.now.advance(days=26)
    assert await world.subs.remind_due(before) == 0
    world.now.advance(days=1, hours=1)
    assert await world.subs.remind_due(before) == 1
    assert await world.subs.remind_due(before) == 0
    # Renewed: the next period gets its own reminder.
    await world.buy(uid)  # now ends on day 60
    world.now.advance(days=29)  # day 56: more than 3 days left
    assert await world.subs.remind_due(before) == 0
    world.now.advance(days=1)
    assert await world.subs.remind_due(before) == 1
    assert (await world.kinds(uid)).count("plan.reminder") == 2


async def test_refund_of_a_replaced_plan_changes_nothing(world: World) -> None:
    uid = await world.user()
    await world.buy(uid)
    old = await world.current(uid)
    assert old is not None
    await world.buy(uid, Tier.ENTERPRISE)
    async with world.db.write() as session:
        change = await world.subs.end(session, uid, Reason.REFUND, subscription_id=old.id)
    assert change is None
    assert await world.tier(uid) == ("enterprise", "active")


# -- the outbox ---------------------------------------------------------------------


async def test_outbox_delivers_each_message_once_across_senders(world: World) -> None:
    uids = [await world.user(f"u{i}") for i in range(6)]
    for uid in uids:
        await world.buy(uid)
    delivered: list[int] = []

    async def deliver(message: OutgoingMessage) -> None:
        await asyncio.sleep(0.01)
        delivered.append(message.id)

    senders = [Outbox(world.db, now=world.now) for _ in range(3)]
    counts = await asyncio.gather(
        *(s.deliver_pending({"telegram", None}, deliver) for s in senders)
    )
    assert sum(counts) == 6
    assert sorted(delivered) == sorted(set(delivered)) and len(delivered) == 6
    assert await world.count(OutboxMessage) == 6
    async with world.db.read() as session:
        unsent = await session.scalar(
            select(func.count()).select_from(OutboxMessage).where(OutboxMessage.sent_at.is_(None))
        )
    assert unsent == 0


async def test_outbox_retries_failures_later_and_gives_up_on_undeliverable(
    world: World,
) -> None:
    a, b = await world.user("a"), await world.user("b")
    await world.buy(a)
    await world.buy(b)
    attempts: dict[int, int] = {}

    async def deliver(message: OutgoingMessage) -> None:
        attempts[message.user_id] = attempts.get(message.user_id, 0) + 1
        if message.user_id == a:
            raise ConnectionError("network down")
        raise Undeliverable("blocked the bot")

    assert await world.outbox.deliver_pending({None}, deliver) == 0
    assert await world.outbox.deliver_pending({None}, deliver) == 0  # backing off
    assert attempts == {a: 1, b: 1}
    world.now.advance(seconds=6)
    sent: list[int] = []

    async def works(message: OutgoingMessage) -> None:
        sent.append(message.user_id)

    assert await world.outbox.deliver_pending({None}, works) == 1
    assert sent == [a]  # b was given up on


async def test_outbox_only_takes_its_platforms(world: World) -> None:
    uid = await world.user()
    async with world.db.write() as session:
        world.outbox.add(session, uid, "plan.activated", platform="discord")

    async def deliver(message: OutgoingMessage) -> None:
        raise AssertionError("not ours")

    assert await world.outbox.deliver_pending({"telegram", None}, deliver) == 0
    assert await world.count(OutboxMessage, platform="discord") == 1


async def test_expiry_leaves_a_plan_renewed_after_the_due_list_was_read(world: World) -> None:
    uid = await world.user()
    await world.buy(uid)
    world.now.advance(days=32)
    cutoff = world.now() - GRACE
    await world.buy(uid)  # the renewal commits between the scan and the write
    async with world.db.write() as session:
        change = await world.subs.end(session, uid, Reason.EXPIRY, due_before=cutoff)
    assert change is None
    assert await world.tier(uid) == ("pro", "active")


async def test_outbox_sender_leaves_a_batch_before_its_claim_runs_out(
    world: World, monkeypatch: pytest.MonkeyPatch
) -> None:
    """Slow sends (Telegram flood waits) must not outlast the claim: another
    process would take the rest and send them again."""
    import core.outbox

    monkeypatch.setattr(core.outbox, "CLAIM_SECONDS", 0.4)
    uids = [await world.user(f"s{i}") for i in range(4)]
    for uid in uids:
        await world.buy(uid)
    sent: list[int] = []

    async def slow(message: OutgoingMessage) -> None:
        await asyncio.sleep(0.15)
        sent.append(message.id)

    first = await world.outbox.deliver_pending({None, "telegram"}, slow)
    assert 0 < first < 4  # stopped early; the rest stay claimed for now
    # Their claim ran out: later passes take them, each again stopping in time (how
    # many fit in one claim depends on the machine's load, never more than fit).
    total, passes = first, 1
    while total < 4 and passes < 10:
        world.now.advance(seconds=1)
        total += await world.outbox.deliver_pending({None, "telegram"}, slow)
        passes += 1
    assert total == 4
    assert len(sent) == len(set(sent)) == 4
