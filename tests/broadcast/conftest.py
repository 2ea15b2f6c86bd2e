"""People in the database, a recording sender, and an engine on the test database."""

from __future__ import annotations

import asyncio
from collections.abc import AsyncIterator, Iterable, Mapping
from dataclasses import dataclass, field
from datetime import datetime, timedelta

import pytest

from core.accounts import AccountService
from core.broadcast import (
    BroadcastEngine,
    Content,
    Rejected,
    RetryAfter,
    SendLimits,
    Transient,
    Unreachable,
)
from core.clock import utcnow
from core.db.engine import Database
from core.db.models import Identity, User


@dataclass(frozen=True)
class Person:
    user_id: int
    accounts: dict[str, str]  # platform -> platform user id


async def add_people(
    db: Database,
    count: int,
    *,
    platform: str = "telegram",
    first_id: int = 10_000,
    tier: str = "free",
    seen: datetime | None = None,
    banned: bool = False,
) -> list[Person]:
    """`count` people with one account each on `platform` (ids from `first_id`)."""
    return [
        await add_person(db, {platform: (str(first_id + n), seen)}, tier=tier, banned=banned)
        for n in range(count)
    ]


async def add_person(
    db: Database,
    accounts: Mapping[str, tuple[str, datetime | None]],
    *,
    tier: str = "free",
    banned: bool = False,
    blocked: Iterable[str] = (),
) -> Person:
    """One person with an account per platform: platform -> (id, last seen)."""
    now = utcnow()
    async with db.write() as session:
        user = User(tier=tier, is_banned=banned, last_seen_at=now)
        session.add(user)
        await session.flush()
        for platform, (account_id, seen) in accounts.items():
            session.add(
                Identity(
                    user_id=user.id,
                    platform=platform,
                    platform_user_id=account_id,
                    chat_id=account_id if platform == "telegram" else None,
                    last_seen_at=seen if seen is not None else now - timedelta(days=1),
                    is_blocked=platform in set(blocked),
                )
            )
        user_id = user.id
    return Person(user_id, {p: a for p, (a, _) in accounts.items()})


@dataclass
class RecordingSender:
    """A platform sender that records what it sends. Addresses in `blocked` answer
    like a person who blocked the bot; `floods` 429s come first; `errors` maps an
    address to how many transient errors it answers before it works."""

    platform: str = "telegram"
    per_second: float = 1000.0
    concurrency: int = 2
    delay: float = 0.0
    blocked: set[str] = field(default_factory=set)
    rejected: set[str] = field(default_factory=set)
    errors: dict[str, int] = field(default_factory=dict)
    floods: int = 0
    flood_seconds: float = 0.05
    too_long: int | None = None
    sent: list[tuple[str, Content, float]] = field(default_factory=list)
    calls: int = 0
    # Every call as it started (event loop time), and whether it was answered 429.
    started: list[tuple[float, bool]] = field(default_factory=list)

    @property
    def limits(self) -> SendLimits:
        return SendLimits(self.per_second, self.concurrency)

    def problem(self, content: Content) -> str | None:
        if self.too_long is not None and len(content.text) > self.too_long:
            return "too long"
        return None

    async def send(self, address: str, content: Content) -> None:
        self.calls += 1
        at = asyncio.get_running_loop().time()
        if self.delay:
            await asyncio.sleep(self.delay)
        flooded = self.floods > 0
        self.started.append((at, flooded))
        if flooded:
            self.floods -= 1
            raise RetryAfter(self.flood_seconds)
        if address in self.blocked:
            raise Unreachable("bot was blocked by the user")
        if address in self.rejected:
            raise Rejected("chat not found")
        if self.errors.get(address, 0) > 0:
            self.errors[address] -= 1
            raise Transient("server error")
        self.sent.append((address, content, asyncio.get_running_loop().time()))

    def count(self, address: str) -> int:
        return sum(1 for a, _, _ in self.sent if a == address)


def make_engine(
    db: Database,
    worker_id: str = "worker-a",
    *,
    lease_seconds: float = 30.0,
    settle_timeout: float = 10.0,
) -> BroadcastEngine:
    """An engine with short intervals, so tests see progress and stops quickly."""
    return BroadcastEngine(
        db,
        AccountService(db),
        worker_id=worker_id,
        progress_interval=0.2,
        tick=0.05,
        retry_backoff=0.01,
        lease_seconds=lease_seconds,
        settle_timeout=settle_timeout,
    )


@pytest.fixture
async def engine(db: Database) -> AsyncIterator[BroadcastEngine]:
    built = make_engine(db)
    try:
        yield built
    finally:
        await built.close()
