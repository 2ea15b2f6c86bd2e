"""The real aiogram polling loop against the fake Bot API server, with the core
services on the test database and the fake LLM, all over real HTTP."""

from __future__ import annotations

import asyncio
import contextlib
from collections.abc import AsyncIterator
from dataclasses import dataclass
from typing import Any

import pytest
from aiogram import Bot, Dispatcher
from aiogram.client.session.aiohttp import AiohttpSession
from aiogram.client.telegram import TelegramAPIServer
from aiohttp import web
from pydantic import SecretStr

from bot.http import build_app
from bot.http_server import serve_http
from bot.telegram import runner
from bot.telegram.answerer import Answerer
from bot.telegram.factory import build_dispatcher
from core.config import HttpSettings, Settings, TelegramSettings
from core.services import Services
from tests.fakes.llm_server import FakeLLM
from tests.fakes.telegram_server import FakeTelegram, StoredMessage
from tests.support.process import free_port
from tests.support.wait import until as until  # re-exported for the e2e tests

EDIT_INTERVAL = 0.2
USER = 1001
WEBHOOK_SECRET = "s3cret"


@dataclass
class Harness:
    tg: FakeTelegram
    llm: FakeLLM
    bot: Bot
    dispatcher: Dispatcher
    answerer: Answerer
    services: Services

    def bot_messages(self, chat_id: int = USER) -> list[StoredMessage]:
        return [m for m in self.tg.messages(chat_id, from_bot=True) if not m.deleted]

    async def answered(self, count: int = 1, chat_id: int = USER, within: float = 10) -> None:
        """Wait until `count` answers have their final buttons (or a final note)."""

        def done() -> bool:
            finals = [
                m
                for m in self.bot_messages(chat_id)
                if any(b.get("callback_data", "").startswith("a:r:") for b in m.buttons)
            ]
            return len(finals) >= count and not self.answerer._busy

        await until(done, within)

    def button(self, message: StoredMessage, prefix: str) -> str:
        for button in message.buttons:
            data = str(button.get("callback_data", ""))
            if data.startswith(prefix):
                return data
        raise AssertionError(f"no button {prefix!r} on message {message.message_id}")


def telegram_settings(tg: FakeTelegram, **overrides: Any) -> TelegramSettings:
    values: dict[str, Any] = {
        "bot_token": SecretStr(tg.token),
        "api_url": tg.url,
        "edit_interval": EDIT_INTERVAL,
        "global_edits_per_second": 200.0,
    }
    values.update(overrides)
    return TelegramSettings(**values)


@pytest.fixture
async def tg() -> AsyncIterator[FakeTelegram]:
    # Telegram's own per-chat limit sits below our edit interval: a bot that keeps
    # to its interval never sees a 429.
    async with FakeTelegram(per_chat_interval=EDIT_INTERVAL / 2, global_per_second=None) as fake:
        fake.user(USER, first_name="Ann", language_code="en")
        yield fake


async def start_harness(
    services: Services, tg: FakeTelegram, fake_llm: FakeLLM, **settings: Any
) -> Harness:
    bot = Bot(tg.token, session=AiohttpSession(api=TelegramAPIServer.from_base(tg.url)))
    dispatcher, answerer = build_dispatcher(
        services, bot, settings=telegram_settings(tg, **settings)
    )
    harness = Harness(tg, fake_llm, bot, dispatcher, answerer, services)
    task = asyncio.create_task(
        dispatcher.start_polling(bot, handle_signals=False, polling_timeout=1)
    )
    harness._task = task  # type: ignore[attr-defined]
    await tg.wait_for(lambda: tg.waiting_pollers > 0 or bool(tg.calls_of("getUpdates")))
    return harness


async def stop_harness(harness: Harness) -> None:
    await harness.dispatcher.stop_polling()
    task: asyncio.Task[None] = harness._task  # type: ignore[attr-defined]
    await asyncio.wait_for(task, 10)
    await harness.bot.session.close()


@pytest.fixture
async def app(services: Services, tg: FakeTelegram, fake_llm: FakeLLM) -> AsyncIterator[Harness]:
    harness = await start_harness(services, tg, fake_llm)
    try:
        yield harness
    finally:
        await stop_harness(harness)


@dataclass
class WebhookBot:
    url: str
    port: int
    platform: runner.TelegramPlatform


@contextlib.asynccontextmanager
async def webhook_bot(services: Services, tg: FakeTelegram) -> AsyncIterator[WebhookBot]:
    """The bot in webhook mode on `oneai run`'s HTTP server (its app, guard and
    limits), checking WEBHOOK_SECRET."""
    settings = services.settings
    services.settings = Settings(
        db=settings.db,
        llm=settings.llm,
        limits=settings.limits,
        telegram=telegram_settings(
            tg, webhook_url="https://bot.example.test", webhook_secret=WEBHOOK_SECRET
        ),
    )
    app = build_app(services)
    platform = runner.setup(services, app)
    http_runner = web.AppRunner(app)
    port = free_port()
    await serve_http(http_runner, HttpSettings(host="127.0.0.1", port=port))
    task = asyncio.create_task(platform.serve())
    try:
        await tg.wait_for(lambda: bool(tg.webhook_url))
        yield WebhookBot(
            f"http://127.0.0.1:{port}{services.settings.telegram.webhook_path}", port, platform
        )
    finally:
        await platform.stop_intake()
        await asyncio.wait_for(task, 10)
        await platform.close()
        await http_runner.cleanup()
