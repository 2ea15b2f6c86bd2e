"""Bytes that databases and platforms refuse, from the person and from the model,
never lose a message or an answer in Telegram (PostgreSQL refuses U+0000, SQLite
and UTF-8 refuse lone surrogates)."""

from __future__ import annotations

from core.text import REPLACEMENT as R
from tests.fakes.llm_server import Reply
from tests.telegram.conftest import USER, Harness


async def test_a_nul_and_a_lone_surrogate_from_the_person(app: Harness) -> None:
    app.tg.send_text(USER, "what does \x00 mean next to \ud800?")
    await app.answered()
    (answer,) = app.bot_messages()
    assert answer.text == f"Echo: what does {R} mean next to {R}?"
    assert app.llm.requests[0].body["messages"][-1]["content"] == (
        f"what does {R} mean next to {R}?"
    )


async def test_a_nul_and_lone_surrogates_from_the_model(app: Harness) -> None:
    app.llm.script(Reply(chunks=["x\x00y ", "\ud83d", "\ude00 lone ", "\udc00 end"]))
    app.tg.send_text(USER, "say something odd")
    await app.answered()
    (answer,) = app.bot_messages()
    assert answer.text == f"x{R}y 😀 lone {R} end"
    # The conversation goes on: nothing was left streaming.
    app.tg.send_text(USER, "and now?")
    await app.answered(2)
