"""Payments over real HTTP: the fake provider APIs, the bot's webhook server on
127.0.0.1, and row counts of everything a payment can write."""

from __future__ import annotations

import contextlib
from collections.abc import AsyncIterator
from dataclasses import dataclass
from typing import Any, Protocol

import aiohttp
import pytest
from aiohttp import web
from pydantic import SecretStr
from sqlalchemy import func, select

from bot.http import build_app
from core.config import (
    DatabaseSettings,
    LLMSettings,
    PaymentSettings,
    RazorpaySettings,
    Settings,
    YooKassaSettings,
)
from core.db.engine import Database
from core.db.models import (
    OutboxMessage,
    Payment,
    PaymentOrder,
    Subscription,
    SubscriptionHistory,
    WebhookEvent,
)
from core.db.models.base import Base
from core.llm.client import LLMClient
from core.services import Services
from payments.service import Payments
from tests.fakes.llm_server import FakeLLM
from tests.fakes.razorpay_server import FakeRazorpay
from tests.fakes.yookassa_server import FakeYooKassa

RZP_KEY_ID = "rzp_test"
RZP_KEY_SECRET = "s"
RZP_WEBHOOK_SECRET = "whsec"
RZP_PLAN_ID = "plan_pro"
YOO_SHOP_ID = "1"
YOO_SECRET = "k"

# What a payment may write; an ignored or rejected webhook writes none of these.
EFFECT_TABLES: dict[str, type[Base]] = {
    "payments": Payment,
    "subscriptions": Subscription,
    "subscription_history": SubscriptionHistory,
    "outbox": OutboxMessage,
    "webhook_events": WebhookEvent,
}


async def row_counts(db: Database) -> dict[str, int]:
    counts: dict[str, int] = {}
    async with db.read() as session:
        tables: dict[str, type[Base]] = {**EFFECT_TABLES, "payment_orders": PaymentOrder}
        for name, model in tables.items():
            counts[name] = int(await session.scalar(select(func.count()).select_from(model)) or 0)
    return counts


NOTHING_WRITTEN = dict.fromkeys(EFFECT_TABLES, 0)


def effects(counts: dict[str, int]) -> dict[str, int]:
    return {name: counts[name] for name in EFFECT_TABLES}


def razorpay_settings(fake: FakeRazorpay, **overrides: Any) -> RazorpaySettings:
    values: dict[str, Any] = {
        "key_id": RZP_KEY_ID,
        "key_secret": SecretStr(RZP_KEY_SECRET),
        "webhook_secret": SecretStr(RZP_WEBHOOK_SECRET),
        "plan_ids": [f"pro:{RZP_PLAN_ID}"],
        "api_url": fake.url,
        "request_timeout": 10.0,
    }
    values.update(overrides)
    return RazorpaySettings(**values)


def yookassa_settings(fake: FakeYooKassa, **overrides: Any) -> YooKassaSettings:
    values: dict[str, Any] = {
        "shop_id": YOO_SHOP_ID,
        "secret_key": SecretStr(YOO_SECRET),
        "api_url": fake.api_url,
        "return_url": "https://t.me/oneai_bot",
        "allowed_ips": ["127.0.0.1/32"],
        "trusted_proxies": [],
        "request_timeout": 10.0,
    }
    values.update(overrides)
    return YooKassaSettings(**values)


@dataclass
class Response:
    status: int
    body: Any  # JSON when the server answered JSON, else the text


@dataclass
class PaymentStack:
    """Core services, payments and the webhook server, all on the test database."""

    services: Services
    payments: Payments
    url: str  # the webhook server's root, e.g. http://127.0.0.1:54321
    http: aiohttp.ClientSession

    @property
    def db(self) -> Database:
        return self.services.db

    async def post(self, path: str, data: bytes, headers: dict[str, str] | None = None) -> Response:
        async with self.http.post(self.url + path, data=data, headers=headers or {}) as resp:
            text = await resp.text()
            body: Any = text
            if resp.content_type == "application/json":
                body = await resp.json()
            return Response(resp.status, body)

    async def counts(self) -> dict[str, int]:
        return await row_counts(self.db)


class StartStack(Protocol):
    async def __call__(
        self,
        *,
        razorpay: RazorpaySettings | None = None,
        yookassa: YooKassaSettings | None = None,
    ) -> PaymentStack: ...


@pytest.fixture
async def fake_razorpay() -> AsyncIterator[FakeRazorpay]:
    async with FakeRazorpay(key_id=RZP_KEY_ID, key_secret=RZP_KEY_SECRET) as server:
        yield server


@pytest.fixture
async def fake_yookassa() -> AsyncIterator[FakeYooKassa]:
    async with FakeYooKassa(shop_id=YOO_SHOP_ID, secret_key=YOO_SECRET) as server:
        yield server


@pytest.fixture
async def start_stack(
    db: Database,
    fake_llm: FakeLLM,
    fake_razorpay: FakeRazorpay,
    fake_yookassa: FakeYooKassa,
) -> AsyncIterator[StartStack]:
    """Builds services + payments with the given providers (the others off) and
    serves their webhooks on 127.0.0.1; everything is closed after the test, before
    the fake provider APIs stop (background processing may still call them)."""
    async with contextlib.AsyncExitStack() as exits:

        async def start(
            *,
            razorpay: RazorpaySettings | None = None,
            yookassa: YooKassaSettings | None = None,
        ) -> PaymentStack:
            settings = Settings(
                db=DatabaseSettings(database_url=db.url),
                llm=LLMSettings(base_url=fake_llm.base_url, catalog_refresh_hours=0),
                payments=PaymentSettings(
                    plans_file=None,
                    telegram_provider_token=None,
                    telegram_provider_enabled=False,
                    scheduler_enabled=False,
                ),
                razorpay=razorpay or RazorpaySettings(key_id=None, key_secret=None),
                yookassa=yookassa or YooKassaSettings(shop_id=None, secret_key=None),
            )
            llm = LLMClient(fake_llm.base_url, "test-key", max_retries=0)
            exits.push_async_callback(llm.aclose)
            services = Services.build(settings, llm=llm, db=db)
            payments = Payments.build(services)
            app = build_app(services)  # the production app: its body limit included
            payments.mount(app)
            runner = web.AppRunner(app, access_log=None, shutdown_timeout=1.0)
            await runner.setup()
            exits.push_async_callback(runner.cleanup)
            # Background work (YooKassa processing) finishes before the server goes.
            exits.push_async_callback(payments.close)
            site = web.TCPSite(runner, "127.0.0.1", 0)
            await site.start()
            port = runner.addresses[0][1]
            http = aiohttp.ClientSession()
            exits.push_async_callback(http.close)
            return PaymentStack(services, payments, f"http://127.0.0.1:{port}", http)

        yield start
