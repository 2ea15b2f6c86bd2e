"""Webhook mode, draft streaming, and one generation at a time per person."""

from __future__ import annotations

from core.services import Services
from tests.fakes.llm_server import FakeLLM, Reply
from tests.fakes.telegram_server import FakeTelegram
from tests.telegram.conftest import (
    USER,
    WEBHOOK_SECRET,
    Harness,
    start_harness,
    stop_harness,
    until,
    webhook_bot,
)


async def test_webhook_mode_checks_the_secret(
    services: Services, tg: FakeTelegram, fake_llm: FakeLLM
) -> None:
    async with webhook_bot(services, tg) as bot:
        assert tg.webhook_url == "https://bot.example.test/telegram/webhook"
        assert tg.webhook_secret == WEBHOOK_SECRET
        url = bot.url
        tg.send_text(USER, "via webhook")
        forged = await tg.deliver_webhook(url, secret_token="wrong")
        assert forged.status == 401
        unsigned = await tg.deliver_webhook(url)
        assert unsigned.status == 401
        assert fake_llm.requests_count == 0
        accepted = await tg.deliver_webhook(url, secret_token=WEBHOOK_SECRET)
        assert accepted.status == 200
        await until(lambda: any(m.buttons for m in tg.messages(USER, from_bot=True)))
        assert fake_llm.requests[0].body["messages"][-1]["content"] == "via webhook"


async def test_draft_mode_streams_a_draft_then_sends_the_message(
    services: Services, tg: FakeTelegram, fake_llm: FakeLLM
) -> None:
    harness = await start_harness(services, tg, fake_llm, stream_mode="draft")
    try:
        chunks = [f"d{i} " for i in range(10)]
        fake_llm.script(Reply(chunks=chunks, chunk_delay=0.08))
        tg.send_text(USER, "draft please")
        await harness.answered()
        drafts = tg.calls_of("sendMessageDraft")
        assert drafts, "the answer streamed through drafts"
        assert not tg.calls_of("editMessageText")
        (message,) = harness.bot_messages()
        assert message.text == "".join(chunks).strip()
        assert message.buttons
        assert tg.calls_of("sendMessage")[0].time > drafts[0].time
    finally:
        await stop_harness(harness)


async def test_one_message_waits_while_an_answer_streams_and_others_are_refused(
    app: Harness,
) -> None:
    app.llm.script(
        Reply(chunks=[f"a{i} " for i in range(10)], chunk_delay=0.1),
        Reply(text="Second answer."),
    )
    app.tg.send_text(USER, "first")
    await app.llm.wait_for_requests(1)
    app.tg.send_text(USER, "second")  # queued
    # Updates are handled concurrently: "third" goes once "second" holds the queue.
    await until(lambda: any((m.text or "").startswith("⏳ Queued") for m in app.bot_messages()))
    app.tg.send_text(USER, "third")  # refused: the queue holds one
    await app.answered(2)
    texts = [m.text or "" for m in app.bot_messages()]
    assert any(t.startswith("⏳ Queued") for t in texts)
    assert any(t.startswith("⏳ Still answering") for t in texts)
    answers = [t for t in texts if t.startswith("a0") or t == "Second answer."]
    assert answers[-1] == "Second answer."
    # Never two answers at once: the second request started after the first ended.
    first, second = app.llm.requests[:2]
    assert second.received_at >= (await first.wait_finished()).received_at
    assert app.llm.requests_count == 2
    assert second.body["messages"][-1]["content"] == "second"
