"""Bookkeeping held back (message links, display marks) rides in an answer's own
settling transaction once due, instead of a transaction of its own; a batch whose
ride fails is kept and written alone."""

from __future__ import annotations

import asyncio

import pytest
from sqlalchemy import text
from sqlalchemy.ext.asyncio import AsyncSession

from core.conversations.links import MessageLinks
from core.db.held import RIDE_WAIT, HeldWrites, write_carrying
from core.services import Services
from tests.support.chat import finish, new_user
from tests.support.queries import write_transactions


async def test_a_due_link_rides_the_next_answers_settling_transaction(services: Services) -> None:
    links = MessageLinks(services.db, "telegram")
    services.chat.hold(links.held)
    user_id = await new_user(services)
    first = await services.chat.send(user_id, "a")
    await finish(first)
    await links.add(7, first.message_id, 100, 0)
    await asyncio.sleep(links.ADD_DELAY + 0.05)  # due, waiting for a ride
    with write_transactions(services.db) as begun:
        await finish(await services.chat.send(user_id, "b"))
    assert len(begun) == 2  # the plan and the settle, nothing of its own
    assert not links.held
    assert await MessageLinks(services.db, "telegram").parts(7, first.message_id) == ["100"]
    await links.aclose()


async def test_a_batch_not_yet_due_stays_for_a_later_ride(services: Services) -> None:
    written: list[dict[int, str]] = []

    async def write(_session: AsyncSession, batch: dict[int, str]) -> None:
        written.append(batch)

    held: HeldWrites[int, str] = HeldWrites(services.db, write, delay=0.2, batch=10, what="things")
    held.put(1, "a")
    async with write_carrying(services.db, [held]):
        pass
    assert written == [] and len(held) == 1  # not due yet
    await asyncio.sleep(0.25)
    held.put(2, "b")
    async with write_carrying(services.db, [held]):
        pass
    assert written == [{1: "a", 2: "b"}] and not held
    await held.aclose()


async def test_a_ride_that_fails_keeps_the_batch_and_it_is_written_alone(
    services: Services,
) -> None:
    written: list[dict[int, str]] = []

    async def write(_session: AsyncSession, batch: dict[int, str]) -> None:
        written.append(batch)

    held: HeldWrites[int, str] = HeldWrites(services.db, write, delay=0.1, batch=10, what="things")
    held.put(1, "a")
    await asyncio.sleep(0.15)
    with pytest.raises(RuntimeError):
        async with write_carrying(services.db, [held]) as session:
            await session.execute(text("SELECT 1"))
            raise RuntimeError("the carrying transaction fails")
    assert written == [] and len(held) == 1  # the body failed before the ride

    async def refused(session: AsyncSession, _batch: dict[int, str]) -> None:
        await session.execute(text("INSERT INTO no_such_table VALUES (1)"))

    held._write = refused
    user_id = await new_user(services)
    # The transaction carrying the refused batch commits all the same.
    async with write_carrying(services.db, [held]) as session:
        await session.execute(
            text("UPDATE users SET display_name = 'carried' WHERE id = :id"), {"id": user_id}
        )
    carried = await services.accounts.get(user_id)
    assert carried is not None and carried.display_name == "carried"
    assert len(held) == 1  # kept
    held._write = write
    async with write_carrying(services.db, [held]):
        pass
    assert written == []  # a batch that failed a ride does not ride again
    await asyncio.sleep(held.delay + RIDE_WAIT + 0.3)
    assert written == [{1: "a"}] and not held  # written alone
    await held.aclose()
