"""`oneai run` killed, restarted, stopped: real processes against the fake Bot API,
the fake LLM and the test database (SQLite; PostgreSQL + Redis in CI's second pass).

- killed with SIGKILL mid-answer and restarted within seconds: the person is told
  the answer was cut, their unit is back and their next message is answered;
- with Redis, a second process notices a dead first one within 30 s on its own;
- SIGTERM with two answers streaming: they finish within SHUTDOWN_GRACE, or are cut
  (units back, people told), and the process exits 0.
"""

from __future__ import annotations

import asyncio
import random
import time
from collections.abc import AsyncIterator
from pathlib import Path

import aiohttp
import pytest

from core.db.engine import Database
from core.quotas import QuotaService
from core.tiers import QuotaKey, Tier
from tests.fakes.llm_server import FakeLLM, Reply
from tests.fakes.telegram_server import FakeTelegram, StoredMessage
from tests.support.bot_process import BotProcess, bot_process, bot_variables

ANN, BOB = 42, 43
CUT = "⚠️ This answer was cut off by a restart. Press 🔄 to try again."
SECRET = "hook-secret"


def _long_reply(seconds: float, word: str = "w") -> Reply:
    count = 40
    return Reply(chunks=[f"{word}{i} " for i in range(count)], chunk_delay=seconds / count)


@pytest.fixture
async def tg() -> AsyncIterator[FakeTelegram]:
    # A bot of its own: with Redis, what one test's bot remembered (update ids it
    # took) must not meet another's.
    token = f"{random.randint(10**8, 10**9 - 1)}:AAFakeTelegramTokenForTests_0123456789"
    async with FakeTelegram(token, per_chat_interval=0.5) as fake:
        fake.user(ANN, first_name="Ann", language_code="en")
        fake.user(BOB, first_name="Bob", language_code="en")
        yield fake


@pytest.fixture
async def llm() -> AsyncIterator[FakeLLM]:
    async with FakeLLM(default=Reply(text=None)) as fake:
        yield fake


def _variables(
    tg: FakeTelegram, llm: FakeLLM, db: Database, redis_url: str | None
) -> dict[str, str]:
    variables = {**bot_variables(tg, llm, db.url), "TELEGRAM_EDIT_INTERVAL": "0.5"}
    if redis_url:
        variables["REDIS_URL"] = redis_url
    return variables


def _bot_messages(tg: FakeTelegram, chat: int) -> list[StoredMessage]:
    return [m for m in tg.messages(chat, from_bot=True) if not m.deleted]


def _final(tg: FakeTelegram, chat: int, starts: str) -> StoredMessage | None:
    """The bot's message that starts with `starts` once it has its 🔄 button."""
    for message in _bot_messages(tg, chat):
        regenerate = any(
            str(b.get("callback_data", "")).startswith("a:r:") for b in message.buttons
        )
        if (message.text or "").startswith(starts) and regenerate:
            return message
    return None


async def _polling(tg: FakeTelegram, bot: BotProcess) -> None:
    await tg.wait_for(lambda: tg.waiting_pollers > 0 and bot.process.returncode is None, 30)


async def _used(db: Database, chat: int, tg: FakeTelegram) -> int:
    from sqlalchemy import select

    from core.db.models import Identity

    async with db.read() as session:
        user_id = await session.scalar(
            select(Identity.user_id).where(
                Identity.platform == "telegram", Identity.platform_user_id == str(chat)
            )
        )
    assert user_id is not None
    report = {s.key: s for s in await QuotaService(db).report(user_id, Tier.FREE)}
    return report[QuotaKey.SMALL].used


async def test_killed_mid_answer_and_restarted_at_once_nothing_is_stuck(
    tmp_path: Path, tg: FakeTelegram, llm: FakeLLM, db: Database, redis_url: str | None
) -> None:
    variables = _variables(tg, llm, db, redis_url)
    llm.script(_long_reply(20))
    async with bot_process(tmp_path, variables) as first:
        await _polling(tg, first)
        tg.send_text(ANN, "tell me a long story")
        await tg.wait_for(lambda: any("w3" in (m.text or "") for m in _bot_messages(tg, ANN)), 30)
        first.kill()
        killed = time.monotonic()
        await first.wait()
    # Ann does not wait for anything and writes again at once.
    tg.send_text(ANN, "are you there?")
    calls_before = len(tg.calls)
    async with bot_process(tmp_path, variables) as second:
        await _told_cut(tg, ANN)
        told = time.monotonic() - killed
        # The new process's first call to Telegram: it is up (imports, database).
        up = tg.calls[calls_before].time - killed
        await tg.wait_for(lambda: _final(tg, ANN, "Echo: are you there?"), 30)
        answered = time.monotonic() - killed
        # The cut answer's unit came back; the new answer's was taken.
        assert await _used(db, ANN, tg) == 1
        second.terminate()
        assert await second.wait() == 0, second.output
    assert "Traceback" not in second.output, second.output
    print(
        f"\nkilled -> restarted process up: {up:.2f} s, -> told: {told:.2f} s, "
        f"-> next message answered: {answered:.2f} s"
    )


async def test_a_second_process_notices_a_dead_first_one_on_its_own(
    tmp_path: Path, tg: FakeTelegram, llm: FakeLLM, db: Database, redis_url: str | None
) -> None:
    if redis_url is None:
        pytest.skip("several processes need Redis")
    variables = {
        **_variables(tg, llm, db, redis_url),
        "TELEGRAM_WEBHOOK_URL": "https://bot.example.test",
        "TELEGRAM_WEBHOOK_SECRET": SECRET,
    }
    llm.script(_long_reply(60))
    async with (
        bot_process(tmp_path, variables) as first,
        bot_process(tmp_path, variables) as second,
    ):
        for bot in (first, second):
            await _healthy(bot)
        tg.send_text(ANN, "tell me a long story")
        await tg.deliver_webhook(_hook(first), secret_token=SECRET)
        await tg.wait_for(lambda: any("w3" in (m.text or "") for m in _bot_messages(tg, ANN)), 30)
        first.kill()
        killed = time.monotonic()
        await first.wait()
        await _told_cut(tg, ANN, within=40)
        noticed = time.monotonic() - killed
        assert noticed < 30
        assert await _used(db, ANN, tg) == 0
        tg.send_text(ANN, "are you there?")
        await tg.deliver_webhook(_hook(second), secret_token=SECRET)
        await tg.wait_for(lambda: _final(tg, ANN, "Echo: are you there?"), 30)
        second.terminate()
        assert await second.wait() == 0, second.output
    print(f"\nkilled -> noticed by the other process and told: {noticed:.2f} s")


async def _told_cut(tg: FakeTelegram, chat: int, within: float = 30) -> None:
    """The answer a dead worker was streaming keeps the words the person saw, gets
    🔄, and a note below it says it was cut."""
    cut = await tg.wait_for(lambda: _final(tg, chat, "w0"), within)
    assert "w3" in (cut.text or "")
    note = await tg.wait_for(
        lambda: next((m for m in _bot_messages(tg, chat) if m.reply_to == cut.message_id), None),
        within,
    )
    assert note.text == CUT


def _hook(bot: BotProcess) -> str:
    return f"http://127.0.0.1:{bot.port}/telegram/webhook"


async def _healthy(bot: BotProcess) -> None:
    async def ok() -> bool:
        try:
            async with (
                aiohttp.ClientSession() as http,
                http.get(f"http://127.0.0.1:{bot.port}/health") as response,
            ):
                return response.status == 200
        except aiohttp.ClientError:
            return False

    async with asyncio.timeout(30):
        while not await ok():
            assert bot.process.returncode is None, bot.output
            await asyncio.sleep(0.1)


async def _two_streaming(tg: FakeTelegram, llm: FakeLLM, seconds: float) -> None:
    llm.script(_long_reply(seconds, "a"), _long_reply(seconds, "b"))
    tg.send_text(ANN, "first story")
    await tg.wait_for(lambda: bool(_bot_messages(tg, ANN)), 30)
    tg.send_text(BOB, "second story")
    await tg.wait_for(lambda: any("b2" in (m.text or "") for m in _bot_messages(tg, BOB)), 30)


async def test_sigterm_lets_streaming_answers_finish(
    tmp_path: Path, tg: FakeTelegram, llm: FakeLLM, db: Database, redis_url: str | None
) -> None:
    async with bot_process(tmp_path, _variables(tg, llm, db, redis_url)) as bot:
        await _polling(tg, bot)
        await _two_streaming(tg, llm, seconds=4)
        bot.terminate()
        await asyncio.sleep(0.5)
        tg.send_text(ANN, "sent while stopping")
        assert await bot.wait() == 0, bot.output
    for chat, word in ((ANN, "a"), (BOB, "b")):
        final = _final(tg, chat, f"{word}0")
        assert final is not None, bot.output
        assert (final.text or "").split() == [f"{word}{i}" for i in range(40)]
        assert await _used(db, chat, tg) == 1
    # What came after SIGTERM was not taken: it waits for the next process.
    assert any(u["message"]["text"] == "sent while stopping" for u in tg.pending_updates)
    assert "Traceback" not in bot.output, bot.output


async def test_sigterm_cuts_answers_that_outlast_the_grace(
    tmp_path: Path, tg: FakeTelegram, llm: FakeLLM, db: Database, redis_url: str | None
) -> None:
    variables = {**_variables(tg, llm, db, redis_url), "SHUTDOWN_GRACE": "1"}
    async with bot_process(tmp_path, variables) as bot:
        await _polling(tg, bot)
        await _two_streaming(tg, llm, seconds=60)
        bot.terminate()
        stopping = time.monotonic()
        assert await bot.wait() == 0, bot.output
        took = time.monotonic() - stopping
    for chat, word in ((ANN, "a"), (BOB, "b")):
        final = _final(tg, chat, f"{word}0")
        assert final is not None, bot.output
        assert (final.text or "").endswith(CUT)
        assert await _used(db, chat, tg) == 0
    assert took < 10, bot.output
    assert "Traceback" not in bot.output, bot.output
    print(f"\nSIGTERM with SHUTDOWN_GRACE=1 -> both answers cut, exit 0 after {took:.2f} s")
