"""One account across platforms: `/link` on one platform shows a one-time code,
entering it on another joins both identities into one user.

Codes are 8 characters from an alphabet without look-alikes, shown as `ABCD-EFGH`
(lowercase, spaces and dashes are accepted back). Only their sha256 is stored; a
code lives `CODE_TTL`, works once, and a new one replaces the user's earlier code.
`MAX_FAILURES` wrong codes entered by one person (within `LOCK_PERIOD` of the first)
lock them out of redeeming for `LOCK_PERIOD`; the count lives in the database.

Joining ("merging") is one write transaction that locks both users in id order
and leaves one user:

- The survivor is the code's owner; the redeemer's user is absorbed and deleted.
- Every row that points at the absorbed user moves to the survivor: identities,
  conversations, chat messages (their conversation and `is_latest` do not change,
  so the active-path index is untouched), subscriptions and their history,
  payment orders, payments, outbox messages and audit rows. Tables are found from
  the foreign keys to `users`, so a table added later moves too.
- Plan: of the two current subscriptions, the higher tier wins, then the later
  period end (then the survivor's). The other one stops being current (status
  `replaced`) with a `subscription_history` row (reason `link`); `users.tier` is
  set from the winner in the same transaction. A recurring subscription that loses
  is not cancelled at its provider (core talks to no provider): the result says so.
- Quotas, per key: the survivor gets the winning plan's limits; the used counts of
  both users' current windows add up, capped at the limit; the window kept is the
  one that ends later (for the rolling 3-hour quota the windows can differ: the
  stricter one wins). A window already over counts nothing, as it would reset on
  the next use anyway.
- Preferences: the survivor's values stay; empty ones (language, default model,
  system prompt, display name, current conversation, keys of `preferences`) are
  filled from the absorbed user.
- Codes and wrong-code counts of both users are dropped.
- An `audit_log` row (`link`) records who redeemed what, and both users before and
  the one user after. The code's owner is told on their platform (the outbox).

An answer streaming for either user blocks linking (`LinkBusy`, "let it finish or
press Stop"): its generation holds the absorbed user's id for giving back a quota
unit and for its final save. Answers whose worker is gone are ended on the spot,
as for a new message. Banned users cannot link.

`unlink` splits one platform's identity off into a new free user with nothing
(conversations, plan and quotas stay); the last identity cannot be unlinked.
"""

from __future__ import annotations

import hashlib
import logging
import secrets
from collections.abc import Callable, Sequence
from dataclasses import dataclass
from datetime import datetime, timedelta
from typing import Any

from sqlalchemy import Column, delete, func, select, update
from sqlalchemy.exc import IntegrityError
from sqlalchemy.ext.asyncio import AsyncSession

from core.clock import utcnow
from core.conversations.errors import ConversationBusy, UserBanned
from core.conversations.store import streaming_answers
from core.db.engine import Database
from core.db.models import (
    AuditLog,
    Base,
    ChatMessage,
    Conversation,
    Identity,
    LinkAttempt,
    LinkCodeRecord,
    Subscription,
    SubscriptionHistory,
    UsageQuota,
    User,
)
from core.db.models.base import table_of
from core.db.upsert import insert_or_update
from core.errors import OneAIError
from core.i18n import t
from core.liveness import Liveness
from core.outbox import Outbox
from core.quotas import QuotaService
from core.subscriptions import Status
from core.tiers import Tier

log = logging.getLogger(__name__)

CODE_TTL = timedelta(minutes=10)
MAX_FAILURES = 5
LOCK_PERIOD = timedelta(hours=1)
# No I, L, O, 0 or 1: nothing that reads as something else.
ALPHABET = "ABCDEFGHJKMNPQRSTUVWXYZ23456789"
CODE_LENGTH = 8
LINK_REASON = "link"
NOTICE_LINKED = "account.linked"
NOTICE_UNLINKED = "account.unlinked"

_PLATFORM_NAMES = {"telegram": "Telegram", "discord": "Discord", "cli": "Terminal"}
# Rows of these tables are merged or dropped by hand, not moved.
_NOT_MOVED = {"users", "usage_quotas", "link_codes", "link_attempts"}


def platform_name(platform: str) -> str:
    return _PLATFORM_NAMES.get(platform, platform.capitalize())


# -- errors -------------------------------------------------------------------------


class LinkError(OneAIError):
    """A refused link or unlink; `user_message` is the English text of `error.<code>`."""

    code = "link_error"

    def __init__(self, **details: object) -> None:
        super().__init__(t("en", f"error.{self.code}", **details), **details)


class LinkCodeMalformed(LinkError):
    code = "link_code_malformed"


class LinkCodeInvalid(LinkError):
    """Wrong, used or expired: one of the person's tries is spent."""

    code = "link_code_invalid"

    def __init__(self, tries_left: int) -> None:
        super().__init__(tries_left=tries_left)
        self.tries_left = tries_left


class LinkLocked(LinkError):
    code = "link_locked"

    def __init__(self, until: datetime) -> None:
        super().__init__(until=until.strftime("%Y-%m-%d %H:%M UTC"))
        self.until = until


class LinkOwnCode(LinkError):
    code = "link_own_code"


class LinkSamePlatform(LinkError):
    code = "link_same_platform"

    def __init__(self, platform: str) -> None:
        super().__init__(platform=platform_name(platform))
        self.platform = platform


class AlreadyLinked(LinkError):
    code = "link_already_linked"


class LinkConflict(LinkError):
    """One of the users changed under us (merged or deleted meanwhile)."""

    code = "link_conflict"


class NotLinked(LinkError):
    code = "link_not_linked"

    def __init__(self, platform: str) -> None:
        super().__init__(platform=platform_name(platform))
        self.platform = platform


class LastIdentity(LinkError):
    code = "link_last_identity"


class LinkBusy(ConversationBusy):
    """An answer streams for one of the two users. A ConversationBusy, so answers
    of gone workers are ended and the link tried again (Liveness.unblocked)."""

    code = "link_busy"
    user_message = t("en", "error.link_busy")


# -- results ------------------------------------------------------------------------


@dataclass(frozen=True)
class LinkCode:
    code: str  # as shown: ABCD-EFGH
    expires_at: datetime


@dataclass(frozen=True)
class LinkedIdentity:
    platform: str
    platform_user_id: str
    username: str | None
    linked_at: datetime


@dataclass(frozen=True)
class LinkResult:
    user_id: int  # the one user now (the code's owner)
    absorbed_user_id: int  # deleted
    platforms: tuple[str, ...]
    tier: Tier
    period_end: datetime | None
    conversations: int  # of the joined user, after the link
    # The subscription that stopped being current because the other one won.
    ended_subscription_id: int | None = None
    ended_tier: Tier | None = None
    # ... and it renews at a provider: the person may want to cancel it there.
    ended_recurring: bool = False


@dataclass(frozen=True)
class UnlinkResult:
    user_id: int  # keeps everything
    new_user_id: int  # the split-off identity's new, empty, free user
    platform: str


# -- codes --------------------------------------------------------------------------


def new_code() -> str:
    raw = "".join(secrets.choice(ALPHABET) for _ in range(CODE_LENGTH))
    return f"{raw[:4]}-{raw[4:]}"


def normalize_code(text: str) -> str:
    """`abcd efgh`, `ABCD-EFGH`, ` abcdefgh ` -> `ABCDEFGH`; LinkCodeMalformed if it
    cannot be a code."""
    raw = "".join(ch for ch in text.upper() if ch not in " -\t\n")
    if len(raw) != CODE_LENGTH or any(ch not in ALPHABET for ch in raw):
        raise LinkCodeMalformed()
    return raw


def hash_code(text: str) -> str:
    return hashlib.sha256(normalize_code(text).encode()).hexdigest()


# -- the service ----------------------------------------------------------------------


class LinkService:
    def __init__(
        self,
        db: Database,
        now: Callable[[], datetime] = utcnow,
        *,
        quotas: QuotaService | None = None,
        outbox: Outbox | None = None,
    ) -> None:
        self.db = db
        self._now = now
        self.quotas = quotas or QuotaService(db, now)
        # The process's outbox, so a notice written here is sent at once.
        self.outbox = outbox or Outbox(db, now)
        # Set by Services: ends answers of gone workers that would block a link.
        self.liveness: Liveness | None = None

    # -- codes ------------------------------------------------------------------------

    async def issue_code(self, user_id: int, platform: str) -> LinkCode:
        """A fresh code for `user_id`, shown on `platform`; replaces their earlier one."""
        for _ in range(3):
            code = new_code()
            now = self._now()
            expires_at = now + CODE_TTL
            try:
                async with self.db.write() as session:
                    if await session.get(User, user_id) is None:
                        raise LookupError(f"no user {user_id}")
                    # Expired codes of anyone go: the table holds only live ones.
                    await session.execute(
                        delete(LinkCodeRecord).where(LinkCodeRecord.expires_at <= now)
                    )
                    await insert_or_update(
                        session,
                        table_of(LinkCodeRecord),
                        [
                            {
                                "user_id": user_id,
                                "platform": platform,
                                "code_hash": hash_code(code),
                                "created_at": now,
                                "expires_at": expires_at,
                            }
                        ],
                        ["user_id"],
                        ["platform", "code_hash", "created_at", "expires_at"],
                    )
            except IntegrityError:
                continue  # another user holds this very code: draw again
            return LinkCode(code, expires_at)
        raise RuntimeError("could not draw a free link code")

    # -- linking ------------------------------------------------------------------------

    async def redeem(self, user_id: int, platform: str, code: str) -> LinkResult:
        """`user_id`, writing on `platform`, enters another user's code: both become
        the code owner's user. Raises a LinkError (or LinkBusy, UserBanned)."""
        digest = hash_code(code)

        async def attempt() -> LinkResult:
            async with self.db.write() as session:
                outcome = await self._redeem(session, user_id, platform, digest)
            # A wrong code's count is committed before it is reported.
            if isinstance(outcome, OneAIError):
                raise outcome
            return outcome

        result = await (self.liveness.unblocked(attempt) if self.liveness else attempt())
        self.outbox.wake()
        return result

    async def _redeem(
        self, session: AsyncSession, user_id: int, platform: str, digest: str
    ) -> LinkResult | OneAIError:
        now = self._now()
        found = await session.scalar(
            select(LinkCodeRecord.user_id).where(LinkCodeRecord.code_hash == digest)
        )
        # Users in id order (the same order every link takes: no deadlock); the
        # code's owner is locked too, so two redeems of one code queue up here.
        users = await self._lock_users(session, {user_id} | ({found} if found else set()))
        redeemer = users.get(user_id)
        if redeemer is None:
            raise LinkConflict()
        attempts = await session.get(LinkAttempt, user_id, populate_existing=True)
        if attempts is not None and attempts.locked_until and attempts.locked_until > now:
            return LinkLocked(attempts.locked_until)
        # Read again under the locks: a redeem that got here first has used it.
        record = await session.scalar(
            select(LinkCodeRecord)
            .where(LinkCodeRecord.code_hash == digest)
            .execution_options(populate_existing=True)
        )
        if found is not None and found not in users:
            return LinkConflict()  # the owner was joined into someone else meanwhile
        if record is None or record.expires_at <= now or record.user_id not in users:
            return await self._wrong_code(session, user_id, attempts, now)
        owner = users[record.user_id]
        if owner.id == redeemer.id:
            return LinkOwnCode() if record.platform == platform else AlreadyLinked()
        if owner.is_banned or redeemer.is_banned:
            return UserBanned()
        identities = await self._identities(session, [owner.id, redeemer.id])
        owner_platforms = {i.platform for i in identities if i.user_id == owner.id}
        clash = sorted(
            i.platform
            for i in identities
            if i.user_id == redeemer.id and i.platform in owner_platforms
        )
        if clash:
            return LinkSamePlatform(clash[0])
        blocking = await streaming_answers(
            session, ChatMessage.user_id.in_([owner.id, redeemer.id])
        )
        if blocking:
            raise LinkBusy(blocking)
        return await self._merge(session, owner, redeemer, record, platform, identities)

    async def _wrong_code(
        self, session: AsyncSession, user_id: int, attempts: LinkAttempt | None, now: datetime
    ) -> OneAIError:
        if attempts is None:
            attempts = LinkAttempt(user_id=user_id, failures=0)
            session.add(attempts)
        if attempts.first_failed_at is None or now - attempts.first_failed_at >= LOCK_PERIOD:
            attempts.failures = 0
            attempts.first_failed_at = now
        attempts.failures += 1
        if attempts.failures >= MAX_FAILURES:
            attempts.failures = 0
            attempts.first_failed_at = None
            attempts.locked_until = now + LOCK_PERIOD
            log.info("user %d: linking locked after %d wrong codes", user_id, MAX_FAILURES)
            return LinkLocked(attempts.locked_until)
        attempts.locked_until = None
        return LinkCodeInvalid(MAX_FAILURES - attempts.failures)

    async def _merge(
        self,
        session: AsyncSession,
        survivor: User,
        absorbed: User,
        record: LinkCodeRecord,
        platform: str,
        identities: Sequence[Identity],
    ) -> LinkResult:
        now = self._now()
        before = {
            "survivor": await self._snapshot(session, survivor, identities),
            "absorbed": await self._snapshot(session, absorbed, identities),
        }
        winner, ended = await self._merge_plans(session, survivor, absorbed, now)
        await self._merge_quotas(session, survivor.id, absorbed.id, Tier(survivor.tier), now)
        self._merge_preferences(survivor, absorbed)
        await session.flush()
        await self._move_rows(session, absorbed.id, survivor.id)
        await session.execute(
            delete(LinkCodeRecord).where(LinkCodeRecord.user_id.in_([survivor.id, absorbed.id]))
        )
        await session.execute(
            delete(LinkAttempt).where(LinkAttempt.user_id.in_([survivor.id, absorbed.id]))
        )
        await session.execute(delete(User).where(User.id == absorbed.id))
        platforms = tuple(sorted({i.platform for i in identities}))
        conversations = int(
            await session.scalar(
                select(func.count())
                .select_from(Conversation)
                .where(Conversation.user_id == survivor.id)
            )
            or 0
        )
        after = {
            "user_id": survivor.id,
            "tier": survivor.tier,
            "platforms": list(platforms),
            "subscription": winner.id if winner else None,
            "conversations": conversations,
        }
        session.add(
            AuditLog(
                actor_user_id=survivor.id,
                action="link",
                target_user_id=survivor.id,
                details={
                    "redeemed_by": absorbed.id,
                    "redeemed_on": platform,
                    "code_from": record.platform,
                    "absorbed_user_id": absorbed.id,
                    "ended_subscription": ended.id if ended else None,
                    "before": before,
                    "after": after,
                },
                created_at=now,
            )
        )
        self.outbox.add(
            session,
            survivor.id,
            NOTICE_LINKED,
            {"tier": survivor.tier, "platforms": list(platforms)},
            platform=record.platform,
        )
        log.info(
            "user %d absorbed user %d (%s); plan %s",
            survivor.id,
            absorbed.id,
            ", ".join(platforms),
            survivor.tier,
        )
        return LinkResult(
            user_id=survivor.id,
            absorbed_user_id=absorbed.id,
            platforms=platforms,
            tier=Tier(survivor.tier),
            period_end=winner.current_period_end if winner else None,
            conversations=conversations,
            ended_subscription_id=ended.id if ended else None,
            ended_tier=Tier(ended.tier) if ended else None,
            ended_recurring=bool(ended and ended.meta.get("recurring")),
        )

    async def _merge_plans(
        self, session: AsyncSession, survivor: User, absorbed: User, now: datetime
    ) -> tuple[Subscription | None, Subscription | None]:
        """The winning subscription stays current, the other ends: (winner, ended)."""
        mine = await self._current(session, survivor.id)
        theirs = await self._current(session, absorbed.id)
        candidates = [s for s in (mine, theirs) if s is not None]
        old_tier = survivor.tier
        if not candidates:
            survivor.tier, survivor.tier_status = Tier.FREE.value, Status.ACTIVE
            return None, None
        # max() keeps the first of equals: the survivor's on a full tie.
        winner = max(candidates, key=lambda s: (Tier(s.tier).rank, s.current_period_end))
        loser = next((s for s in candidates if s is not winner), None)
        if loser is not None:
            loser.is_current = False
            loser.status = Status.REPLACED
            # The one-current-per-user index cannot be deferred: clear before moving.
            await session.flush()
            session.add(
                SubscriptionHistory(
                    user_id=survivor.id,
                    subscription_id=loser.id,
                    old_tier=loser.tier,
                    new_tier=winner.tier,
                    change_reason=LINK_REASON,
                    changed_at=now,
                    meta={
                        "provider": loser.payment_provider,
                        "status": loser.status,
                        "from_user": loser.user_id,
                        "recurring": bool(loser.meta.get("recurring")),
                    },
                )
            )
        survivor.tier, survivor.tier_status = winner.tier, winner.status
        if old_tier != winner.tier or winner is theirs:
            session.add(
                SubscriptionHistory(
                    user_id=survivor.id,
                    subscription_id=winner.id,
                    old_tier=old_tier,
                    new_tier=winner.tier,
                    change_reason=LINK_REASON,
                    changed_at=now,
                    meta={
                        "provider": winner.payment_provider,
                        "status": winner.status,
                        "from_user": winner.user_id,
                    },
                )
            )
        return winner, loser

    async def _merge_quotas(
        self, session: AsyncSession, survivor_id: int, absorbed_id: int, tier: Tier, now: datetime
    ) -> None:
        """One quota per key: the current windows' used counts add up (capped at the
        limit), in the window that ends later."""
        await self.quotas.assign_tier(session, survivor_id, tier, reset=False)
        rows = (
            await session.scalars(
                select(UsageQuota)
                .where(UsageQuota.user_id.in_([survivor_id, absorbed_id]))
                .execution_options(populate_existing=True)
            )
        ).all()
        kept = {r.quota_key: r for r in rows if r.user_id == survivor_id}
        for other in (r for r in rows if r.user_id == absorbed_id):
            row = kept.get(other.quota_key)
            if row is None:  # a key the plan does not know: keep it as it is
                other.user_id = survivor_id
                continue
            live = [r for r in (row, other) if r.next_reset_at > now]
            if live:
                window = max(live, key=lambda r: r.next_reset_at)
                row.used_count = min(sum(r.used_count for r in live), row.quota_limit)
                row.last_reset_at = window.last_reset_at
                row.next_reset_at = window.next_reset_at
                usages = [r.last_usage_at for r in (row, other) if r.last_usage_at is not None]
                row.last_usage_at = max(usages) if usages else None
                row.updated_at = now
            await session.delete(other)
        await session.flush()

    @staticmethod
    def _merge_preferences(survivor: User, absorbed: User) -> None:
        for name in (
            "display_name",
            "language",
            "default_model",
            "system_prompt",
            "current_conversation_id",
        ):
            if getattr(survivor, name) is None and getattr(absorbed, name) is not None:
                setattr(survivor, name, getattr(absorbed, name))
        survivor.preferences = {**(absorbed.preferences or {}), **(survivor.preferences or {})}
        seen = [s for s in (survivor.last_seen_at, absorbed.last_seen_at) if s is not None]
        survivor.last_seen_at = max(seen) if seen else None

    @staticmethod
    async def _move_rows(session: AsyncSession, source: int, target: int) -> None:
        """Point every foreign key to `users` from `source` to `target`."""
        for table in Base.metadata.sorted_tables:
            if table.name in _NOT_MOVED:
                continue
            for key in table.foreign_keys:
                if key.column.table.name != "users":
                    continue
                column: Column[Any] = key.parent
                await session.execute(
                    update(table)
                    .where(column == source)
                    .values({column.name: target})
                    .execution_options(synchronize_session=False)
                )

    # -- reading ----------------------------------------------------------------------

    async def linked(self, user_id: int) -> list[LinkedIdentity]:
        """The platform accounts of this user, oldest first."""
        async with self.db.read() as session:
            rows = await self._identities(session, [user_id])
        return [
            LinkedIdentity(i.platform, i.platform_user_id, i.username, i.created_at) for i in rows
        ]

    # -- unlinking ----------------------------------------------------------------------

    async def unlink(self, user_id: int, platform: str) -> UnlinkResult:
        """`platform`'s identity leaves `user_id` for a new free user with nothing;
        everything else stays. The last identity cannot go."""
        async with self.db.write() as session:
            users = await self._lock_users(session, {user_id})
            user = users.get(user_id)
            if user is None:
                raise LinkConflict()
            identities = await self._identities(session, [user_id])
            target = next((i for i in identities if i.platform == platform), None)
            if target is None:
                raise NotLinked(platform)
            if len(identities) == 1:
                raise LastIdentity()
            now = self._now()
            split = User(
                language=user.language,
                tier=Tier.FREE.value,
                tier_status=Status.ACTIVE,
                preferences={},
                last_seen_at=target.last_seen_at,
                created_at=now,
                updated_at=now,
            )
            session.add(split)
            await session.flush()
            target.user_id = split.id
            session.add(
                AuditLog(
                    actor_user_id=user_id,
                    action="unlink",
                    target_user_id=split.id,
                    details={
                        "platform": platform,
                        "platform_user_id": target.platform_user_id,
                        "before": {
                            "user_id": user_id,
                            "platforms": sorted(i.platform for i in identities),
                        },
                        "after": {
                            "user_id": user_id,
                            "platforms": sorted(
                                i.platform for i in identities if i.platform != platform
                            ),
                            "new_user_id": split.id,
                        },
                    },
                    created_at=now,
                )
            )
            self.outbox.add(
                session, split.id, NOTICE_UNLINKED, {"tier": Tier.FREE.value}, platform=platform
            )
        self.outbox.wake()
        log.info("user %d: %s split off as user %d", user_id, platform, split.id)
        return UnlinkResult(user_id, split.id, platform)

    # -- helpers ------------------------------------------------------------------------

    @staticmethod
    async def _lock_users(session: AsyncSession, ids: set[int]) -> dict[int, User]:
        """Row locks on PostgreSQL, always in id order; SQLite has one writer."""
        users = {}
        for user_id in sorted(ids):
            user = await session.scalar(
                select(User)
                .where(User.id == user_id)
                .with_for_update()
                .execution_options(populate_existing=True)
            )
            if user is not None:
                users[user_id] = user
        return users

    @staticmethod
    async def _identities(session: AsyncSession, user_ids: Sequence[int]) -> list[Identity]:
        return list(
            (
                await session.scalars(
                    select(Identity)
                    .where(Identity.user_id.in_(user_ids))
                    .order_by(Identity.created_at, Identity.id)
                    .execution_options(populate_existing=True)
                )
            ).all()
        )

    @staticmethod
    async def _current(session: AsyncSession, user_id: int) -> Subscription | None:
        return await session.scalar(
            select(Subscription)
            .where(Subscription.user_id == user_id, Subscription.is_current)
            .execution_options(populate_existing=True)
        )

    async def _snapshot(
        self, session: AsyncSession, user: User, identities: Sequence[Identity]
    ) -> dict[str, Any]:
        sub = await self._current(session, user.id)
        conversations = await session.scalar(
            select(func.count()).select_from(Conversation).where(Conversation.user_id == user.id)
        )
        return {
            "user_id": user.id,
            "tier": user.tier,
            "platforms": sorted(i.platform for i in identities if i.user_id == user.id),
            "subscription": sub.id if sub else None,
            "period_end": sub.current_period_end.isoformat() if sub else None,
            "conversations": int(conversations or 0),
        }
