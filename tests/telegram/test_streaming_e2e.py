"""A person chats with the bot: streamed answers as Telegram shows them."""

from __future__ import annotations

import asyncio
import contextlib
import itertools
from collections.abc import AsyncIterator
from typing import Any

import pytest

from tests.fakes.llm_server import Reply
from tests.telegram.conftest import EDIT_INTERVAL, USER, Harness


async def test_streamed_answer(app: Harness) -> None:
    chunks = [f"word{i} " for i in range(12)]
    app.llm.script(Reply(chunks=chunks, first_token_delay=0.3, chunk_delay=0.08))
    app.tg.send_text(USER, "Tell me a story")
    await app.answered()
    record = app.llm.requests[0]
    calls = app.tg.calls
    actions = [c for c in calls if c.method == "sendChatAction"]
    sends = [c for c in calls if c.method == "sendMessage" and c.ok]
    edits = [c for c in calls if c.method == "editMessageText" and c.ok]
    assert actions and actions[0].params["action"] == "typing"
    assert actions[0].time < sends[0].time
    # The first message goes out right after the first token: it is not held back.
    first_token_at = record.received_at + 0.3
    assert sends[0].time - first_token_at < 0.15
    assert sends[0].params["text"].startswith("word0")
    # Edits of the chat are never closer than the interval.
    times = [c.time for c in [sends[0], *edits]]
    assert all(b - a >= EDIT_INTERVAL * 0.95 for a, b in itertools.pairwise(times))
    # The final text is exactly the model's, with the buttons.
    (message,) = app.bot_messages()
    assert message.text == "".join(chunks).strip()
    assert any(b["callback_data"].startswith("a:r:") for b in message.buttons)
    assert not app.tg.floods


async def test_writing_again_as_soon_as_the_answer_is_final_is_not_queued(
    app: Harness, monkeypatch: pytest.MonkeyPatch
) -> None:
    """The person is free once the final text shows: the bookkeeping after it
    (recording the answer as shown) must not keep the next message in the queue
    with a "queued" notice, however slow the database is just then."""
    app.llm.script(Reply(chunks=["One ", "two ", "three"], chunk_delay=0.3))
    app.tg.send_text(USER, "first")

    def final() -> bool:
        return any(
            str(b.get("callback_data", "")).startswith("a:r:")
            for m in app.bot_messages()
            for b in m.buttons
        )

    await app.tg.wait_for(lambda: bool(app.bot_messages()))
    await asyncio.sleep(0.1)  # the first part's link is written
    # From here every write waits half a second before it begins.
    write = app.services.db.write

    @contextlib.asynccontextmanager
    async def slow_write() -> AsyncIterator[Any]:
        await asyncio.sleep(0.5)
        async with write() as session:
            yield session

    monkeypatch.setattr(app.services.db, "write", slow_write)
    await app.tg.wait_for(final, 10)
    await asyncio.sleep(0.03)
    app.tg.send_text(USER, "second")
    await asyncio.sleep(0.4)
    assert [m.text for m in app.bot_messages()] == ["One two three"]
    await app.answered(2)
