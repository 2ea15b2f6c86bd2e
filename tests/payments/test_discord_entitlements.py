"""Discord entitlements to the pro SKU, on the real database with a controlled clock:
each grants or ends the plan once, however often and in whatever order Discord
delivers it, and a start-up reconcile catches up with what was missed."""

from __future__ import annotations

import asyncio
from datetime import UTC, datetime, timedelta
from typing import Any

import discord
import pytest
from sqlalchemy import func, select

from core.accounts import AccountService, PlatformProfile
from core.db.engine import Database
from core.db.models import OutboxMessage, Payment, Subscription, SubscriptionHistory, User
from core.db.models.base import Base
from core.outbox import Outbox
from core.quotas import QuotaService
from core.subscriptions import PERIOD, PlanView, Purchase, Reason, Status, SubscriptionService
from core.tiers import QuotaKey, Tier
from payments.discord_entitlements import (
    APPLICATION_SUBSCRIPTION,
    OPEN_PERIOD,
    REFRESH_BEFORE,
    DiscordEntitlements,
    EntitlementEvent,
    Kind,
    ledger_key,
    premium_sku,
)
from payments.ledger import Ledger
from tests.test_quotas import FakeNow

START = datetime(2026, 3, 10, 12, 0, tzinfo=UTC)
SKU = 1158857122189168803
OTHER_SKU = 1158857122189168804
ANN = "1088605110638227537"
BOB = "1088605110638227538"


def event(
    entitlement_id: str = "1278078770116427839",
    *,
    kind: Kind = "create",
    user: str = ANN,
    ends_at: datetime | None = None,
    deleted: bool = False,
    sku: int = SKU,
) -> EntitlementEvent:
    return EntitlementEvent(
        id=entitlement_id,
        sku_id=sku,
        discord_user_id=user,
        starts_at=START,
        ends_at=ends_at,
        deleted=deleted or kind == "delete",
        kind=kind,
        entitlement_type=APPLICATION_SUBSCRIPTION,
    )


class World:
    def __init__(self, db: Database) -> None:
        self.db = db
        self.now = FakeNow(START)
        self.quotas = QuotaService(db, now=self.now)
        self.outbox = Outbox(db, now=self.now)
        self.subs = SubscriptionService(db, self.quotas, self.outbox, now=self.now)
        self.accounts = AccountService(db)
        self.ledger = Ledger(db, self.subs, self.outbox)
        self.discord = DiscordEntitlements(
            db, self.accounts, self.subs, self.ledger, SKU, now=self.now
        )

    async def uid(self, discord_user_id: str = ANN) -> int:
        user = await self.accounts.by_identity("discord", discord_user_id)
        assert user is not None
        return user.id

    async def count(self, model: type[Base], **where: object) -> int:
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
            return [(old, new, reason) for old, new, reason in rows.all()]

    async def notices(self, user_id: int) -> list[tuple[str, str | None]]:
        async with self.db.read() as session:
            rows = await session.execute(
                select(OutboxMessage.kind, OutboxMessage.platform)
                .where(OutboxMessage.user_id == user_id)
                .order_by(OutboxMessage.id)
            )
            return [(kind, platform) for kind, platform in rows.all()]

    async def kinds(self, user_id: int) -> list[str]:
        return [kind for kind, _ in await self.notices(user_id)]

    async def tier(self, user_id: int) -> str:
        async with self.db.read() as session:
            user = await session.get(User, user_id)
            assert user is not None
            return user.tier

    async def current(self, user_id: int) -> Subscription | None:
        async with self.db.read() as session:
            return await self.subs.current(session, user_id)

    async def period_end(self, user_id: int) -> datetime | None:
        sub = await self.current(user_id)
        return sub.current_period_end if sub is not None else None

    async def ledger_row(self, entitlement_id: str) -> Payment:
        async with self.db.read() as session:
            row = await session.scalar(
                select(Payment).where(
                    Payment.provider == "discord",
                    Payment.provider_charge_id == ledger_key(entitlement_id),
                )
            )
        assert row is not None
        return row

    async def use(self, user_id: int, times: int) -> None:
        for _ in range(times):
            async with self.db.write() as session:
                await self.quotas.reserve(session, user_id, Tier.PRO, QuotaKey.SMALL)

    async def used(self, user_id: int) -> int:
        report = {s.key: s for s in await self.quotas.report(user_id, Tier.PRO)}
        return report[QuotaKey.SMALL].used

    async def buy(self, user_id: int, tier: Tier = Tier.PRO, **purchase: Any) -> None:
        async with self.db.write() as session:
            await self.subs.activate(
                session, user_id, Purchase(tier=tier, provider="yookassa", **purchase)
            )

    async def outcomes(self, *events: EntitlementEvent) -> list[str]:
        return [(await self.discord.handle(e)).outcome for e in events]


@pytest.fixture
def world(db: Database) -> World:
    return World(db)


# -- create -----------------------------------------------------------------------------


async def test_create_twice_activates_once(world: World) -> None:
    assert await world.outcomes(event(), event()) == ["applied", "duplicate"]
    uid = await world.uid()
    assert await world.tier(uid) == "pro"
    sub = await world.current(uid)
    assert sub is not None
    assert (sub.payment_provider, sub.provider_subscription_id) == (
        "discord",
        "1278078770116427839",
    )
    assert sub.status == Status.ACTIVE and sub.meta["recurring"] is True
    # No end from Discord (a running subscription): OPEN_PERIOD from the sighting.
    assert sub.current_period_end == START + OPEN_PERIOD
    assert await world.history(uid) == [("free", "pro", "new_subscription")]
    assert await world.notices(uid) == [("plan.activated", "discord")]
    row = await world.ledger_row("1278078770116427839")
    assert (row.kind, row.status, row.user_id, row.subscription_id) == (
        "payment",
        "succeeded",
        uid,
        sub.id,
    )
    assert await world.count(Payment) == 1


async def test_create_with_an_end_grants_until_that_end(world: World) -> None:
    ends = START + timedelta(days=31)
    assert await world.outcomes(event(ends_at=ends)) == ["applied"]
    assert await world.period_end(await world.uid()) == ends


async def test_concurrent_double_delivery_activates_once(world: World) -> None:
    results = await asyncio.gather(*(world.discord.handle(event()) for _ in range(6)))
    assert sorted(r.outcome for r in results) == ["applied"] + ["duplicate"] * 5
    uid = await world.uid()
    assert await world.count(User) == 1
    assert await world.history(uid) == [("free", "pro", "new_subscription")]
    assert await world.kinds(uid) == ["plan.activated"]
    assert await world.count(Payment) == 1
    assert await world.count(Subscription) == 1


async def test_concurrent_twin_updates_extend_once(world: World) -> None:
    first = START + timedelta(days=30)
    await world.discord.handle(event(ends_at=first))
    second = first + timedelta(days=30)
    twins = [world.discord.handle(event(kind="update", ends_at=second)) for _ in range(6)]
    results = await asyncio.gather(*twins)
    assert sorted(r.outcome for r in results) == ["applied"] + ["duplicate"] * 5
    uid = await world.uid()
    assert await world.period_end(uid) == second
    assert await world.kinds(uid) == ["plan.activated", "plan.renewed"]
    assert len(await world.history(uid)) == 2


async def test_concurrent_create_and_delete_leave_the_person_on_free(world: World) -> None:
    """Whichever lands first, the deletion is the later state and wins."""
    await asyncio.gather(world.discord.handle(event()), world.discord.handle(event(kind="delete")))
    uid = await world.uid()
    assert await world.tier(uid) == "free"
    assert await world.history(uid) in (
        [],  # the delete came first: the create is older and changes nothing
        [("free", "pro", "new_subscription"), ("pro", "free", "refund")],
    )
    assert (await world.ledger_row("1278078770116427839")).status == "refunded"


async def test_another_sku_is_ignored(world: World) -> None:
    assert await world.outcomes(event(sku=OTHER_SKU), event(sku=OTHER_SKU, kind="delete")) == [
        "ignored",
        "ignored",
    ]
    for model in (User, Payment, Subscription, SubscriptionHistory, OutboxMessage):
        assert await world.count(model) == 0


async def test_nothing_is_ours_without_a_sku(world: World) -> None:
    world.discord.sku_pro = None
    assert await world.outcomes(event()) == ["ignored"]
    assert [r.outcome for r in await world.discord.reconcile([event()])] == ["ignored"]
    assert await world.count(Payment) == 0


async def test_a_bigger_live_plan_is_never_taken_away(world: World) -> None:
    user = await world.accounts.upsert(PlatformProfile("discord", ANN))
    await world.buy(user.id, Tier.ENTERPRISE, reason=Reason.GRANT)
    assert await world.outcomes(event(), event(kind="delete")) == ["recorded", "recorded"]
    assert await world.tier(user.id) == "enterprise"
    assert await world.history(user.id) == [("free", "enterprise", "grant")]


async def test_a_live_entitlement_comes_back_after_a_bigger_plan_ends(world: World) -> None:
    user = await world.accounts.upsert(PlatformProfile("discord", ANN))
    await world.buy(user.id, Tier.ENTERPRISE, reason=Reason.GRANT, period=timedelta(days=3))
    assert await world.outcomes(event()) == ["recorded"]
    world.now.advance(days=5)
    await world.subs.expire_due(timedelta(hours=24))
    assert await world.tier(user.id) == "free"
    assert [r.outcome for r in await world.discord.reconcile([event()])] == ["applied"]
    assert await world.tier(user.id) == "pro"
    assert await world.period_end(user.id) == world.now() + OPEN_PERIOD


# -- update -----------------------------------------------------------------------------


async def test_a_later_end_extends_and_keeps_the_counters(world: World) -> None:
    first = START + timedelta(days=30)
    await world.discord.handle(event(ends_at=first))
    uid = await world.uid()
    await world.use(uid, 5)
    world.now.advance(days=15)  # inside the month: the monthly counter stays
    second = first + timedelta(days=30)
    assert await world.outcomes(event(kind="update", ends_at=second)) == ["applied"]
    assert await world.period_end(uid) == second
    assert await world.used(uid) == 5
    assert await world.history(uid) == [
        ("free", "pro", "new_subscription"),
        ("pro", "pro", "renewal"),
    ]
    assert await world.kinds(uid) == ["plan.activated", "plan.renewed"]
    assert await world.outcomes(event(kind="update", ends_at=second)) == ["duplicate"]
    assert await world.count(Subscription) == 1


async def test_an_older_update_never_shortens_a_later_state(world: World) -> None:
    first = START + timedelta(days=30)
    second = first + timedelta(days=30)
    # The renewal arrives before the create it follows.
    assert await world.outcomes(
        event(kind="update", ends_at=second),
        event(kind="create", ends_at=first),
        event(kind="update", ends_at=first),
        event(kind="create"),  # no end at all: older still
    ) == ["applied", "stale", "stale", "stale"]
    uid = await world.uid()
    assert await world.period_end(uid) == second
    assert await world.history(uid) == [("free", "pro", "new_subscription")]


async def test_a_late_create_never_reopens_an_ended_entitlement(world: World) -> None:
    await world.discord.handle(event())
    uid = await world.uid()
    world.now.advance(days=12)
    ended = world.now() - timedelta(minutes=1)
    assert await world.outcomes(event(kind="update", ends_at=ended)) == ["applied"]
    assert await world.tier(uid) == "free"
    assert await world.outcomes(event(kind="create"), event(kind="update")) == [
        "stale",
        "stale",
    ]
    assert await world.tier(uid) == "free"
    assert await world.history(uid) == [
        ("free", "pro", "new_subscription"),
        ("pro", "free", "expiry"),
    ]
    assert await world.kinds(uid) == ["plan.activated", "plan.expired"]
    assert (await world.ledger_row("1278078770116427839")).status == "ended"


async def test_an_end_for_an_open_entitlement_cuts_the_plan_back(world: World) -> None:
    """A subscription cancelled in Discord: the entitlement gets an end sooner than
    the open period; the plan stays until then and does not renew."""
    await world.discord.handle(event())
    uid = await world.uid()
    ends = START + timedelta(days=9)
    assert await world.outcomes(event(kind="update", ends_at=ends)) == ["applied"]
    sub = await world.current(uid)
    assert sub is not None
    assert (sub.current_period_end, sub.status, sub.cancel_at_period_end) == (
        ends,
        Status.CANCELLED,
        True,
    )
    assert await world.kinds(uid) == ["plan.activated", "plan.cancelled"]
    # The scheduler ends it after the grace period, like any other plan.
    world.now.advance(days=10, hours=1)
    assert [c.reason for c in await world.subs.expire_due(timedelta(hours=24))] == [Reason.EXPIRY]
    assert await world.tier(uid) == "free"


async def test_an_end_never_cuts_into_time_another_payment_bought(world: World) -> None:
    await world.discord.handle(event())
    uid = await world.uid()
    await world.buy(uid)
    extended = await world.period_end(uid)
    ends = START + timedelta(days=9)
    assert await world.outcomes(event(kind="update", ends_at=ends)) == ["recorded"]
    sub = await world.current(uid)
    assert sub is not None
    assert (sub.current_period_end, sub.status) == (extended, Status.ACTIVE)
    world.now.advance(days=10)
    assert await world.outcomes(event(kind="update", ends_at=ends)) == ["duplicate"]
    assert await world.tier(uid) == "pro"


# -- delete -----------------------------------------------------------------------------


async def test_delete_ends_the_plan_at_once(world: World) -> None:
    await world.discord.handle(event(ends_at=START + timedelta(days=30)))
    uid = await world.uid()
    world.now.advance(days=2)
    assert await world.outcomes(event(kind="delete"), event(kind="delete")) == [
        "applied",
        "duplicate",
    ]
    assert await world.tier(uid) == "free"
    assert await world.current(uid) is None
    assert await world.count(Subscription, status=Status.REFUNDED) == 1
    assert await world.history(uid) == [
        ("free", "pro", "new_subscription"),
        ("pro", "free", "refund"),
    ]
    assert await world.notices(uid) == [
        ("plan.activated", "discord"),
        ("plan.refunded", "discord"),
    ]
    assert (await world.ledger_row("1278078770116427839")).status == "refunded"
    # A create or update delivered late changes nothing now.
    assert await world.outcomes(event(), event(kind="update")) == ["stale", "stale"]
    assert await world.tier(uid) == "free"


async def test_delete_of_a_period_another_payment_extended_keeps_that_time(
    world: World,
) -> None:
    """The entitlement paid for an older period: the plan keeps what was bought
    after it (DESIGN: a refund of an older period changes no plan)."""
    await world.discord.handle(event())
    uid = await world.uid()
    await world.buy(uid)  # 30 more days on top of the open period
    extended = await world.period_end(uid)
    assert extended == START + OPEN_PERIOD + PERIOD
    assert await world.outcomes(event(kind="delete")) == ["recorded"]
    assert await world.tier(uid) == "pro"
    assert await world.period_end(uid) == extended


async def test_delete_of_an_entitlement_that_extended_a_paid_plan_ends_it(
    world: World,
) -> None:
    """The entitlement bought the current period of a plan paid elsewhere, so its
    deletion ends the plan at once. (The days left of the earlier payment are not
    given back: one subscription row keeps no earlier periods, for any provider.)"""
    user = await world.accounts.upsert(PlatformProfile("discord", ANN))
    await world.buy(user.id, period=timedelta(days=10))
    assert await world.outcomes(event()) == ["applied"]
    assert await world.period_end(user.id) == START + OPEN_PERIOD
    assert await world.kinds(user.id) == ["plan.activated", "plan.renewed"]
    assert await world.outcomes(event(kind="delete")) == ["applied"]
    assert await world.tier(user.id) == "free"


# -- open entitlements and reconcile -------------------------------------------------------


async def test_an_open_entitlement_is_extended_when_little_is_left(world: World) -> None:
    begin = datetime(2026, 1, 1, 12, 0, tzinfo=UTC)  # a month without a quota reset
    world.now.moment = begin
    await world.discord.handle(event())
    uid = await world.uid()
    await world.use(uid, 3)
    world.now.advance(days=10)
    assert [r.outcome for r in await world.discord.reconcile([event(kind="update")])] == [
        "duplicate"
    ]
    assert await world.period_end(uid) == begin + OPEN_PERIOD
    world.now.moment = begin + OPEN_PERIOD - REFRESH_BEFORE + timedelta(minutes=1)
    assert [r.outcome for r in await world.discord.reconcile([event(kind="update")])] == ["applied"]
    assert await world.period_end(uid) == world.now() + OPEN_PERIOD
    assert await world.used(uid) == 3
    assert await world.kinds(uid) == ["plan.activated", "plan.renewed"]


async def test_reconcile_grants_the_missed_and_ends_the_unlisted(world: World) -> None:
    ann_ent, bob_ent, late_ent = "1001", "1002", "1003"
    await world.discord.handle(event(ann_ent, user=ANN))
    world.now.advance(hours=1)
    listed_at = world.now()
    world.now.advance(seconds=5)
    # Granted while the list was being fetched: not judged by its absence.
    await world.discord.handle(event(late_ent, user="1088605110638227539"))
    results = await world.discord.reconcile(
        [event(bob_ent, user=BOB, kind="update"), event("9", user=BOB, sku=OTHER_SKU)],
        listed_at=listed_at,
    )
    assert [r.outcome for r in results] == ["applied", "ignored", "applied"]
    ann, bob = await world.uid(ANN), await world.uid(BOB)
    assert await world.tier(bob) == "pro"
    assert await world.tier(ann) == "free"
    assert await world.history(ann) == [
        ("free", "pro", "new_subscription"),
        ("pro", "free", "refund"),
    ]
    assert await world.tier(await world.uid("1088605110638227539")) == "pro"
    # Run again: nothing more happens.
    world.now.advance(minutes=1)
    again = await world.discord.reconcile(
        [event(bob_ent, user=BOB), event(late_ent, user="1088605110638227539")],
        listed_at=world.now(),
    )
    assert [r.outcome for r in again] == ["duplicate", "duplicate"]
    assert await world.history(bob) == [("free", "pro", "new_subscription")]


async def test_reconcile_ends_an_entitlement_listed_as_ended(world: World) -> None:
    await world.discord.handle(event())
    uid = await world.uid()
    world.now.advance(days=3)
    ended = event(kind="update", ends_at=world.now() - timedelta(hours=2))
    assert [r.outcome for r in await world.discord.reconcile([ended])] == ["applied"]
    assert await world.tier(uid) == "free"
    assert (await world.history(uid))[-1] == ("pro", "free", "expiry")


# -- the adapter's side -----------------------------------------------------------------


def test_an_event_from_a_discord_py_entitlement() -> None:
    data: dict[str, Any] = {
        "id": "1278078770116427839",
        "sku_id": str(SKU),
        "application_id": "1",
        "user_id": ANN,
        "type": 8,
        "deleted": False,
        "starts_at": "2026-03-10T12:00:00+00:00",
        "ends_at": None,
    }
    entitlement = discord.Entitlement(state=None, data=data)  # type: ignore[arg-type]
    made = EntitlementEvent.of(entitlement, "create")
    assert made == EntitlementEvent(
        id="1278078770116427839",
        sku_id=SKU,
        discord_user_id=ANN,
        starts_at=START,
        ends_at=None,
        deleted=False,
        kind="create",
        entitlement_type=APPLICATION_SUBSCRIPTION,
    )
    assert EntitlementEvent.of(entitlement, "delete") is not None
    assert EntitlementEvent.of(entitlement, "delete").deleted  # type: ignore[union-attr]
    guild = discord.Entitlement(
        state=None,  # type: ignore[arg-type]
        data={**data, "user_id": None, "guild_id": "5"},  # type: ignore[typeddict-item]
    )
    assert EntitlementEvent.of(guild, "create") is None


def test_premium_button_only_where_it_can_give_something() -> None:
    def view(tier: Tier, provider: str | None, cancelled: bool = False) -> PlanView:
        end = None if provider is None else START
        return PlanView(tier, "active", end, cancelled, provider, None, False)

    assert premium_sku(None, view(Tier.FREE, None)) is None
    assert premium_sku(SKU) == SKU
    assert premium_sku(SKU, view(Tier.FREE, None)) == SKU
    assert premium_sku(SKU, view(Tier.PRO, "yookassa")) == SKU
    assert premium_sku(SKU, view(Tier.PRO, "discord")) is None
    assert premium_sku(SKU, view(Tier.PRO, "discord", cancelled=True)) == SKU
    assert premium_sku(SKU, view(Tier.ENTERPRISE, "grant")) is None
