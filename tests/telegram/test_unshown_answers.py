"""An answer the model finished, saved in full, but not shown yet (the chat was
waiting out Telegram's 429s) when its process was killed: another process shows
it, with its final controls, and nothing is charged twice or given back. Real
processes against the fake Bot API (SQLite; PostgreSQL + Redis in CI's second
pass)."""

from __future__ import annotations

import asyncio
import random
import time
from collections.abc import AsyncIterator
from pathlib import Path

import pytest
from sqlalchemy import select

from core.db.engine import Database
from core.db.models import ChatMessage, MessageStatus
from tests.fakes.llm_server import FakeLLM, Reply
from tests.fakes.telegram_server import FakeTelegram, StoredMessage
from tests.support.bot_process import bot_process, bot_variables
from tests.support.scale_out import used_small

ANN = 42
WORDS = [f"word{i}" for i in range(12)]


@pytest.fixture
async def tg() -> AsyncIterator[FakeTelegram]:
    token = f"{random.randint(10**8, 10**9 - 1)}:AAFakeTelegramTokenForTests_0123456789"
    async with FakeTelegram(token, per_chat_interval=0.5) as fake:
        fake.user(ANN, first_name="Ann", language_code="en")
        yield fake


@pytest.fixture
async def llm() -> AsyncIterator[FakeLLM]:
    async with FakeLLM(default=Reply(text=None)) as fake:
        yield fake


def _said(tg: FakeTelegram) -> list[StoredMessage]:
    return [m for m in tg.messages(ANN, from_bot=True) if not m.deleted]


def _final(tg: FakeTelegram) -> StoredMessage | None:
    for message in _said(tg):
        if (message.text or "").startswith("word0") and any(
            str(b.get("callback_data", "")).startswith("a:r:") for b in message.buttons
        ):
            return message
    return None


async def _answer(db: Database) -> ChatMessage | None:
    async with db.read() as session:
        return await session.scalar(select(ChatMessage).where(ChatMessage.role == "assistant"))


async def test_an_answer_saved_but_not_shown_is_shown_by_the_next_process(
    tmp_path: Path, tg: FakeTelegram, llm: FakeLLM, db: Database, redis_url: str | None
) -> None:
    variables = {**bot_variables(tg, llm, db.url), "TELEGRAM_EDIT_INTERVAL": "0.5"}
    if redis_url:
        variables["REDIS_URL"] = redis_url
    llm.script(Reply(chunks=[f"{w} " for w in WORDS], chunk_delay=0.1))
    async with bot_process(tmp_path, variables) as first:
        await tg.wait_for(lambda: tg.waiting_pollers > 0 or bool(tg.calls_of("getUpdates")), 30)
        tg.send_text(ANN, "tell me")
        await tg.wait_for(lambda: bool(_said(tg)), 30)
        # From now on every edit is refused for 30 s: the finished answer waits.
        tg.flood_storm("editMessageText", 1000, retry_after=30)

        deadline = time.monotonic() + 30
        while (row := await _answer(db)) is None or row.status != MessageStatus.COMPLETE:
            assert time.monotonic() < deadline, first.output
            await asyncio.sleep(0.1)
        row = await _answer(db)
        assert row is not None and row.display_pending
        assert _final(tg) is None  # the person still sees the first words and ⏹
        first.kill()
        await first.wait()
    tg.flood_storm("editMessageText", 0)
    async with bot_process(tmp_path, variables) as second:
        final = await tg.wait_for(lambda: _final(tg), 40)
        assert (final.text or "").split() == WORDS, second.output
        assert "cut off" not in (final.text or "")
        row = await _answer(db)
        assert row is not None and not row.display_pending
        assert row.status == MessageStatus.COMPLETE
        # Charged once, for an answer the person got in full.
        assert await used_small(db, ANN) == 1
        assert len(_said(tg)) == 1
        second.terminate()
        assert await second.wait() == 0, second.output
    assert "Traceback" not in second.output, second.output


async def test_an_answer_cut_at_shutdown_is_not_told_twice_after_a_restart(
    tmp_path: Path, tg: FakeTelegram, llm: FakeLLM, db: Database, redis_url: str | None
) -> None:
    """SIGTERM cuts an answer that outlasts SHUTDOWN_GRACE and shows it cut: the
    next process has nothing more to show or say about it."""
    variables = {
        **bot_variables(tg, llm, db.url),
        "TELEGRAM_EDIT_INTERVAL": "0.5",
        "SHUTDOWN_GRACE": "1",
    }
    if redis_url:
        variables["REDIS_URL"] = redis_url
    llm.script(Reply(chunks=[f"{w} " for w in WORDS * 10], chunk_delay=0.5))
    async with bot_process(tmp_path, variables) as first:
        await tg.wait_for(lambda: tg.waiting_pollers > 0 or bool(tg.calls_of("getUpdates")), 30)
        tg.send_text(ANN, "tell me")
        await tg.wait_for(lambda: any("word3" in (m.text or "") for m in _said(tg)), 30)
        first.terminate()
        assert await first.wait() == 0, first.output
    said_before = [(m.message_id, m.text) for m in _said(tg)]
    notes = [m for m in _said(tg) if (m.text or "").endswith("Press 🔄 to try again.")]
    assert len(notes) == 1, said_before
    calls_before = len(tg.calls)
    async with bot_process(tmp_path, variables) as second:
        await tg.wait_for(
            lambda: any(c.method == "getUpdates" for c in tg.calls[calls_before:]), 30
        )
        await asyncio.sleep(3)  # the start-up sweep and the outbox have run
        second.terminate()
        assert await second.wait() == 0, second.output
    assert [(m.message_id, m.text) for m in _said(tg)] == said_before
    row = await _answer(db)
    assert row is not None and not row.display_pending
