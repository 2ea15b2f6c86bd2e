"""Updates are taken once and never lost: the same update delivered twice gets one
answer and one charge; a dropped Redis connection or a database fault while an
update is handled still leaves the person with a word; notes and replies survive
flood limits."""

from __future__ import annotations

import asyncio
import logging
from typing import Any

import pytest
from redis.asyncio import Redis
from sqlalchemy import text

from bot.telegram.factory import build_storage
from core.services import Services
from core.tiers import QuotaKey, Tier
from tests.fakes.llm_server import FakeLLM
from tests.fakes.telegram_server import TINY_PNG, FakeTelegram
from tests.telegram.conftest import (
    USER,
    WEBHOOK_SECRET,
    Harness,
    start_harness,
    stop_harness,
    until,
    webhook_bot,
)


async def _used(services: Services) -> int:
    user = await services.accounts.by_identity("telegram", str(USER))
    assert user is not None
    report = {s.key: s for s in await services.quotas.report(user.id, Tier.FREE)}
    return report[QuotaKey.SMALL].used


def _answers(tg: FakeTelegram, text: str) -> list[Any]:
    return [m for m in tg.messages(USER, from_bot=True) if text in (m.text or "")]


async def test_a_webhook_update_redelivered_after_a_slow_answer_is_answered_once(
    services: Services, tg: FakeTelegram, fake_llm: FakeLLM
) -> None:
    async with webhook_bot(services, tg) as bot:
        tg.send_text(USER, "only once")
        update = tg.pending_updates[0]
        delivered = await tg.deliver_webhook(bot.url, update, secret_token=WEBHOOK_SECRET)
        assert delivered.status == 200
        await until(lambda: any(m.buttons for m in _answers(tg, "Echo: only once")))
        # Telegram did not see the 200 in time and delivers it again.
        again = await tg.deliver_webhook(bot.url, update, secret_token=WEBHOOK_SECRET)
        assert again.status == 200
        await asyncio.sleep(0.5)
        assert len(_answers(tg, "Echo: only once")) == 1
        assert fake_llm.requests_count == 1
        assert await _used(services) == 1


async def test_an_update_a_second_process_gets_again_is_answered_once(
    services: Services, tg: FakeTelegram, fake_llm: FakeLLM
) -> None:
    """A poller that answered an update died before confirming it; the process that
    takes over gets it again (and does not share the first one's memory)."""
    first = await start_harness(services, tg, fake_llm)
    tg.send_text(USER, "hello there")
    await first.answered()
    update = tg.updates[-1]
    await stop_harness(first)
    other = Services.build(services.settings, llm=services.llm, db=services.db)
    second = await start_harness(other, tg, fake_llm)
    try:
        tg.inject(dict(update))  # the same update id and message
        await until(lambda: not tg.pending_updates)
        await asyncio.sleep(0.5)
        assert len(_answers(tg, "Echo: hello there")) == 1
        assert fake_llm.requests_count == 1
        assert await _used(services) == 1
        # A new message still gets its answer.
        tg.send_text(USER, "and again")
        await until(lambda: any(m.buttons for m in _answers(tg, "Echo: and again")))
    finally:
        await stop_harness(second)


async def test_a_reset_redis_connection_does_not_lose_the_update(
    services: Services, tg: FakeTelegram, fake_llm: FakeLLM, redis_url: str | None
) -> None:
    if redis_url is None:
        pytest.skip("needs TEST_REDIS_URL")
    harness = await start_harness(services, tg, fake_llm)
    storage = build_storage(redis_url)
    harness.dispatcher.fsm.storage = storage
    admin = Redis.from_url(redis_url)
    try:
        tg.send_text(USER, "before")
        await harness.answered()
        # Redis drops every client connection (a restart, a proxy resetting them).
        await admin.client_kill_filter(_type="normal", skipme=True)
        tg.send_text(USER, "after the reset")
        await until(lambda: any(m.buttons for m in _answers(tg, "Echo: after the reset")))
    finally:
        await admin.aclose()
        await storage.close()
        await stop_harness(harness)


async def test_a_database_fault_before_the_answer_gets_the_person_a_reply(
    app: Harness, caplog: pytest.LogCaptureFixture
) -> None:
    # The table the identity middleware reads is gone for a moment.
    async with app.services.db.engine.begin() as conn:
        await conn.execute(text("ALTER TABLE identities RENAME TO identities_away"))
    try:
        app.tg.send_text(USER, "are you there?")
        reply = await app.tg.wait_for(
            lambda: next(iter(app.tg.messages(USER, from_bot=True)), None)
        )
    finally:
        async with app.services.db.engine.begin() as conn:
            await conn.execute(text("ALTER TABLE identities_away RENAME TO identities"))
    assert reply.text == (
        "⚠️ Something went wrong and your message was not answered. Please send it again."
    )
    assert "update" in caplog.text and "failed" in caplog.text  # operators see why
    assert app.llm.requests_count == 0
    app.tg.send_text(USER, "are you there?")
    await app.answered()


async def test_the_too_fast_note_waits_out_a_flood_limit(app: Harness) -> None:
    for _ in range(20):
        app.tg.send_text(USER, "/help")
        await asyncio.sleep(0.12)  # the replies keep within the chat's limit
    await until(lambda: len(app.tg.messages(USER, from_bot=True)) == 20)
    app.tg.flood_storm("sendMessage", 1)
    app.tg.send_text(USER, "/help")
    note = "You're sending messages too fast. Please wait a moment."
    await until(lambda: any(m.text == note for m in app.tg.messages(USER, from_bot=True)), 10)
    assert app.tg.floods  # it met the limit and waited


def _big_png(size: int) -> bytes:
    """A valid PNG header padded past the Bot API's 20 MB download limit."""
    return TINY_PNG + b"\0" * size


async def test_a_photo_that_cannot_be_fetched_gets_a_reply(
    app: Harness, caplog: pytest.LogCaptureFixture
) -> None:
    caplog.set_level(logging.INFO)
    app.tg.send_photo(USER, "what is this?", data=_big_png(21 * 1024 * 1024))
    reply = await app.tg.wait_for(lambda: next(iter(app.tg.messages(USER, from_bot=True)), None))
    assert reply.text == "I could not download that photo. Please send it again."
    assert "Traceback" not in caplog.text
    assert app.llm.requests_count == 0
