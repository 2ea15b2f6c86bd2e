"""A person's every update does not read their user row again: the account seen a
moment ago is kept, and dropped at any write to users or identities (this
process's at once, another process's within the TTL)."""

from __future__ import annotations

import uuid

from sqlalchemy import update

from core.accounts import PlatformProfile
from core.db.engine import Database
from core.db.models import User
from core.recent_accounts import TTL
from core.services import Services
from tests.support.queries import count_queries


def _profile(key: str) -> PlatformProfile:
    return PlatformProfile("telegram", key, display_name="Ann", language="en")


async def test_a_second_update_within_the_ttl_reads_nothing(services: Services) -> None:
    key = uuid.uuid4().hex
    first = await services.accounts.upsert(_profile(key))
    await services.accounts.upsert(_profile(key))  # kept from here on
    with count_queries(services.db) as log:
        again = await services.accounts.upsert(_profile(key))
    assert log.count == 0
    assert again.id == first.id


async def test_a_write_in_this_process_is_seen_by_the_next_update(services: Services) -> None:
    key = uuid.uuid4().hex
    user = await services.accounts.upsert(_profile(key))
    await services.accounts.upsert(_profile(key))
    await services.accounts.set_banned(user.id, True, "spam")
    await services.accounts.set_language(user.id, "de")
    seen = await services.accounts.upsert(_profile(key))
    assert seen.is_banned and seen.language == "de"


async def test_an_orm_write_through_any_session_drops_the_kept_row(services: Services) -> None:
    key = uuid.uuid4().hex
    user = await services.accounts.upsert(_profile(key))
    await services.accounts.upsert(_profile(key))
    async with services.db.write() as session:
        row = await session.get(User, user.id)
        assert row is not None
        row.tier = "pro"
    assert (await services.accounts.upsert(_profile(key))).tier == "pro"


async def test_another_process_write_is_seen_after_the_ttl(services: Services) -> None:
    key = uuid.uuid4().hex
    user = await services.accounts.upsert(_profile(key))
    await services.accounts.upsert(_profile(key))
    other = Database(services.db.url)  # another process: its writes are not heard here
    try:
        async with other.write() as session:
            await session.execute(update(User).where(User.id == user.id).values(is_banned=True))
    finally:
        await other.dispose()
    assert not (await services.accounts.upsert(_profile(key))).is_banned  # kept
    recent = services.accounts.recent
    now = recent._clock()
    recent._clock = lambda: now + TTL + 0.1
    assert (await services.accounts.upsert(_profile(key))).is_banned


async def test_a_row_read_while_a_write_happened_is_not_kept(services: Services) -> None:
    key = uuid.uuid4().hex
    user = await services.accounts.upsert(_profile(key))
    recent = services.accounts.recent
    recent.clear()
    generation = recent.generation  # a read begins
    await services.accounts.set_banned(user.id, True)  # a write lands meanwhile
    recent.keep("telegram", key, user, None, generation)  # the read ends: old row
    assert recent.get("telegram", key) is None
    assert (await services.accounts.upsert(_profile(key))).is_banned
