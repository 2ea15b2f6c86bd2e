"""Two `oneai run` processes behind one webhook answer like one: a message that
lands on the other process than the answer it follows is queued there, and Stop
pressed on either process stops the answer wherever it streams. Real processes,
PostgreSQL + Redis (skipped otherwise)."""

from __future__ import annotations

import random
from collections.abc import AsyncIterator
from pathlib import Path

import pytest

from core.db.engine import Database
from tests.fakes.llm_server import FakeLLM, Reply
from tests.fakes.telegram_server import FakeTelegram, StoredMessage
from tests.support.bot_process import BotProcess, bot_process, bot_variables
from tests.support.scale_out import healthy, hook, used_small

ANN = 42
SECRET = "hook-secret"
QUEUED = "⏳ Queued: I'll answer this right after the current answer."


@pytest.fixture
async def tg(redis_url: str | None, database_url: str) -> AsyncIterator[FakeTelegram]:
    if redis_url is None or not database_url.startswith("postgresql"):
        pytest.skip("several processes need PostgreSQL and Redis")
    token = f"{random.randint(10**8, 10**9 - 1)}:AAFakeTelegramTokenForTests_0123456789"
    async with FakeTelegram(token, per_chat_interval=0.5) as fake:
        fake.user(ANN, first_name="Ann", language_code="en")
        yield fake


@pytest.fixture
async def llm() -> AsyncIterator[FakeLLM]:
    async with FakeLLM(default=Reply(text=None)) as fake:
        yield fake


def _long(seconds: float, word: str) -> Reply:
    return Reply(chunks=[f"{word}{i} " for i in range(30)], chunk_delay=seconds / 30)


@pytest.fixture
async def pair(
    tmp_path: Path, tg: FakeTelegram, llm: FakeLLM, db: Database, redis_url: str
) -> AsyncIterator[tuple[BotProcess, BotProcess]]:
    variables = {
        **bot_variables(tg, llm, db.url),
        "TELEGRAM_EDIT_INTERVAL": "0.5",
        "REDIS_URL": redis_url,
        "TELEGRAM_WEBHOOK_URL": "https://bot.example.test",
        "TELEGRAM_WEBHOOK_SECRET": SECRET,
    }
    async with (
        bot_process(tmp_path, variables) as first,
        bot_process(tmp_path, variables) as second,
    ):
        for bot in (first, second):
            await healthy(bot, path="/readyz")
        yield first, second
        for bot in (first, second):
            bot.terminate()
            assert await bot.wait() == 0, bot.output
            assert "Traceback" not in bot.output, bot.output


def _said(tg: FakeTelegram) -> list[StoredMessage]:
    return tg.messages(ANN, from_bot=True)


def _final(tg: FakeTelegram, starts: str) -> StoredMessage | None:
    """The answer starting `starts` once it shows its final controls (🔄)."""
    for message in _said(tg):
        if (message.text or "").startswith(starts) and any(
            str(b.get("callback_data", "")).startswith("a:r:") for b in message.buttons
        ):
            return message
    return None


async def test_a_message_on_the_other_process_is_queued_behind_the_answer(
    pair: tuple[BotProcess, BotProcess], tg: FakeTelegram, llm: FakeLLM, db: Database
) -> None:
    first, second = pair
    assert len(tg.calls_of("setWebhook", ok=True)) == 1
    llm.script(_long(4, "a"))
    tg.send_text(ANN, "tell me a story")
    await tg.deliver_webhook(hook(first), secret_token=SECRET)
    await tg.wait_for(lambda: any("a3" in (m.text or "") for m in _said(tg)), 30)
    tg.send_text(ANN, "and then?")
    await tg.deliver_webhook(hook(second), secret_token=SECRET)
    await tg.wait_for(lambda: any(m.text == QUEUED for m in _said(tg)), 10)
    story = await tg.wait_for(lambda: _final(tg, "a0"), 30)
    follow = await tg.wait_for(lambda: _final(tg, "Echo: and then?"), 30)
    assert (story.text or "").split()[-1] == "a29"
    assert follow.message_id > story.message_id
    assert [m.text for m in _said(tg)].count("Echo: and then?") == 1
    assert not any((m.text or "").startswith("⏳ Still answering") for m in _said(tg))
    assert await used_small(db, ANN) == 2


async def test_stop_pressed_on_the_other_process_stops_the_answer(
    pair: tuple[BotProcess, BotProcess], tg: FakeTelegram, llm: FakeLLM, db: Database
) -> None:
    first, second = pair
    llm.script(_long(30, "s"))
    tg.send_text(ANN, "a very long story")
    await tg.deliver_webhook(hook(first), secret_token=SECRET)
    live = await tg.wait_for(
        lambda: next(
            (
                m
                for m in _said(tg)
                if "s2" in (m.text or "")
                and any(str(b.get("callback_data", "")).startswith("a:s:") for b in m.buttons)
            ),
            None,
        ),
        30,
    )
    stop = next(
        str(b["callback_data"])
        for b in live.buttons
        if str(b.get("callback_data", "")).startswith("a:s:")
    )
    tg.press(ANN, live.message_id, stop)
    await tg.deliver_webhook(hook(second), secret_token=SECRET)
    stopped = await tg.wait_for(lambda: _final(tg, "s0"), 15)
    assert "s29" not in (stopped.text or "")
    assert await used_small(db, ANN) == 1
