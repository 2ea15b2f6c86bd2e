"""Discord premium apps: the pro plan from an entitlement to `DISCORD_SKU_PRO`.

No discord import here: the Discord adapter turns `on_entitlement_create/update/
delete` into `EntitlementEvent`s for `handle`, and at start-up (and then every
`RECONCILE_EVERY`) lists the application's entitlements for `reconcile`.

Each entitlement is one ledger row, keyed ("discord", "entitlement:<id>") and written
with the first sighting. The row holds the latest state of the entitlement that was
applied (its end, whether it was deleted) and the subscription it paid for, and is
locked while an event is applied, so an event delivered twice, or twice at once,
changes the plan once. States only move forward: open (no end) < an end < a later
end < deleted. An event older than the recorded state changes nothing, so a late
create never reopens an entitlement that ended and an older update never shortens
a later one.

What a state does to the plan, through the subscription service (history, quotas
and the person's message in the outbox, in the same transaction):

- live with an end in the future: pro until that end (a new plan, or the same plan
  extended: a renewal keeps the counters);
- live without an end (a test entitlement, and a Discord subscription that is still
  running, which Discord sends without `ends_at`): pro for `OPEN_PERIOD`, extended
  again by any later sighting (an event, a reconcile) once less than
  `REFRESH_BEFORE` is left; a plan whose entitlement Discord stops reporting
  therefore lapses by itself;
- an end earlier than the plan's (an open entitlement that got its end): the plan
  stays until then and does not renew; an end already past ends it now (expiry);
- deleted (a refund, or Discord removing it): the plan ends at once (refund).

Ending and shortening touch the plan only while the entitlement paid for the
current period: the subscription is the one it activated or extended, and no other
payment has extended it since (then the entitlement's period is an older one, and
the plan keeps the time the other payment bought). A bigger live plan is never
taken away: the entitlement then changes nothing until a later sighting finds the
bigger plan gone.
"""

from __future__ import annotations

import logging
from collections.abc import Callable, Sequence
from dataclasses import dataclass
from datetime import UTC, datetime, timedelta
from typing import Any, Literal, Protocol

from sqlalchemy import select
from sqlalchemy.ext.asyncio import AsyncSession

from core.accounts import AccountService, PlatformProfile
from core.clock import utcnow
from core.db.engine import Database
from core.db.models import Payment, Subscription, User
from core.subscriptions import PERIOD, PlanChange, PlanView, Purchase, Reason, SubscriptionService
from core.tiers import Tier
from payments.ledger import Ledger, LedgerEntry

log = logging.getLogger(__name__)

PROVIDER = "discord"
PLATFORM = "discord"
TIER = Tier.PRO
# Discord sells and settles the price; the ledger row records the right, not money.
CURRENCY = "XXX"
# Discord's entitlement type for an app subscription (renews until cancelled).
APPLICATION_SUBSCRIPTION = 8
# An entitlement without an end gives this much from its last sighting...
OPEN_PERIOD = PERIOD
# ...and a sighting extends it once less than this is left.
REFRESH_BEFORE = timedelta(days=7)
# How often the adapter should reconcile (far inside OPEN_PERIOD - REFRESH_BEFORE).
RECONCILE_EVERY = timedelta(hours=12)

Kind = Literal["create", "update", "delete"]
# applied: the plan changed; recorded: news about the entitlement, plan unchanged;
# duplicate: this state was applied before; stale: an older state than the one
# applied; ignored: not ours (another SKU, no SKU configured, a guild entitlement).
Outcome = Literal["applied", "recorded", "duplicate", "stale", "ignored"]


@dataclass(frozen=True)
class EntitlementEvent:
    """What the adapter passes on from a `discord.Entitlement`."""

    id: str
    sku_id: int
    discord_user_id: str
    starts_at: datetime | None
    ends_at: datetime | None  # None: no end (test entitlements, running subscriptions)
    deleted: bool
    kind: Kind
    entitlement_type: int | None = None  # discord.EntitlementType value

    @classmethod
    def of(cls, entitlement: EntitlementLike, kind: Kind) -> EntitlementEvent | None:
        """From a `discord.Entitlement` (read by attribute, nothing imported); None
        for a guild entitlement, which belongs to no one person."""
        if entitlement.user_id is None:
            return None
        kind_value = getattr(entitlement.type, "value", entitlement.type)
        return cls(
            id=str(entitlement.id),
            sku_id=int(entitlement.sku_id),
            discord_user_id=str(entitlement.user_id),
            starts_at=entitlement.starts_at,
            ends_at=entitlement.ends_at,
            deleted=bool(entitlement.deleted) or kind == "delete",
            kind=kind,
            entitlement_type=int(kind_value) if isinstance(kind_value, int) else None,
        )


class EntitlementLike(Protocol):
    @property
    def id(self) -> int: ...
    @property
    def sku_id(self) -> int: ...
    @property
    def user_id(self) -> int | None: ...
    @property
    def type(self) -> Any: ...
    @property
    def starts_at(self) -> datetime | None: ...
    @property
    def ends_at(self) -> datetime | None: ...
    @property
    def deleted(self) -> bool: ...


@dataclass(frozen=True)
class EntitlementResult:
    outcome: Outcome
    change: PlanChange | None = None


def premium_sku(sku_pro: int | None, view: PlanView | None = None) -> int | None:
    """The SKU for Discord's premium button under /plan, or None: no SKU configured,
    the plan already comes from Discord and renews there, or a bigger plan is live
    (pro would give nothing)."""
    if sku_pro is None:
        return None
    if view is not None and view.period_end is not None:
        if view.tier.rank > TIER.rank:
            return None
        if view.tier is TIER and view.provider == PROVIDER and not view.cancel_at_period_end:
            return None
    return sku_pro


def ledger_key(entitlement_id: str) -> str:
    return f"entitlement:{entitlement_id}"


def _utc(moment: datetime | None) -> datetime | None:
    if moment is None:
        return None
    return moment.replace(tzinfo=UTC) if moment.tzinfo is None else moment.astimezone(UTC)


def _parse(value: Any) -> datetime | None:
    return datetime.fromisoformat(value) if isinstance(value, str) and value else None


def _iso(moment: datetime | None) -> str | None:
    return moment.isoformat() if moment is not None else None


_BEGINNING = datetime.min.replace(tzinfo=UTC)


@dataclass(frozen=True)
class _State:
    """An entitlement's state, ordered as it can only move: open, an end, a later
    end, deleted."""

    ends_at: datetime | None
    deleted: bool

    def _rank(self) -> tuple[bool, bool, datetime]:
        return (self.deleted, self.ends_at is not None, self.ends_at or _BEGINNING)

    def later(self, other: _State) -> _State:
        return other if other._rank() > self._rank() else self

    @classmethod
    def of(cls, event: EntitlementEvent) -> _State:
        return cls(_utc(event.ends_at), event.deleted or event.kind == "delete")

    @classmethod
    def recorded(cls, payload: dict[str, Any]) -> _State:
        return cls(_parse(payload.get("ends_at")), bool(payload.get("deleted")))


class DiscordEntitlements:
    def __init__(
        self,
        db: Database,
        accounts: AccountService,
        subscriptions: SubscriptionService,
        ledger: Ledger,
        sku_pro: int | None,
        *,
        now: Callable[[], datetime] = utcnow,
    ) -> None:
        self.db = db
        self.accounts = accounts
        self.subscriptions = subscriptions
        self.ledger = ledger
        self.sku_pro = sku_pro
        self._now = now

    def ours(self, event: EntitlementEvent) -> bool:
        return (
            self.sku_pro is not None
            and event.sku_id == self.sku_pro
            and bool(event.discord_user_id)
            and bool(event.id)
        )

    async def handle(self, event: EntitlementEvent) -> EntitlementResult:
        """One ENTITLEMENT_CREATE / UPDATE / DELETE (or one listed entitlement)."""
        if not self.ours(event):
            log.info("discord entitlement %s for SKU %s: not ours", event.id, event.sku_id)
            return EntitlementResult("ignored")
        user_id = await self._person(event.discord_user_id)
        async with self.db.write() as session:
            result = await self._apply(session, event, user_id)
        if result.change is not None:
            self.ledger.outbox.wake()
        return result

    async def reconcile(
        self, entitlements: Sequence[EntitlementEvent], *, listed_at: datetime | None = None
    ) -> list[EntitlementResult]:
        """Bring the plans in line with the application's entitlements, listed in
        full (`GET /applications/{id}/entitlements` with deleted ones left out:
        discord.py's `Client.entitlements(limit=None)`, whose default limit is 100):
        each listed one is applied like an event (its `kind` only matters if it is
        "delete"), and a live one we granted that is no longer listed was deleted.
        `listed_at` is when the listing began: entitlements first seen after it are
        not judged by their absence. Each in its own transaction."""
        listed_at = _utc(listed_at) or self._now()
        results = [await self.handle(event) for event in entitlements]
        if self.sku_pro is None:
            return results
        listed = {event.id for event in entitlements if event.sku_id == self.sku_pro}
        for gone in await self._unlisted(self.sku_pro, listed, listed_at):
            results.append(await self.handle(gone))
        return results

    # -- internals ----------------------------------------------------------------------

    async def _person(self, discord_user_id: str) -> int:
        """Our user for the Discord account, created if the first we hear of them is
        their purchase. Not a sighting of the person: last-seen stays as it was."""
        user = await self.accounts.by_identity(PLATFORM, discord_user_id)
        if user is None:
            user = await self.accounts.upsert(PlatformProfile(PLATFORM, discord_user_id))
        return user.id

    async def _unlisted(
        self, sku: int, listed: set[str], listed_at: datetime
    ) -> list[EntitlementEvent]:
        """Live entitlements of our SKU, paying for a current plan, that the listing
        left out: deletions we did not hear of."""
        now = self._now()
        async with self.db.read() as session:
            rows = (
                await session.scalars(
                    select(Payment)
                    .join(Subscription, Subscription.id == Payment.subscription_id)
                    .where(
                        Payment.provider == PROVIDER,
                        Payment.kind == "payment",
                        Subscription.is_current,
                    )
                )
            ).all()
        gone = []
        for row in rows:
            payload = row.payload or {}
            state = _State.recorded(payload)
            first_seen = _parse(payload.get("first_seen"))
            if (
                payload.get("sku_id") != sku
                or str(payload.get("entitlement_id")) in listed
                or state.deleted
                or (state.ends_at is not None and state.ends_at <= now)
                or first_seen is None
                or first_seen >= listed_at
            ):
                continue
            log.warning(
                "discord entitlement %s is no longer listed: taken as deleted",
                payload.get("entitlement_id"),
            )
            gone.append(
                EntitlementEvent(
                    id=str(payload["entitlement_id"]),
                    sku_id=sku,
                    discord_user_id=str(payload.get("discord_user_id") or ""),
                    starts_at=None,
                    ends_at=None,
                    deleted=True,
                    kind="delete",
                )
            )
        return gone

    async def _row(self, session: AsyncSession, key: str) -> Payment:
        row = await session.scalar(
            select(Payment)
            .where(Payment.provider == PROVIDER, Payment.provider_charge_id == key)
            .with_for_update()
            .execution_options(populate_existing=True)
        )
        assert row is not None  # inserted or found by the caller's insert
        return row

    async def _apply(
        self, session: AsyncSession, event: EntitlementEvent, user_id: int
    ) -> EntitlementResult:
        now = self._now()
        incoming = _State.of(event)
        key = ledger_key(event.id)
        # The first sighting writes the row; a twin waits on it and finds it taken.
        # Either way the row is locked by this transaction from here on.
        settled = await self.ledger.settle_in(
            session,
            LedgerEntry(
                provider=PROVIDER,
                charge_id=key,
                kind="payment",
                user_id=user_id,
                amount_minor=0,
                currency=CURRENCY,
                tier=TIER,
                platform=PLATFORM,
                payload={
                    "entitlement_id": event.id,
                    "sku_id": event.sku_id,
                    "discord_user_id": event.discord_user_id,
                    "type": event.entitlement_type,
                    "starts_at": _iso(_utc(event.starts_at)),
                    "first_seen": now.isoformat(),
                },
            ),
        )
        row = await self._row(session, key)
        payload = dict(row.payload or {})
        recorded = None if not settled.duplicate else _State.recorded(payload)
        state = incoming if recorded is None else recorded.later(incoming)
        # The plan belongs to whoever the entitlement was first granted to.
        user_id = row.user_id if row.user_id is not None else user_id
        await self._lock_user(session, user_id)
        news = recorded != state
        change = await self._enforce(session, event, state, news, row, payload, user_id, now)
        if news or change is not None:
            payload.update(ends_at=_iso(state.ends_at), deleted=state.deleted)
            if event.entitlement_type is not None:
                payload["type"] = event.entitlement_type
            row.payload = payload
            row.status = _status(state, now)
        if change is not None:
            outcome: Outcome = "applied"
        elif news:
            outcome = "recorded"
        elif incoming == recorded:
            outcome = "duplicate"
        else:
            outcome = "stale"
        log.info("discord entitlement %s (%s, user %d): %s", event.id, event.kind, user_id, outcome)
        return EntitlementResult(outcome, change)

    async def _lock_user(self, session: AsyncSession, user_id: int) -> None:
        """The person's row lock (PostgreSQL; SQLite has one writer) before reading
        their plan, so what is decided here holds until commit."""
        await session.execute(select(User.id).where(User.id == user_id).with_for_update())

    async def _enforce(
        self,
        session: AsyncSession,
        event: EntitlementEvent,
        state: _State,
        news: bool,
        row: Payment,
        payload: dict[str, Any],
        user_id: int,
        now: datetime,
    ) -> PlanChange | None:
        """Make the plan what `state` says; nothing if it is so already."""
        subs = self.subscriptions
        current = await subs.current(session, user_id)
        paid_for = row.subscription_id
        bought_until = _parse(payload.get("bought_until"))
        # The entitlement paid for the current period: its subscription, not
        # extended by anything else since.
        bought = (
            current is not None
            and paid_for is not None
            and current.id == paid_for
            and bought_until is not None
            and current.current_period_end <= bought_until
        )
        if state.deleted or (state.ends_at is not None and state.ends_at <= now):
            if not bought or paid_for is None:
                return None
            reason = Reason.REFUND if state.deleted else Reason.EXPIRY
            return await subs.end(
                session,
                user_id,
                reason,
                subscription_id=paid_for,
                due_before=bought_until,
                platform=PLATFORM,
            )
        end = state.ends_at
        if end is not None and bought and current is not None and current.current_period_end > end:
            assert paid_for is not None
            change = await subs.shorten(
                session,
                user_id,
                end,
                subscription_id=paid_for,
                due_before=bought_until,
                platform=PLATFORM,
            )
            if change is not None:
                payload["bought_until"] = _iso(change.period_end)
            return change
        # Live: pro until the end, or for OPEN_PERIOD when there is none (renewed by
        # a later sighting once less than REFRESH_BEFORE is left).
        enough = end or now + (OPEN_PERIOD if news else REFRESH_BEFORE)
        if current is not None and (
            Tier(current.tier).rank > TIER.rank
            or (current.tier == TIER.value and current.current_period_end >= enough)
        ):
            return None
        recurring = (
            payload.get("type") == APPLICATION_SUBSCRIPTION
            or event.entitlement_type == APPLICATION_SUBSCRIPTION
        )
        change = await subs.activate(
            session,
            user_id,
            Purchase(
                tier=TIER,
                provider=PROVIDER,
                provider_subscription_id=str(payload.get("entitlement_id") or event.id),
                period_end=end or now + OPEN_PERIOD,
                recurring=recurring,
                meta={"platform": PLATFORM, "sku_id": event.sku_id},
                platform=PLATFORM,
            ),
        )
        if change is not None and change.subscription_id is not None:
            row.subscription_id = change.subscription_id
            payload["bought_until"] = _iso(change.period_end)
        return change


def _status(state: _State, now: datetime) -> str:
    if state.deleted:
        return "refunded"
    if state.ends_at is not None and state.ends_at <= now:
        return "ended"
    return "succeeded"
