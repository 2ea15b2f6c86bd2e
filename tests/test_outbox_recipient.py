"""A notice for any platform (a plan change) reaches the person on the platform
they use: a sender that cannot reach them hands it over instead of giving up."""

from __future__ import annotations

import pytest

from core.accounts import AccountService, PlatformProfile
from core.db.engine import Database
from core.outbox import Outbox, OutgoingMessage, Undeliverable


async def _queue(db: Database, outbox: Outbox, user_id: int, platform: str | None) -> None:
    async with db.write() as session:
        outbox.add(session, user_id, "plan.activated", {"tier": "pro"}, platform=platform)


async def test_a_notice_for_any_platform_goes_where_the_person_is(db: Database) -> None:
    accounts, outbox = AccountService(db), Outbox(db)
    user = await accounts.upsert(PlatformProfile("discord", "777"))
    await _queue(db, outbox, user.id, None)
    tried: list[str] = []

    async def telegram(message: OutgoingMessage) -> None:
        tried.append("telegram")
        await outbox.recipient(message, "telegram")

    # Telegram's sender claims it, cannot reach the person, and hands it over.
    assert await outbox.deliver_pending({"telegram", None}, telegram) == 0
    assert tried == ["telegram"]
    delivered: list[str] = []

    async def discord(message: OutgoingMessage) -> None:
        recipient = await outbox.recipient(message, "discord")
        delivered.append(recipient.platform_user_id)

    assert await outbox.deliver_pending({"discord", None}, discord) == 1
    assert delivered == ["777"]


async def test_nobody_to_reach_gives_up(db: Database) -> None:
    accounts, outbox = AccountService(db), Outbox(db)
    user = await accounts.upsert(PlatformProfile("telegram", "555"))
    await accounts.mark_blocked("telegram", "555")
    await _queue(db, outbox, user.id, None)
    claimed = await outbox.claim({"telegram", None})
    with pytest.raises(Undeliverable):
        await outbox.recipient(claimed[0], "telegram")
    # A notice meant for Telegram is never handed to another platform.
    other = await accounts.upsert(PlatformProfile("discord", "888"))
    await _queue(db, outbox, other.id, "telegram")
    (message,) = await outbox.claim({"telegram"})
    with pytest.raises(Undeliverable):
        await outbox.recipient(message, "telegram")
