"""Webhook mode with several processes: setWebhook is called once for all of them,
and an update is answered 200 only once it can no longer be lost."""

from __future__ import annotations

import asyncio
import random
from collections.abc import AsyncIterator

import pytest
from aiogram import Bot
from aiogram.client.session.aiohttp import AiohttpSession
from aiogram.client.telegram import TelegramAPIServer
from sqlalchemy import select

from bot.telegram.webhook_once import set_webhook_once
from core.db.engine import Database
from core.db.models import ChatMessage, MessageStatus
from core.services import Services
from tests.fakes.llm_server import FakeLLM, Reply
from tests.fakes.telegram_server import FakeTelegram
from tests.telegram.conftest import USER, WEBHOOK_SECRET, webhook_bot

URL = "https://bot.example.test/telegram/webhook"


@pytest.fixture
async def bots(redis_url: str | None) -> AsyncIterator[tuple[FakeTelegram, list[Bot]]]:
    if redis_url is None:
        pytest.skip("several processes need Redis (TEST_REDIS_URL)")
    # A bot id of its own: the fingerprint in Redis is per bot.
    token = f"{random.randint(10**8, 10**9 - 1)}:AAFakeTelegramTokenForTests_0123456789"
    async with FakeTelegram(token) as tg:
        made = [
            Bot(token, session=AiohttpSession(api=TelegramAPIServer.from_base(tg.url)))
            for _ in range(3)
        ]
        try:
            yield tg, made
        finally:
            for bot in made:
                await bot.session.close()


async def test_set_webhook_is_called_once_by_processes_starting_together(
    bots: tuple[FakeTelegram, list[Bot]], redis_url: str
) -> None:
    tg, made = bots
    allowed = ["message", "callback_query"]
    results = await asyncio.gather(
        *(set_webhook_once(bot, URL, "secret", allowed, redis_url) for bot in made)
    )
    assert sorted(results) == [False, False, True]
    assert len(tg.calls_of("setWebhook")) == 1
    assert tg.webhook_url == URL
    # A restart with the same settings leaves Telegram alone...
    assert not await set_webhook_once(made[0], URL, "secret", allowed, redis_url)
    # ...a new secret or new update types are set again, once...
    assert await set_webhook_once(made[1], URL, "new-secret", allowed, redis_url)
    assert not await set_webhook_once(made[2], URL, "new-secret", allowed, redis_url)
    assert tg.webhook_secret == "new-secret"
    # ...and so is a webhook someone removed behind the bot's back.
    await made[0].delete_webhook()
    assert await set_webhook_once(made[2], URL, "new-secret", allowed, redis_url)
    assert tg.webhook_url == URL
    assert len(tg.calls_of("setWebhook")) == 3


async def test_the_webhook_answers_once_the_prompt_is_recorded(
    services: Services, tg: FakeTelegram, fake_llm: FakeLLM, db: Database
) -> None:
    """A process killed after answering 200 but before recording the message would
    lose it (Telegram never delivers a 200'd update again): so when the 200 comes,
    the prompt and its streaming answer are in the database already."""
    fake_llm.script(Reply(text="slow answer", first_token_delay=3.0))
    async with webhook_bot(services, tg) as bot:
        tg.send_text(USER, "hello")
        result = await tg.deliver_webhook(bot.url, secret_token=WEBHOOK_SECRET)
        assert result.status == 200
        async with db.read() as session:
            rows = (await session.execute(select(ChatMessage.role, ChatMessage.status))).all()
        assert ("assistant", MessageStatus.STREAMING) in [(r.role, r.status) for r in rows]
        assert len(rows) == 2
        # ...and the answer still streams to its end after the 200.
        await tg.wait_for(
            lambda: any("slow answer" in (m.text or "") for m in tg.messages(USER)), 15
        )


async def test_other_updates_are_answered_when_handled(
    services: Services, tg: FakeTelegram
) -> None:
    async with webhook_bot(services, tg) as bot:
        tg.send_text(USER, "/help")
        result = await tg.deliver_webhook(bot.url, secret_token=WEBHOOK_SECRET)
        assert result.status == 200
        assert tg.calls_of("sendMessage", USER, ok=True)
