"""Claiming due notices: a poll that finds nothing takes no write lock, and two
senders polling at once never both take a notice."""

from __future__ import annotations

import asyncio

from core.accounts import AccountService, PlatformProfile
from core.db.engine import Database
from core.outbox import Outbox
from tests.support.queries import write_transactions


async def test_a_poll_with_nothing_due_takes_no_write_lock(db: Database) -> None:
    outbox = Outbox(db)
    with write_transactions(db) as begun:
        assert await outbox.claim({"telegram", None}) == []
    assert not begun
    user = await AccountService(db).upsert(PlatformProfile("telegram", "1"))
    async with db.write() as session:
        outbox.add(session, user.id, "plan.activated", {"tier": "pro"})
    with write_transactions(db) as begun:
        (claimed,) = await outbox.claim({"telegram", None})
    assert len(begun) == 1 and claimed.attempts == 1
    with write_transactions(db) as begun:  # claimed: no longer due
        assert await outbox.claim({"telegram", None}) == []
    assert not begun


async def test_senders_polling_at_once_take_each_notice_once(db: Database) -> None:
    accounts = AccountService(db)
    senders = [Outbox(db) for _ in range(4)]
    users = [await accounts.upsert(PlatformProfile("telegram", str(100 + i))) for i in range(10)]
    async with db.write() as session:
        for user in users:
            senders[0].add(session, user.id, "plan.activated", {"tier": "pro"})
    # Every sender reads all ten as due; the claims then run one after another.
    batches = await asyncio.gather(*(s.claim({"telegram", None}) for s in senders))
    taken = [message.id for batch in batches for message in batch]
    assert sorted(taken) == sorted(set(taken)) and len(taken) == 10
    assert all(message.attempts == 1 for batch in batches for message in batch)
