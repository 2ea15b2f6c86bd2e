"""Broadcast state in the database: drafts, the recipients chosen when a broadcast
starts, per-recipient claims and outcomes, and which process sends it.

Every statement here is one short transaction; none is held across a platform
call.
"""

from __future__ import annotations

from collections.abc import Callable, Collection, Iterable
from dataclasses import dataclass, field
from datetime import datetime, timedelta
from typing import Any

from sqlalchemy import (
    Select,
    and_,
    exists,
    false,
    func,
    insert,
    literal,
    or_,
    select,
    update,
)
from sqlalchemy.orm import aliased

from core.admin.access import Actor
from core.admin.audit import write_audit
from core.broadcast.model import (
    Audience,
    AudienceCount,
    AudienceKind,
    BroadcastError,
    BroadcastInfo,
    Photo,
    Progress,
    ProgressRef,
    RecipientState,
    Status,
)
from core.clock import utcnow
from core.db.engine import Database
from core.db.models import Broadcast, BroadcastRecipient, Identity, User
from core.db.types import UTCDateTime
from core.tiers import Tier

R = BroadcastRecipient
B = Broadcast

ERROR_LENGTH = 500

# What the audit log calls each change of a broadcast's status by an admin.
_ACTIONS = {
    Status.CANCELLED: "broadcast_cancel",
    Status.PAUSED: "broadcast_pause",
    Status.RUNNING: "broadcast_resume",
}


@dataclass
class Claim:
    """A recipient this process holds: claimed, committed, not yet finished."""

    broadcast_id: int
    user_id: int
    platform: str
    platform_user_id: str
    chat_id: str | None
    tries: int = 0  # calls made for it by this holder
    errors: int = 0  # transient failures so far
    floods: int = 0  # 429s so far

    @property
    def address(self) -> str:
        """Where the message goes: the chat (Telegram's private chat) or the account."""
        return self.chat_id or self.platform_user_id


@dataclass(frozen=True)
class Counts:
    """Recipients by (platform, state)."""

    by_platform: dict[tuple[str, str], int] = field(default_factory=dict)

    def state(self, state: RecipientState) -> int:
        return sum(n for (_, s), n in self.by_platform.items() if s == state)

    @property
    def total(self) -> int:
        return sum(self.by_platform.values())


def _info(row: Broadcast) -> BroadcastInfo:
    audience = Audience(
        AudienceKind(row.audience),
        tier=Tier(row.audience_tier) if row.audience_tier else None,
        days=row.active_days,
    )
    photo = Photo(row.photo, row.photo_platform) if row.photo else None
    return BroadcastInfo(
        id=row.id,
        created_by=row.created_by,
        text=row.text,
        photo=photo,
        audience=audience,
        status=Status(row.status),
        created_at=row.created_at,
        started_at=row.started_at,
        finished_at=row.finished_at,
    )


def _audience_values(audience: Audience) -> dict[str, Any]:
    return {
        "audience": audience.kind.value,
        "audience_tier": audience.tier.value if audience.tier is not None else None,
        "active_days": audience.days,
    }


class BroadcastStore:
    def __init__(self, db: Database, now: Callable[[], datetime] = utcnow) -> None:
        self.db = db
        self._now = now

    # -- drafts ----------------------------------------------------------------

    async def create(
        self, created_by: int | None, text: str, photo: Photo | None, audience: Audience
    ) -> BroadcastInfo:
        async with self.db.write() as session:
            row = Broadcast(
                created_by=created_by,
                text=text,
                photo=photo.ref if photo else None,
                photo_platform=photo.platform if photo else None,
                status=Status.DRAFT.value,
                **_audience_values(audience),
            )
            session.add(row)
            await session.flush()
            return _info(row)

    async def update_draft(self, broadcast_id: int, values: dict[str, Any]) -> BroadcastInfo:
        async with self.db.write() as session:
            row = await session.get(Broadcast, broadcast_id, with_for_update=True)
            if row is None:
                raise BroadcastError("No such broadcast.")
            if row.status != Status.DRAFT:
                raise BroadcastError("Only a draft can be changed.")
            for name, value in values.items():
                setattr(row, name, value)
            row.updated_at = self._now()
            await session.flush()
            return _info(row)

    async def get(self, broadcast_id: int) -> BroadcastInfo | None:
        async with self.db.read() as session:
            row = await session.get(Broadcast, broadcast_id)
            return _info(row) if row is not None else None

    async def recent(self, limit: int, offset: int = 0) -> list[BroadcastInfo]:
        async with self.db.read() as session:
            rows = await session.scalars(
                select(Broadcast).order_by(Broadcast.id.desc()).limit(limit).offset(offset)
            )
            return [_info(row) for row in rows]

    async def with_status(self, status: Status) -> list[int]:
        async with self.db.read() as session:
            return list(
                (
                    await session.scalars(
                        select(Broadcast.id)
                        .where(Broadcast.status == status)
                        .order_by(Broadcast.id)
                    )
                ).all()
            )

    # -- the audience ----------------------------------------------------------

    def _candidates(self, audience: Audience, platforms: Collection[str]) -> Any:
        """One row per person in the audience: the account they used last among the
        ones that can be written to on `platforms` (rank 1)."""
        rank = (
            func.row_number()
            .over(
                partition_by=Identity.user_id,
                order_by=(Identity.last_seen_at.desc().nulls_last(), Identity.id.desc()),
            )
            .label("rank")
        )
        query: Select[Any] = (
            select(
                Identity.user_id,
                Identity.platform,
                Identity.platform_user_id,
                Identity.chat_id,
                rank,
            )
            .join(User, User.id == Identity.user_id)
            .where(
                User.is_banned == false(),
                Identity.is_blocked == false(),
                Identity.platform.in_(sorted(platforms)),
            )
        )
        if audience.kind is AudienceKind.TIER:
            assert audience.tier is not None
            query = query.where(User.tier == audience.tier.value)
        elif audience.kind is AudienceKind.ACTIVE:
            seen = aliased(Identity)
            since = self._now() - timedelta(days=audience.days or 0)
            query = query.where(exists().where(seen.user_id == User.id, seen.last_seen_at >= since))
        return query.subquery()

    async def count_audience(self, audience: Audience, platforms: Collection[str]) -> AudienceCount:
        if not platforms:
            return AudienceCount(0, {})
        people = self._candidates(audience, platforms)
        async with self.db.read() as session:
            rows = (
                await session.execute(
                    select(people.c.platform, func.count())
                    .where(people.c.rank == 1)
                    .group_by(people.c.platform)
                )
            ).all()
        by_platform = {str(platform): int(count) for platform, count in rows}
        return AudienceCount(sum(by_platform.values()), by_platform)

    # -- starting, ownership ---------------------------------------------------

    async def begin(
        self,
        broadcast_id: int,
        platforms: Collection[str],
        runner_id: str,
        lease: timedelta,
        report_to: ProgressRef | None,
        actor: Actor | None = None,
    ) -> bool:
        """Draft -> running, with its recipients chosen now, in one transaction; the
        caller becomes its runner. False if it is not a draft (pressed twice). The
        admin who started it (`actor`) is written to the audit log with it."""
        now = self._now()
        async with self.db.write() as session:
            row = await session.get(Broadcast, broadcast_id, with_for_update=True)
            if row is None:
                raise BroadcastError("No such broadcast.")
            if row.status != Status.DRAFT:
                return False
            audience = _info(row).audience
            people = self._candidates(audience, platforms)
            chosen = select(
                literal(broadcast_id),
                people.c.user_id,
                people.c.platform,
                people.c.platform_user_id,
                people.c.chat_id,
                literal(RecipientState.PENDING.value),
                literal(now, UTCDateTime()),
            ).where(people.c.rank == 1)
            await session.execute(
                insert(R).from_select(
                    [
                        "broadcast_id",
                        "user_id",
                        "platform",
                        "platform_user_id",
                        "chat_id",
                        "state",
                        "created_at",
                    ],
                    chosen,
                )
            )
            total = await session.scalar(
                select(func.count()).select_from(R).where(R.broadcast_id == broadcast_id)
            )
            row.status = Status.RUNNING.value
            row.total = int(total or 0)
            row.started_at = now
            row.runner_id = runner_id
            row.lease_until = now + lease
            row.report_to = report_to.to_json() if report_to else None
            row.updated_at = now
            if actor is not None:
                await write_audit(
                    session,
                    actor,
                    "broadcast_start",
                    before={"status": Status.DRAFT.value},
                    after={"status": row.status, "recipients": row.total},
                    broadcast=broadcast_id,
                    audience=audience.describe(),
                )
        return True

    async def set_status(
        self,
        broadcast_id: int,
        allowed: Iterable[Status],
        status: Status,
        actor: Actor | None = None,
    ) -> bool:
        """Move to `status` if the broadcast is in one of `allowed` now; with the
        admin who did it (`actor`) in the audit log, in the same transaction."""
        now = self._now()
        values: dict[str, Any] = {"status": status.value, "updated_at": now}
        if status in (Status.CANCELLED, Status.DONE):
            values["finished_at"] = now
        states = [s.value for s in allowed]
        async with self.db.write() as session:
            before = await session.scalar(
                select(Broadcast.status).where(Broadcast.id == broadcast_id).with_for_update()
            )
            result = await session.execute(
                update(Broadcast)
                .where(Broadcast.id == broadcast_id, Broadcast.status.in_(states))
                .values(**values)
            )
            changed = bool(result.rowcount)  # type: ignore[attr-defined]
            if changed and actor is not None:
                await write_audit(
                    session,
                    actor,
                    _ACTIONS.get(status, f"broadcast_{status.value}"),
                    before={"status": before},
                    after={"status": status.value},
                    broadcast=broadcast_id,
                )
        return changed

    async def owner(self, broadcast_id: int) -> tuple[Status, str | None, datetime | None] | None:
        async with self.db.read() as session:
            row = (
                await session.execute(
                    select(Broadcast.status, Broadcast.runner_id, Broadcast.lease_until).where(
                        Broadcast.id == broadcast_id
                    )
                )
            ).one_or_none()
        if row is None:
            return None
        return Status(row[0]), row[1], row[2]

    async def adopt(
        self, broadcast_id: int, runner_id: str, expected: str | None, lease: timedelta
    ) -> bool:
        """Become the runner of a running broadcast whose runner is still `expected`
        (compare and set). Rows the old runner left `sending` may have gone out:
        they become unconfirmed and are never sent again."""
        now = self._now()
        async with self.db.write() as session:
            result = await session.execute(
                update(Broadcast)
                .where(
                    Broadcast.id == broadcast_id,
                    Broadcast.status == Status.RUNNING.value,
                    Broadcast.runner_id.is_(None)
                    if expected is None
                    else Broadcast.runner_id == expected,
                )
                .values(runner_id=runner_id, lease_until=now + lease, updated_at=now)
            )
            if not result.rowcount:  # type: ignore[attr-defined]
                return False
            await session.execute(
                update(R)
                .where(R.broadcast_id == broadcast_id, R.state == RecipientState.SENDING.value)
                .values(
                    state=RecipientState.UNCONFIRMED.value,
                    done_at=now,
                    error="the process sending it stopped during the call",
                )
            )
        return True

    async def renew(self, broadcast_id: int, runner_id: str, lease: timedelta) -> bool:
        """Extend this runner's lease; False if it is no longer the runner."""
        now = self._now()
        async with self.db.write() as session:
            result = await session.execute(
                update(Broadcast)
                .where(Broadcast.id == broadcast_id, Broadcast.runner_id == runner_id)
                .values(lease_until=now + lease)
            )
        return bool(result.rowcount)  # type: ignore[attr-defined]

    async def release(self, broadcast_id: int, runner_id: str) -> None:
        """This runner stops (a clean shutdown): anyone may take it over at once."""
        async with self.db.write() as session:
            await session.execute(
                update(Broadcast)
                .where(Broadcast.id == broadcast_id, Broadcast.runner_id == runner_id)
                .values(runner_id=None, lease_until=None)
            )

    # -- recipients --------------------------------------------------------------

    def _still_running(self, broadcast_id: int, runner_id: str) -> Any:
        return exists().where(
            B.id == broadcast_id,
            B.status == Status.RUNNING.value,
            B.runner_id == runner_id,
        )

    async def claim_next(self, broadcast_id: int, platform: str, runner_id: str) -> Claim | None:
        """Take the next pending recipient of `platform`, committed before any call
        is made for them. None when none is left, or the broadcast stopped running
        here. Concurrent claimers (PostgreSQL) skip rows another one is taking."""
        now = self._now()
        following = (
            select(R.user_id)
            .where(
                R.broadcast_id == broadcast_id,
                R.platform == platform,
                R.state == RecipientState.PENDING.value,
            )
            .order_by(R.user_id)
            .limit(1)
            .with_for_update(skip_locked=True)
            .scalar_subquery()
        )
        async with self.db.write() as session:
            row = (
                await session.execute(
                    update(R)
                    .where(
                        R.broadcast_id == broadcast_id,
                        R.user_id == following,
                        R.state == RecipientState.PENDING.value,
                        self._still_running(broadcast_id, runner_id),
                    )
                    .values(
                        state=RecipientState.SENDING.value,
                        claimed_by=runner_id,
                        claimed_at=now,
                        attempts=R.attempts + 1,
                    )
                    .returning(R.user_id, R.platform, R.platform_user_id, R.chat_id)
                    .execution_options(synchronize_session=False)
                )
            ).one_or_none()
        if row is None:
            return None
        return Claim(broadcast_id, int(row[0]), str(row[1]), str(row[2]), row[3])

    async def reclaim(self, claim: Claim, runner_id: str) -> bool:
        """Before calling again for a held recipient (after a 429 or an error): still
        ours, and the broadcast still running here."""
        async with self.db.write() as session:
            result = await session.execute(
                update(R)
                .where(
                    R.broadcast_id == claim.broadcast_id,
                    R.user_id == claim.user_id,
                    R.state == RecipientState.SENDING.value,
                    R.claimed_by == runner_id,
                    self._still_running(claim.broadcast_id, runner_id),
                )
                .values(claimed_at=self._now(), attempts=R.attempts + 1)
                .execution_options(synchronize_session=False)
            )
        return bool(result.rowcount)  # type: ignore[attr-defined]

    async def finish(
        self, claim: Claim, runner_id: str, state: RecipientState, error: str | None = None
    ) -> bool:
        async with self.db.write() as session:
            result = await session.execute(
                update(R)
                .where(
                    R.broadcast_id == claim.broadcast_id,
                    R.user_id == claim.user_id,
                    R.state == RecipientState.SENDING.value,
                    R.claimed_by == runner_id,
                )
                .values(
                    state=state.value,
                    done_at=self._now(),
                    error=error[:ERROR_LENGTH] if error else None,
                )
                .execution_options(synchronize_session=False)
            )
        return bool(result.rowcount)  # type: ignore[attr-defined]

    async def unclaim(self, claim: Claim, runner_id: str) -> None:
        """Give a held recipient back: no call for them is under way or went through."""
        async with self.db.write() as session:
            await session.execute(
                update(R)
                .where(
                    R.broadcast_id == claim.broadcast_id,
                    R.user_id == claim.user_id,
                    R.state == RecipientState.SENDING.value,
                    R.claimed_by == runner_id,
                )
                .values(state=RecipientState.PENDING.value, claimed_by=None, claimed_at=None)
                .execution_options(synchronize_session=False)
            )

    async def abandon_held(self, broadcast_id: int, runner_id: str) -> int:
        """Rows this runner left `sending` with nobody holding them (an error between
        the call and its record): they may have gone out, so they are unconfirmed."""
        async with self.db.write() as session:
            result = await session.execute(
                update(R)
                .where(
                    R.broadcast_id == broadcast_id,
                    R.state == RecipientState.SENDING.value,
                    R.claimed_by == runner_id,
                )
                .values(
                    state=RecipientState.UNCONFIRMED.value,
                    done_at=self._now(),
                    error="the outcome of the call was not recorded",
                )
            )
        return int(result.rowcount)  # type: ignore[attr-defined]

    # -- progress ----------------------------------------------------------------

    async def counts(self, broadcast_id: int) -> Counts:
        async with self.db.read() as session:
            rows = (
                await session.execute(
                    select(R.platform, R.state, func.count())
                    .where(R.broadcast_id == broadcast_id)
                    .group_by(R.platform, R.state)
                )
            ).all()
        return Counts({(str(p), str(s)): int(n) for p, s, n in rows})

    async def has_pending(self, broadcast_id: int, platform: str | None = None) -> bool:
        """Whether anyone (on `platform`) is still to be claimed: one index seek."""
        query = select(R.user_id).where(
            R.broadcast_id == broadcast_id, R.state == RecipientState.PENDING.value
        )
        if platform is not None:
            query = query.where(R.platform == platform)
        async with self.db.read() as session:
            return (await session.scalar(query.limit(1))) is not None

    async def progress(self, broadcast_id: int, floods: int = 0) -> Progress:
        """Live progress; `floods` adds 429s not yet written to the row."""
        async with self.db.read() as session:
            row = await session.get(Broadcast, broadcast_id)
            if row is None:
                raise BroadcastError("No such broadcast.")
            status, started, finished = Status(row.status), row.started_at, row.finished_at
            stored_floods, report_to = row.floods, ProgressRef.from_json(row.report_to)
        counts = await self.counts(broadcast_id)
        return Progress(
            broadcast_id=broadcast_id,
            status=status,
            total=counts.total,
            sent=counts.state(RecipientState.SENT),
            blocked=counts.state(RecipientState.BLOCKED),
            failed=counts.state(RecipientState.FAILED),
            unconfirmed=counts.state(RecipientState.UNCONFIRMED),
            pending=counts.state(RecipientState.PENDING) + counts.state(RecipientState.SENDING),
            floods=stored_floods + floods,
            started_at=started,
            finished_at=finished,
            report_to=report_to,
        )

    async def record(self, broadcast_id: int, floods: int, *, counts: Counts | None) -> None:
        """Add `floods` 429s to the row and, with `counts`, write the counts."""
        values: dict[str, Any] = {"floods": Broadcast.floods + floods}
        if counts is not None:
            values.update(
                total=counts.total,
                sent=counts.state(RecipientState.SENT),
                blocked=counts.state(RecipientState.BLOCKED),
                failed=counts.state(RecipientState.FAILED),
                unconfirmed=counts.state(RecipientState.UNCONFIRMED),
            )
        async with self.db.write() as session:
            await session.execute(
                update(Broadcast).where(Broadcast.id == broadcast_id).values(**values)
            )

    async def complete(self, broadcast_id: int, runner_id: str) -> bool:
        """Running -> done once no recipient is pending or being sent."""
        now = self._now()
        open_rows = exists().where(
            R.broadcast_id == broadcast_id,
            R.state.in_([RecipientState.PENDING.value, RecipientState.SENDING.value]),
        )
        async with self.db.write() as session:
            result = await session.execute(
                update(Broadcast)
                .where(
                    and_(
                        Broadcast.id == broadcast_id,
                        Broadcast.status == Status.RUNNING.value,
                        or_(Broadcast.runner_id == runner_id, Broadcast.runner_id.is_(None)),
                        ~open_rows,
                    )
                )
                .values(
                    status=Status.DONE.value,
                    finished_at=now,
                    updated_at=now,
                    runner_id=None,
                    lease_until=None,
                )
            )
        return bool(result.rowcount)  # type: ignore[attr-defined]
