"""The Telegram webhook on the production HTTP server: correctly signed bodies that
are absurd get a 4xx (never a 500), and a valid update still works after them."""

from __future__ import annotations

import json
from collections.abc import AsyncIterator
from dataclasses import dataclass

import aiohttp
import pytest

from core.services import Services
from tests.fakes.llm_server import FakeLLM
from tests.fakes.telegram_server import FakeTelegram
from tests.support.raw_http import chunked, exchange, request_head
from tests.telegram.conftest import USER, WEBHOOK_SECRET, until, webhook_bot

SECRET = WEBHOOK_SECRET
PATH = "/telegram/webhook"
SIGNED = {"Content-Type": "application/json", "X-Telegram-Bot-Api-Secret-Token": SECRET}


@dataclass
class Webhook:
    port: int
    url: str
    http: aiohttp.ClientSession

    async def post(self, body: bytes, headers: dict[str, str] = SIGNED) -> tuple[int, str]:
        async with self.http.post(self.url, data=body, headers=headers) as response:
            return response.status, await response.text()


@pytest.fixture
async def webhook(services: Services, tg: FakeTelegram) -> AsyncIterator[Webhook]:
    """`oneai run`'s HTTP server (app, guard, limits) with Telegram in webhook mode."""
    async with (
        webhook_bot(services, tg) as bot,
        aiohttp.ClientSession(timeout=aiohttp.ClientTimeout(total=10)) as http,
    ):
        yield Webhook(bot.port, bot.url, http)


def update(text: str, update_id: int | str = 1) -> str:
    """A message update, its update_id spliced in as raw JSON text."""
    message = {
        "message_id": 1,
        "date": 1_700_000_000,
        "chat": {"id": USER, "type": "private"},
        "from": {"id": USER, "is_bot": False, "first_name": "Ann"},
        "text": text,
    }
    return f'{{"update_id": {update_id}, "message": {json.dumps(message)}}}'


async def test_absurd_signed_bodies_are_400_and_the_next_update_works(
    webhook: Webhook, tg: FakeTelegram, fake_llm: FakeLLM
) -> None:
    deep = b'{"update_id": 1, "x": ' + b"[" * 100_000 + b"]" * 100_000 + b"}"
    status, body = await webhook.post(deep)
    assert status == 400, body
    assert "nested" in body

    huge = update("hi", update_id="1" * 100_000).encode()
    status, body = await webhook.post(huge)
    assert status == 400, body
    assert "number" in body

    for bad in (b"\xff\xfe{}", b"[]", b'{"update_id": "one"}', b"{"):
        status, body = await webhook.post(bad)
        assert status == 400, (bad, status, body)

    # The secret is checked before the body is looked at.
    status, _ = await webhook.post(deep, headers={"Content-Type": "application/json"})
    assert status == 401

    # 2 GB announced, two bytes sent: 413 without waiting for the rest.
    claimed = request_head("POST", PATH, {**SIGNED, "Content-Length": "2000000000"})
    assert (await exchange(webhook.port, claimed + b"{}", within=3)).status == 413
    # A chunked body that grows past the limit.
    big = update("x" * 1_100_000).encode()
    streamed = request_head("POST", PATH, {**SIGNED, "Transfer-Encoding": "chunked"})
    assert (await exchange(webhook.port, streamed + chunked(big))).status == 413
    assert fake_llm.requests_count == 0

    # Valid updates still work: one in chunks (read whole by the size check first)...
    tg.send_text(USER, "chunked")
    first = tg.pending_updates[-1]
    head = request_head("POST", PATH, {**SIGNED, "Transfer-Encoding": "chunked"})
    answer = await exchange(webhook.port, head + chunked(json.dumps(first).encode(), size=100))
    assert answer.status == 200, answer.body
    await until(lambda: fake_llm.requests_count == 1)
    # ...and one as Telegram sends it.
    tg.send_text(USER, "still here")
    second = tg.pending_updates[-1]["update_id"]
    accepted = await tg.deliver_webhook(webhook.url, second, secret_token=SECRET)
    assert accepted.status == 200
    await until(lambda: len([m for m in tg.messages(USER, from_bot=True) if m.buttons]) == 2)
    contents = [r.body["messages"][-1]["content"] for r in fake_llm.requests]
    assert contents == ["chunked", "still here"]
