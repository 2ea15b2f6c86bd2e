"""Web search end to end on Telegram: /search and the /settings toggle send the
request with OpenRouter's web plugin, the sources come back as numbered links, a
search answer takes a `web_search` unit, and a server without search says so."""

from __future__ import annotations

import asyncio
from collections.abc import AsyncIterator

import pytest
from sqlalchemy import select, update

from core.conversations.export import export_markdown
from core.db.engine import Database
from core.db.models import ChatMessage, UsageQuota
from core.llm.client import LLMClient
from core.services import Services
from core.tiers import QuotaKey, Tier
from tests.conftest import make_settings
from tests.fakes.llm_server import FakeLLM, Reply, url_citation
from tests.fakes.telegram_server import FakeTelegram, StoredMessage
from tests.telegram.conftest import USER, Harness, start_harness, stop_harness, until

GAP = 0.15
WEB = [{"id": "web"}]
SOURCES = [
    url_citation("https://docs.python.org/3.13/whatsnew/3.13.html", "What's New In Python 3.13"),
    url_citation("https://docs.python.org/3.13/whatsnew/3.13.html", "the same page again"),
    url_citation("javascript:alert(1)", "click me"),
    url_citation("https://peps.python.org/pep-0744/", "PEP 744 – JIT Compilation"),
]


@pytest.fixture
async def search_services(db: Database, fake_llm: FakeLLM) -> AsyncIterator[Services]:
    """The core services with web search on (the fake stands in for OpenRouter)."""
    settings = make_settings(db.url, fake_llm.base_url)
    settings.llm.web_search = "on"
    llm = LLMClient(
        fake_llm.base_url, "test-key", max_retries=0, first_token_timeout=5, idle_timeout=5
    )
    built = Services.build(settings, llm=llm, db=db)
    try:
        yield built
    finally:
        await llm.aclose()


@pytest.fixture
async def search_app(
    search_services: Services, tg: FakeTelegram, fake_llm: FakeLLM
) -> AsyncIterator[Harness]:
    harness = await start_harness(search_services, tg, fake_llm)
    try:
        yield harness
    finally:
        await stop_harness(harness)


async def _answers(app: Harness) -> list[ChatMessage]:
    """Every answer row, oldest first."""
    async with app.services.db.read() as session:
        query = select(ChatMessage).where(ChatMessage.role == "assistant")
        return list((await session.scalars(query.order_by(ChatMessage.created_at))).all())


def _finals(app: Harness) -> list[StoredMessage]:
    return [
        m
        for m in app.bot_messages()
        if any(str(b.get("callback_data", "")).startswith("a:r:") for b in m.buttons)
    ]


async def _ask(app: Harness, text: str) -> StoredMessage:
    """The person sends `text`; the finished answer that carries the buttons."""
    await asyncio.sleep(GAP)
    count = len(_finals(app))
    app.tg.send_text(USER, text)
    await app.answered(count + 1)
    return _finals(app)[-1]


async def _reply(app: Harness, text: str) -> StoredMessage:
    """The person sends `text`; the bot's next new message."""
    await asyncio.sleep(GAP)
    before = {m.message_id for m in app.bot_messages()}
    app.tg.send_text(USER, text)
    return await app.tg.wait_for(
        lambda: next((m for m in app.bot_messages() if m.message_id not in before), None)
    )


def _links(message: StoredMessage) -> list[tuple[str, str]]:
    """(linked text, URL) of each text_link entity of the message."""
    text = message.text or ""
    units = text.encode("utf-16-le")
    found = []
    for entity in message.entities:
        if entity["type"] == "text_link":
            start, end = entity["offset"] * 2, (entity["offset"] + entity["length"]) * 2
            found.append((units[start:end].decode("utf-16-le"), entity["url"]))
    return found


async def _press(app: Harness, message: StoredMessage, data: str) -> None:
    await asyncio.sleep(GAP)
    query_id = app.tg.press(message.chat_id, message.message_id, data)
    await until(lambda: app.tg.callback_queries[query_id].answered)


async def test_search_renders_its_sources_as_numbered_links(search_app: Harness) -> None:
    app = search_app
    app.llm.script(Reply(text="Python 3.13 adds an experimental JIT [1][2].", annotations=SOURCES))
    answer = await _ask(app, "/search what is new in Python 3.13")

    (request,) = app.llm.requests
    assert request.body["plugins"] == WEB
    assert request.body["messages"][-1]["content"] == "what is new in Python 3.13"
    text = answer.text or ""
    assert text.startswith("Python 3.13 adds an experimental JIT")
    # Deduplicated by URL, the javascript: one dropped, numbered in order.
    assert "[1] What's New In Python 3.13\n[2] PEP 744 – JIT Compilation" in text
    assert "click me" not in text and "the same page again" not in text
    assert _links(answer) == [
        ("What's New In Python 3.13", "https://docs.python.org/3.13/whatsnew/3.13.html"),
        ("PEP 744 – JIT Compilation", "https://peps.python.org/pep-0744/"),
    ]

    # Stored on the answer, charged to web_search (not to the model's messages), exported.
    (row,) = await _answers(app)
    assert row.quota_key == QuotaKey.WEB_SEARCH.value
    assert [c["title"] for c in row.meta["citations"]] == [
        "What's New In Python 3.13",
        "PEP 744 – JIT Compilation",
    ]
    used = {
        status.key: status.used
        for status in await app.services.quotas.report(row.user_id, Tier.FREE)
    }
    assert used[QuotaKey.WEB_SEARCH] == 1 and used[QuotaKey.SMALL] == 0
    exported = await export_markdown(app.services.db, row.user_id, row.conversation_id)
    assert "1. [What's New In Python 3.13](https://docs.python.org/3.13/whatsnew/3.13.html)" in (
        exported
    )
    usage = await _reply(app, "/usage")
    assert "Web searches" in (usage.text or "")


async def test_paging_back_shows_that_revisions_sources(search_app: Harness) -> None:
    app = search_app
    app.llm.script(
        Reply(text="First take.", annotations=[url_citation("https://a.example.org/", "Alpha")]),
        Reply(text="Second take.", annotations=[url_citation("https://b.example.org/", "Beta")]),
    )
    first = await _ask(app, "/search compare")
    await _press(app, first, app.button(first, "a:r:"))
    await until(lambda: "Second take." in (app.tg.message(USER, first.message_id).text or ""))
    await app.answered()
    await until(
        lambda: any(b.get("text") == "◀" for b in app.tg.message(USER, first.message_id).buttons)
    )
    # The regenerated search answer searched again.
    assert app.llm.requests[1].body["plugins"] == WEB
    second = app.tg.message(USER, first.message_id)
    assert _links(second) == [("Beta", "https://b.example.org/")]

    back = next(b for b in second.buttons if b.get("text") == "◀")
    await _press(app, second, str(back["callback_data"]))
    await until(lambda: "First take." in (app.tg.message(USER, first.message_id).text or ""))
    assert _links(app.tg.message(USER, first.message_id)) == [("Alpha", "https://a.example.org/")]


async def test_an_edited_search_question_searches_again(search_app: Harness) -> None:
    app = search_app
    app.llm.script(
        Reply(text="About cats.", annotations=[url_citation("https://cats.example.org/", "Cats")]),
        Reply(text="About dogs.", annotations=[url_citation("https://dogs.example.org/", "Dogs")]),
    )
    await asyncio.sleep(GAP)
    asked = app.tg.send_text(USER, "/search cats")
    await app.answered(1)
    app.tg.edit_text(USER, asked, "/search dogs")
    await app.llm.wait_for_requests(2)
    await until(lambda: any("About dogs." in (m.text or "") for m in app.bot_messages()))
    await app.answered(1)
    second = app.llm.requests[1].body
    assert second["plugins"] == WEB
    assert second["messages"][-1]["content"] == "dogs"
    answer = next(m for m in app.bot_messages() if "About dogs." in (m.text or ""))
    await until(lambda: _links(app.tg.message(USER, answer.message_id)) != [])
    assert _links(app.tg.message(USER, answer.message_id)) == [
        ("Dogs", "https://dogs.example.org/")
    ]


async def test_a_long_answer_gets_its_sources_in_its_last_message(search_app: Harness) -> None:
    app = search_app
    long_text = " ".join(f"word{i}" for i in range(900))  # past 4096 characters
    hostile = [url_citation(f"https://site{i}.example.com/p", "T" * 5000) for i in range(500)]
    hostile += [url_citation("javascript:alert(1)", "x"), url_citation("https://", "empty host")]
    app.llm.script(Reply(text=long_text, annotations=hostile))
    answer = await _ask(app, "/search a long one")
    messages = app.bot_messages()
    assert len(messages) >= 2
    assert all(len((m.text or "").encode("utf-16-le")) // 2 <= 4096 for m in messages)
    links = _links(answer)
    assert links and links[0][1] == "https://site0.example.com/p"
    assert all(url.startswith("https://site") for _, url in links)
    assert all(len(title) <= 120 for title, _ in links)
    assert len(links) <= 20


async def test_the_settings_toggle_makes_the_next_message_search(search_app: Harness) -> None:
    app = search_app
    await _ask(app, "hello")
    assert "plugins" not in app.llm.requests[0].body

    settings = await _reply(app, "/settings")
    toggle = next(b for b in settings.buttons if str(b.get("callback_data")).startswith("st:w"))
    assert toggle["text"] == "🔎 Web search: off"
    await _press(app, settings, str(toggle["callback_data"]))
    await until(
        lambda: any(
            b.get("text") == "🔎 Web search: on"
            for b in app.tg.message(USER, settings.message_id).buttons
        )
    )

    app.llm.script(Reply(text="Found it.", annotations=[url_citation("https://x.example.net/")]))
    answer = await _ask(app, "and now?")
    assert app.llm.requests[1].body["plugins"] == WEB
    # No title: the host stands in for it.
    assert _links(answer) == [("x.example.net", "https://x.example.net/")]


async def test_no_web_search_units_left_means_a_clear_reply_and_no_llm_call(
    search_app: Harness,
) -> None:
    app = search_app
    await _ask(app, "/search first")
    async with app.services.db.write() as session:
        await session.execute(
            update(UsageQuota)
            .where(UsageQuota.quota_key == QuotaKey.WEB_SEARCH.value)
            .values(quota_limit=1)
        )
    reply = await _reply(app, "/search second")
    assert "reset" in (reply.text or "")
    assert app.llm.requests_count == 1
    assert len(await _answers(app)) == 1
    # Plain messages still answer: they take the model's own units.
    await _ask(app, "no search")
    assert app.llm.requests_count == 2


async def test_other_servers_say_search_is_not_available(app: Harness) -> None:
    reply = await _reply(app, "/search anything")
    assert reply.text == "Web search is not available on this server."
    assert app.llm.requests_count == 0
    settings = await _reply(app, "/settings")
    assert not any(str(b.get("callback_data")).startswith("st:w") for b in settings.buttons)


async def test_search_without_a_question_explains_itself(search_app: Harness) -> None:
    reply = await _reply(search_app, "/search")
    assert (reply.text or "").startswith("Usage: /search")
    assert search_app.llm.requests_count == 0
