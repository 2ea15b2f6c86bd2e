"""The Telegram bot on an OpenAI-compatible server of its own (Ollama-style ids, no
`vendor/` prefix, no prices): chat, the /model picker, /image; and `oneai run` on it."""

from __future__ import annotations

import asyncio
from collections.abc import AsyncIterator
from pathlib import Path

import pytest

from bot.startup import load_catalog
from core.config import LLMSettings
from core.db.engine import Database
from core.llm.client import LLMClient
from core.services import Services
from tests.conftest import make_settings
from tests.fakes.llm_server import FakeLLM, Reply, openai_models
from tests.fakes.telegram_server import FakeTelegram, StoredMessage
from tests.support.bot_process import bot_process, bot_variables
from tests.telegram.conftest import USER, Harness, until

MODELS = ("llama3.1:8b", "qwen2.5:7b", "deepseek-r1:14b")
GAP = 0.15


@pytest.fixture
async def services(db: Database, fake_llm: FakeLLM, tmp_path: Path) -> AsyncIterator[Services]:
    """The core services with the catalog `oneai run` builds from the server's /models."""
    fake_llm.models = openai_models(*MODELS)
    settings = make_settings(db.url, fake_llm.base_url)
    settings.llm = LLMSettings(
        base_url=fake_llm.base_url,
        large_models=["deepseek-r1:14b"],
        MODEL_CATALOG_CACHE_FILE=tmp_path / "models-cache.json",
        MODEL_CATALOG_REFRESH_HOURS=0,
    )
    catalog = await load_catalog(settings)
    llm = LLMClient(fake_llm.base_url, max_retries=0, first_token_timeout=5, idle_timeout=5)
    built = Services.build(settings, llm=llm, catalog=catalog, db=db)
    try:
        yield built
    finally:
        await llm.aclose()


async def say(app: Harness, text: str) -> StoredMessage:
    """The person sends `text`; the bot's next new message."""
    await asyncio.sleep(GAP)
    before = {m.message_id for m in app.bot_messages()}
    app.tg.send_text(USER, text)
    return await app.tg.wait_for(
        lambda: next((m for m in app.bot_messages() if m.message_id not in before), None)
    )


async def chat(app: Harness, text: str) -> str:
    """The person writes `text`; the final answer's text once it is complete."""
    await asyncio.sleep(GAP)
    finals = len(_finals(app))
    app.tg.send_text(USER, text)
    await app.answered(finals + 1)
    return _finals(app)[-1].text or ""


def _finals(app: Harness) -> list[StoredMessage]:
    return [
        m
        for m in app.bot_messages()
        if any(str(b.get("callback_data", "")).startswith("a:r:") for b in m.buttons)
    ]


def button(message: StoredMessage, text: str) -> str:
    for item in message.buttons:
        if str(item["text"]).removeprefix("✅ ") == text:
            return str(item["callback_data"])
    raise AssertionError(f"no button {text!r}: {[b['text'] for b in message.buttons]}")


async def test_a_generic_model_id_is_answered_and_picked(app: Harness) -> None:
    assert await chat(app, "hello there") == "Echo: hello there"
    assert app.llm.requests[-1].body["model"] == "llama3.1:8b"
    # The picker: ids as names, grouped as configured, every one free to pick.
    picker = await say(app, "/model")
    assert (picker.text or "").startswith("Current model: llama3.1:8b")
    labels = [str(b["text"]) for b in picker.buttons]
    assert labels == [
        "— Small messages —",
        "✅ llama3.1:8b",
        "qwen2.5:7b",
        "— Large messages —",
        "deepseek-r1:14b",
    ]
    edits = app.tg.message(USER, picker.message_id).edits
    await asyncio.sleep(GAP)
    query_id = app.tg.press(USER, picker.message_id, button(picker, "deepseek-r1:14b"))
    query = app.tg.callback_queries[query_id]
    await until(lambda: query.answered)
    assert query.text == "✅ Model: deepseek-r1:14b" and not query.show_alert
    await until(lambda: app.tg.message(USER, picker.message_id).edits > edits)
    assert await chat(app, "and now?") == "Echo: and now?"
    assert app.llm.requests[-1].body["model"] == "deepseek-r1:14b"
    # Far below the window a server like vLLM enforces (prompt + max_tokens).
    assert app.llm.requests[-1].body["max_tokens"] == 2048


async def test_image_generation_is_not_offered(app: Harness) -> None:
    sent = app.llm.requests_count
    reply = await say(app, "/image a red fox")
    assert "No image model" in (reply.text or "")
    assert app.llm.requests_count == sent


async def test_oneai_run_on_a_generic_server(tmp_path: Path) -> None:
    async with FakeTelegram(per_chat_interval=0.5) as tg, FakeLLM(default=Reply(text=None)) as llm:
        llm.models = openai_models(*MODELS)
        tg.user(42, first_name="Op")
        variables = bot_variables(tg, llm, f"sqlite+aiosqlite:///{tmp_path / 'bot.db'}")
        variables["DEFAULT_MODEL"] = "qwen2.5:7b"
        async with bot_process(tmp_path, variables) as bot:
            await tg.wait_for(lambda: tg.waiting_pollers > 0, timeout=30)
            tg.send_text(42, "Hello from Ollama land")
            await tg.wait_for(
                lambda: any(
                    m.text == "Echo: Hello from Ollama land" and m.buttons
                    for m in tg.messages(42, from_bot=True)
                ),
                timeout=30,
            )
            assert llm.requests[-1].body["model"] == "qwen2.5:7b"
            bot.terminate()
            assert await bot.wait() == 0, bot.output
        assert "Traceback" not in bot.output
        assert (tmp_path / ".oneai-models-cache.json").exists()
