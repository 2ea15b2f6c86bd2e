"""Platform messages <-> rows, on the real database (SQLite and PostgreSQL)."""

from __future__ import annotations

import asyncio
import uuid

from core.conversations.links import Linked, MessageLinks, PlatformMessage, link_in
from core.db.held import RIDE_WAIT
from core.services import Services
from tests.support.chat import finish, new_user
from tests.support.queries import count_queries


async def _answers(services: Services, count: int) -> list[tuple[uuid.UUID, uuid.UUID]]:
    """(prompt row id, answer row id) of `count` finished turns."""
    user_id = await new_user(services)
    turns: list[tuple[uuid.UUID, uuid.UUID]] = []
    for index in range(count):
        generation = await services.chat.send(user_id, f"question {index}")
        await finish(generation)
        turns.append((generation.turn.prompt.id, generation.message_id))
    return turns


async def test_parts_added_one_by_one_read_back_in_order(services: Services) -> None:
    links = MessageLinks(services.db, "telegram")
    [(_, answer)] = await _answers(services, 1)
    with count_queries(services.db) as queries:
        await links.add(7, answer, 100, 0)
        await links.add(7, answer, 101, 1)
        await links.add(7, answer, 102, 2)
        assert queries.count == 0  # held back, off the answer's path
        await links.flush()
    # One upsert for all three: no delete before the insert.
    assert queries.count == 1
    assert await links.parts(7, answer) == ["100", "101", "102"]
    assert await links.resolve(7, 101) == Linked(answer, 1)
    assert await links.parts(8, answer) == []  # another chat shows nothing


async def test_added_links_are_written_within_the_delay_and_read_back_at_once(
    services: Services,
) -> None:
    links = MessageLinks(services.db, "telegram")
    other = MessageLinks(services.db, "telegram")  # another process's view
    [(_, answer)] = await _answers(services, 1)
    await links.add(7, answer, 100, 0)
    assert await links.resolve(7, 100) == Linked(answer, 0)  # this process: at once
    await links.add(7, answer, 101, 1)
    # Nothing else writes here, so no transaction carries them: they go alone.
    await asyncio.sleep(MessageLinks.ADD_DELAY + RIDE_WAIT + 0.3)
    assert await other.parts(7, answer) == ["100", "101"]  # others: within the delay


async def test_a_message_added_to_another_row_moves_there(services: Services) -> None:
    links = MessageLinks(services.db, "telegram")
    [(_, first), (_, second)] = await _answers(services, 2)
    await links.add(7, first, 100, 0)
    await links.add(7, second, 100, 0)
    assert await links.resolve(7, 100) == Linked(second, 0)
    assert await links.parts(7, first) == []


async def test_show_replaces_the_rows_messages_in_that_chat(services: Services) -> None:
    links = MessageLinks(services.db, "telegram")
    [(_, first), (_, second)] = await _answers(services, 2)
    await links.show(7, first, [100, 101])
    await links.show(9, first, [300])
    await links.show(7, second, [200])
    # The row now shows in 101 and a new 102; 100 is dropped, 101 moves to part 0.
    await links.show(7, first, [101, 102])
    assert await links.parts(7, first) == ["101", "102"]
    assert await links.resolve(7, 100) is None
    assert await links.resolve(7, 101) == Linked(first, 0)
    assert await links.parts(9, first) == ["300"]  # other chats keep theirs
    assert await links.parts(7, second) == ["200"]
    assert await links.displays(first) == [("7", ["101", "102"]), ("9", ["300"])]


async def test_link_in_points_an_edited_prompt_at_its_new_row(services: Services) -> None:
    """A person's message that was edited shows the new prompt revision."""
    links = MessageLinks(services.db, "telegram")
    [(prompt, _), (later, _)] = await _answers(services, 2)
    ref = PlatformMessage("telegram", "7", "55")
    async with services.db.write() as session:
        await link_in(session, ref, prompt)
    async with services.db.write() as session:
        await link_in(session, ref, later)
    assert await links.resolve(7, 55) == Linked(later, 0)


async def test_closing_writes_what_waits_and_leaves_no_writer(services: Services) -> None:
    links = MessageLinks(services.db, "telegram")
    [(_, answer)] = await _answers(services, 1)
    await links.add(7, answer, 100, 0)
    await links.aclose()
    assert links.held._writer is not None and links.held._writer.done()
    assert await MessageLinks(services.db, "telegram").parts(7, answer) == ["100"]
