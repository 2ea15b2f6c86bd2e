"""Messages to people that a state change causes (a plan activated, a refund, a
reminder). They are written in the change's own transaction and delivered after
commit, so a crash neither loses nor repeats them.

A sender claims a batch (rows nobody holds, or whose claim ran out), delivers each,
and marks it sent. Several processes can send: a claim is one conditional UPDATE,
so two senders never hold the same row.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
import time
from collections.abc import Awaitable, Callable
from dataclasses import dataclass
from datetime import datetime, timedelta
from typing import Any

from sqlalchemy import false, or_, select, update
from sqlalchemy.ext.asyncio import AsyncSession

from core.clock import utcnow
from core.db.engine import Database
from core.db.models import Identity, OutboxMessage, User

log = logging.getLogger(__name__)

CLAIM_SECONDS = 60.0
BATCH = 10
MAX_ATTEMPTS = 8


@dataclass(frozen=True)
class OutgoingMessage:
    id: int
    user_id: int
    platform: str | None
    kind: str
    payload: dict[str, Any]
    attempts: int


class Undeliverable(Exception):
    """The person cannot be written to (blocked the bot, no account there): give up."""


class HandedOver(Exception):
    """A notice for any platform went to the platform that can reach the person."""


# Delivers one message; raises Undeliverable to give up, anything else to retry later.
Deliver = Callable[[OutgoingMessage], Awaitable[None]]


@dataclass(frozen=True)
class Recipient:
    platform_user_id: str
    language: str | None


class Outbox:
    def __init__(self, db: Database, now: Callable[[], datetime] = utcnow) -> None:
        self.db = db
        self._now = now
        self._wake = asyncio.Event()

    def add(
        self,
        session: AsyncSession,
        user_id: int,
        kind: str,
        payload: dict[str, Any] | None = None,
        *,
        platform: str | None = None,
    ) -> None:
        """Queue a message inside the caller's transaction."""
        session.add(
            OutboxMessage(user_id=user_id, kind=kind, payload=payload or {}, platform=platform)
        )

    def wake(self) -> None:
        """Something was committed: senders look now instead of at their next poll."""
        self._wake.set()

    async def claim(self, platforms: set[str | None], limit: int = 50) -> list[OutgoingMessage]:
        now = self._now()
        free = or_(OutboxMessage.claimed_until.is_(None), OutboxMessage.claimed_until <= now)
        # Looked for in a read: a poll that finds nothing due (most of them) takes
        # no write lock. The claim below re-checks each row, so one that another
        # sender claimed in between is left to it.
        async with self.db.read() as session:
            ids = (
                await session.scalars(
                    select(OutboxMessage.id)
                    .where(
                        OutboxMessage.sent_at.is_(None),
                        OutboxMessage.attempts < MAX_ATTEMPTS,
                        _platform_in(platforms),
                        free,
                    )
                    .order_by(OutboxMessage.id)
                    .limit(limit)
                )
            ).all()
        if not ids:
            return []
        async with self.db.write() as session:
            # Each row checked again: a concurrent sender's claim (or a hand-over to
            # another platform) since the read wins the row.
            rows = (
                await session.execute(
                    update(OutboxMessage)
                    .where(
                        OutboxMessage.id.in_(ids),
                        OutboxMessage.sent_at.is_(None),
                        OutboxMessage.attempts < MAX_ATTEMPTS,
                        _platform_in(platforms),
                        free,
                    )
                    .values(
                        claimed_until=now + timedelta(seconds=CLAIM_SECONDS),
                        attempts=OutboxMessage.attempts + 1,
                    )
                    .returning(
                        OutboxMessage.id,
                        OutboxMessage.user_id,
                        OutboxMessage.platform,
                        OutboxMessage.kind,
                        OutboxMessage.payload,
                        OutboxMessage.attempts,
                    )
                    .execution_options(synchronize_session=False)
                )
            ).all()
        return sorted((OutgoingMessage(*row) for row in rows), key=lambda m: m.id)

    async def _note(self, message_id: int, **values: Any) -> None:
        """Record how a delivery went (sent, given up, or when to retry)."""
        async with self.db.write() as session:
            await session.execute(
                update(OutboxMessage).where(OutboxMessage.id == message_id).values(**values)
            )

    async def hand_over(self, message_id: int, platform: str) -> None:
        """Give a claimed notice to another platform's sender, as if never tried."""
        async with self.db.write() as session:
            await session.execute(
                update(OutboxMessage)
                .where(OutboxMessage.id == message_id, OutboxMessage.sent_at.is_(None))
                .values(
                    platform=platform,
                    claimed_until=None,
                    attempts=OutboxMessage.attempts - 1,
                )
            )
        self.wake()

    async def recipient(self, message: OutgoingMessage, platform: str) -> Recipient:
        """Where a notice goes on `platform`: the person's account there. A notice
        for any platform (`platform` None: plan changes) that this platform cannot
        deliver is handed to one that can (HandedOver); else Undeliverable."""
        async with self.db.read() as session:
            rows = (
                await session.execute(
                    select(Identity, User.language)
                    .join(User, User.id == Identity.user_id)
                    .where(Identity.user_id == message.user_id)
                    .order_by(Identity.last_seen_at.desc().nulls_last())
                )
            ).all()
        reachable = [(identity, language) for identity, language in rows if not identity.is_blocked]
        for identity, language in reachable:
            if identity.platform == platform:
                return Recipient(identity.platform_user_id, language)
        if message.platform is None and reachable:
            await self.hand_over(message.id, reachable[0][0].platform)
            raise HandedOver()
        if any(identity.platform == platform for identity, _ in rows):
            raise Undeliverable("blocked the bot")
        raise Undeliverable(f"no {platform} account")

    async def deliver_pending(self, platforms: set[str | None], deliver: Deliver) -> int:
        """Claim and deliver what is due; returns how many were sent."""
        sent = 0
        while batch := await self.claim(platforms, limit=BATCH):
            claimed = time.monotonic()
            for message in batch:
                if time.monotonic() - claimed > CLAIM_SECONDS / 2:
                    # Slow sends (flood waits): leave the rest before the claim runs
                    # out and another sender takes them, so none goes out twice.
                    break
                try:
                    await deliver(message)
                except HandedOver:
                    continue
                except Undeliverable as exc:
                    log.info("outbox %d: not deliverable: %s", message.id, exc)
                    await self._note(message.id, attempts=MAX_ATTEMPTS, last_error=str(exc)[:500])
                    continue
                except Exception as exc:
                    log.warning("outbox %d: delivery failed, will retry: %s", message.id, exc)
                    # Backing off with the number of attempts.
                    delay = min(5 * 2 ** (message.attempts - 1), 600)
                    retry_at = self._now() + timedelta(seconds=delay)
                    await self._note(message.id, claimed_until=retry_at, last_error=str(exc)[:500])
                    continue
                await self._note(message.id, sent_at=self._now(), last_error=None)
                sent += 1
        return sent

    async def run(
        self, platforms: set[str | None], deliver: Deliver, poll_seconds: float = 5.0
    ) -> None:
        """Deliver forever: at once when woken, else every `poll_seconds`."""
        while True:
            self._wake.clear()
            try:
                await self.deliver_pending(platforms, deliver)
            except Exception:
                log.exception("outbox delivery pass failed")
            with contextlib.suppress(TimeoutError):
                await asyncio.wait_for(self._wake.wait(), poll_seconds)


def _platform_in(platforms: set[str | None]) -> Any:
    named = [p for p in platforms if p is not None]
    clauses = [OutboxMessage.platform.in_(named)] if named else []
    if None in platforms:
        clauses.append(OutboxMessage.platform.is_(None))
    return or_(*clauses) if clauses else false()
