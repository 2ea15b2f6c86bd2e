"""A broadcast taken over from a process that stopped begins one second after that
process's last send: the platform counts calls per second, and the last second of
the process before may still be in its window, however fast the takeover is."""

from __future__ import annotations

from collections.abc import AsyncIterator

import pytest

from core.db.engine import Database
from tests.broadcast.conftest import add_people
from tests.broadcast.test_telegram import ADMIN, LIMIT, TEXT, _bot, _busiest_second, _engine, _kill
from tests.fakes.telegram_server import FakeTelegram
from tests.support.wait import until


@pytest.fixture
async def tg() -> AsyncIterator[FakeTelegram]:
    async with FakeTelegram(per_chat_interval=None, global_per_second=30) as fake:
        fake.user(ADMIN, first_name="Admin")
        yield fake


def _sends(tg: FakeTelegram) -> list[float]:
    return [c.time for c in tg.calls_of("sendMessage", ok=True) if c.chat_id != ADMIN]


async def test_a_takeover_begins_after_the_last_second_of_the_process_before(
    db: Database, tg: FakeTelegram
) -> None:
    people = await add_people(db, 120, first_id=30_001)
    for person in people:
        tg.user(int(person.accounts["telegram"]))
    first_bot, second_bot = _bot(tg), _bot(tg)
    first = _engine(db, first_bot, "process-1")
    second = _engine(db, second_bot, "process-2")
    try:
        draft = await first.create_draft(ADMIN, TEXT)
        await first.start(draft.id)
        await until(lambda: len(_sends(tg)) >= 40, within=30)
        await _kill(draft.id)
        before = _sends(tg)
        # Taken over at once (no lease to wait out): the fastest a takeover gets.
        assert await second.open(take_over=True, watch_orphans=False) == [draft.id]
        await second.wait(draft.id)
    finally:
        await second.close()
        for bot in (first_bot, second_bot):
            await bot.session.close()
    after = _sends(tg)[len(before) :]
    assert len(before) + len(after) == 120
    assert after[0] >= before[-1] + 1.0
    sends = [c for c in tg.calls_of("sendMessage", ok=True) if c.chat_id != ADMIN]
    assert _busiest_second(sends) <= LIMIT
