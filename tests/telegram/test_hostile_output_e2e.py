"""Model output that Telegram would refuse or drop: links Telegram does not accept,
raw HTML, and formatting refused for a reason nobody foresaw. Whatever the model
writes, the person gets the whole answer with its buttons, is charged once, and
the next message is answered at once.

The fake Bot API checks text_link URLs as Telegram does (a 400 "entity URL '...'
is invalid: ..." refuses the whole message), so a refused link shows up here as a
400 in `tg.calls` and an answer stuck under Stop.
"""

from __future__ import annotations

import logging
import time

import pytest

from core.db.models import ChatMessage
from core.services import Services
from core.tiers import Tier
from tests.fakes.llm_server import FakeLLM, Reply
from tests.fakes.telegram_server import FakeTelegram, StoredMessage
from tests.support.chat import all_rows
from tests.telegram.conftest import USER, Harness, start_harness, stop_harness


def _chunks(text: str, size: int = 4) -> list[str]:
    """The answer streamed a few characters at a time, so half-written links and
    tags are shown on the way."""
    return [text[i : i + size] for i in range(0, len(text), size)]


def _final(app: Harness) -> StoredMessage:
    (message,) = app.bot_messages()
    return message


def _regenerate_button(message: StoredMessage) -> bool:
    return any(str(b.get("callback_data", "")).startswith("a:r:") for b in message.buttons)


def _refused(tg: FakeTelegram) -> list[str]:
    return [f"{c.method}: {c.error}" for c in tg.calls if c.status == 400]


async def _answer_rows(app: Harness) -> list[ChatMessage]:
    user = await app.services.accounts.by_identity("telegram", str(USER))
    assert user is not None
    conversation = await app.services.conversations.current(user.id)
    assert conversation is not None
    rows = await all_rows(app.services.db, conversation.id)
    return [r for r in rows if r.role == "assistant"]


async def _units_used(app: Harness) -> int:
    user = await app.services.accounts.by_identity("telegram", str(USER))
    assert user is not None
    return sum(s.used for s in await app.services.quotas.report(user.id, Tier(user.tier)))


async def _settled_and_free(app: Harness) -> None:
    """The answer is complete and charged once, and the chat is free: the next
    message is answered at once."""
    (answer,) = await _answer_rows(app)
    assert answer.status == "complete"
    assert await _units_used(app) == 1
    started = time.monotonic()
    app.tg.send_text(USER, "thanks")
    await app.answered(2, within=5)
    assert time.monotonic() - started < 3
    assert [r.status for r in await _answer_rows(app)] == ["complete", "complete"]
    assert await _units_used(app) == 2


@pytest.mark.parametrize(
    ("answer", "shown"),
    [
        ("See [readme](README.md) first.", "See readme (README.md) first."),
        ("A [click me](javascript:alert(1)) trap.", "A click me trap."),
        ("Edit [config](/etc/app.conf) now.", "Edit config (/etc/app.conf) now."),
        ("Details in [the intro](#intro) above.", "Details in the intro above."),
        (
            "See [notes](docs/notes.md), [D](D:/a.md:1).",
            "See notes (docs/notes.md), D (D:/a.md:1).",
        ),
        ("Start [the app](http://localhost:8000).", "Start the app (http://localhost:8000)."),
        ("The chart: ![chart](./img/chart.png)", "The chart: 🖼chart (./img/chart.png)"),
        ("Raw: [x](data:text/html,<b>hi</b>), [f](ftp://x.org/f).", "Raw: x, f (ftp://x.org/f)."),
    ],
)
async def test_links_telegram_refuses_still_show_the_whole_answer(
    app: Harness, answer: str, shown: str
) -> None:
    app.llm.script(Reply(chunks=_chunks(answer), chunk_delay=0.01))
    app.tg.send_text(USER, "where is it?")
    await app.answered()
    message = _final(app)
    assert message.text == shown
    assert _regenerate_button(message)
    assert not [e for e in message.entities if e["type"] == "text_link"]
    assert _refused(app.tg) == []
    await _settled_and_free(app)


async def test_links_telegram_accepts_stay_links(app: Harness) -> None:
    answer = "Read [the docs](https://docs.example.org/guide), ask [Ann](tg://user?id=1001)."
    app.llm.script(Reply(chunks=_chunks(answer), chunk_delay=0.01))
    app.tg.send_text(USER, "links?")
    await app.answered()
    message = _final(app)
    assert message.text == "Read the docs, ask Ann."
    kinds = [(e["type"], e.get("url")) for e in message.entities]
    assert kinds == [("text_link", "https://docs.example.org/guide"), ("text_mention", None)]
    assert _refused(app.tg) == []
    await _settled_and_free(app)


async def test_raw_html_shows_literally(app: Harness) -> None:
    answer = (
        "Use the <br> tag for a line break, not `<p>`.\n\n"
        "<script>alert(1)</script> <b>bold?</b>\n\n"
        "Comments look like <!-- this -->, and **this** is bold."
    )
    app.llm.script(Reply(chunks=_chunks(answer), chunk_delay=0.01))
    app.tg.send_text(USER, "how do I break a line in HTML?")
    await app.answered()
    message = _final(app)
    assert message.text == (
        "Use the <br> tag for a line break, not <p>.\n\n"
        "<script>alert(1)</script> <b>bold?</b>\n\n"
        "Comments look like <!-- this -->, and this is bold."
    )
    text = message.text
    assert [
        (e["type"], text[e["offset"] : e["offset"] + e["length"]]) for e in message.entities
    ] == [
        ("code", "<p>"),
        ("bold", "this"),
    ]
    assert _regenerate_button(message)
    assert _refused(app.tg) == []
    await _settled_and_free(app)


async def test_formatting_refused_once_is_retried_plain_at_once(
    app: Harness, caplog: pytest.LogCaptureFixture
) -> None:
    app.tg.refuse_entities_once()
    # The whole text at once, the end of the stream a second later: the first post
    # shows it all and the final edit comes after it, however loaded the machine.
    app.llm.script(Reply(chunks=["A **bold** answer."], stall_after=1, stall_seconds=1.0))
    with caplog.at_level(logging.WARNING, logger="bot.telegram.sink"):
        app.tg.send_text(USER, "hi")
        await app.answered()
    # The first send was refused; the same text went out plain right after it.
    sends = app.tg.calls_of("sendMessage")
    assert [c.ok for c in sends[:2]] == [False, True]
    assert sends[0].params["text"] == sends[1].params["text"] == "A bold answer."
    assert sends[0].params.get("entities") and not sends[1].params.get("entities")
    assert sends[1].time - sends[0].time < 0.5
    refusals = [r for r in caplog.records if "refused the formatting" in r.getMessage()]
    assert len(refusals) == 1
    # Later calls carry the formatting again: the final message is bold, with buttons.
    message = _final(app)
    assert message.text == "A bold answer."
    assert [e["type"] for e in message.entities] == ["bold"]
    assert _regenerate_button(message)
    await _settled_and_free(app)


async def test_formatting_always_refused_still_delivers_the_answer(app: Harness) -> None:
    for _ in range(20):  # more than this answer makes calls: every formatted call fails
        app.tg.refuse_entities_once()
    answer = "Step **one**, then _two_, then [three](https://x.org)."
    app.llm.script(Reply(chunks=_chunks(answer, 8), chunk_delay=0.05))
    app.tg.send_text(USER, "steps?")
    await app.answered()
    message = _final(app)
    assert message.text == "Step one, then two, then three."
    assert message.entities == []
    assert _regenerate_button(message)
    # Each refused call was followed at once by the same call without entities.
    calls = [c for c in app.tg.calls if c.method in ("sendMessage", "editMessageText")]
    refused = [i for i, c in enumerate(calls) if not c.ok]
    assert refused
    for i in refused:
        retry = calls[i + 1]
        assert retry.ok and retry.method == calls[i].method
        assert retry.params["text"] == calls[i].params["text"]
        assert not retry.params.get("entities")
    assert not calls[-1].params.get("entities") and calls[-1].params.get("reply_markup")
    await _settled_and_free(app)


async def test_draft_mode_retries_refused_formatting_plain(
    services: Services, tg: FakeTelegram, fake_llm: FakeLLM
) -> None:
    harness = await start_harness(services, tg, fake_llm, stream_mode="draft")
    try:
        for _ in range(20):
            tg.refuse_entities_once()
        answer = "Drafted **bold** text with [a link](https://x.org) and <br>."
        fake_llm.script(Reply(chunks=_chunks(answer, 8), chunk_delay=0.05))
        tg.send_text(USER, "draft please")
        await harness.answered()
        drafts = tg.calls_of("sendMessageDraft")
        assert any(not c.ok for c in drafts) and drafts[-1].ok
        message = _final(harness)
        assert message.text == "Drafted bold text with a link and <br>."
        assert _regenerate_button(message)
        await _settled_and_free(harness)
    finally:
        await stop_harness(harness)
