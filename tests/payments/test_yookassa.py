"""YooKassa end to end: checkout against the fake API, notifications over HTTP from
allowed (or not) addresses, and the API's own answer deciding what happens."""

from __future__ import annotations

import asyncio
import base64
import json
from typing import Any

import pytest
from sqlalchemy import select
from yookassa import Payment as YooPayment

from core.config import YOOKASSA_IPS
from core.db.models import (
    OutboxMessage,
    Payment,
    PaymentOrder,
    Subscription,
    SubscriptionHistory,
    User,
    WebhookEvent,
)
from core.tiers import Tier
from payments.sdk import ProviderTimeout
from payments.service import YOOKASSA_PATH
from payments.yookassa_provider import YooKassaProvider
from tests.fakes.yookassa_server import FakeYooKassa
from tests.payments.conftest import (
    NOTHING_WRITTEN,
    YOO_SECRET,
    YOO_SHOP_ID,
    PaymentStack,
    Response,
    StartStack,
    effects,
    yookassa_settings,
)
from tests.support.chat import new_user
from tests.support.raw_http import chunked, exchange, request_head

PRICE_KOPECKS = 99000
PRICE_TEXT = "990.00"
YOOKASSA_ADDRESS = "185.71.76.5"  # inside 185.71.76.0/27


@pytest.fixture
async def yoo(start_stack: StartStack, fake_yookassa: FakeYooKassa) -> PaymentStack:
    """Notifications accepted from 127.0.0.1 (where the test posts from)."""
    return await start_stack(yookassa=yookassa_settings(fake_yookassa))


def provider(stack: PaymentStack) -> YooKassaProvider:
    assert stack.payments.yookassa is not None
    return stack.payments.yookassa


async def notify(
    stack: PaymentStack, body: dict[str, Any] | bytes, headers: dict[str, str] | None = None
) -> Response:
    raw = body if isinstance(body, bytes) else json.dumps(body).encode()
    return await stack.post(
        YOOKASSA_PATH, raw, {"Content-Type": "application/json", **(headers or {})}
    )


async def checkout(stack: PaymentStack, user_id: int, platform: str = "telegram") -> str:
    """The person chose Pro: our order and YooKassa's pending payment exist."""
    done = await provider(stack).checkout(user_id, Tier.PRO, platform)
    return done.provider_id


async def order_of(stack: PaymentStack, payment_id: str) -> PaymentOrder:
    async with stack.db.read() as session:
        order = await session.scalar(
            select(PaymentOrder).where(PaymentOrder.provider_payment_id == payment_id)
        )
    assert order is not None
    return order


async def user_of(stack: PaymentStack, user_id: int) -> User:
    async with stack.db.read() as session:
        user = await session.get(User, user_id)
    assert user is not None
    return user


async def history_reasons(stack: PaymentStack, user_id: int) -> list[str]:
    async with stack.db.read() as session:
        rows = await session.scalars(
            select(SubscriptionHistory.change_reason)
            .where(SubscriptionHistory.user_id == user_id)
            .order_by(SubscriptionHistory.id)
        )
        return list(rows.all())


async def webhook_events(stack: PaymentStack) -> list[tuple[str, bool]]:
    async with stack.db.read() as session:
        rows = await session.scalars(select(WebhookEvent).order_by(WebhookEvent.id))
        return [(e.event_id, e.processed_at is not None) for e in rows.all()]


async def paid_pro(stack: PaymentStack, fake: FakeYooKassa, user_id: int) -> str:
    """Checkout, pay, notify, process: the person is on Pro."""
    payment_id = await checkout(stack, user_id)
    fake.succeed(payment_id)
    answer = await notify(stack, fake.notification("payment.succeeded", payment_id))
    assert answer.status == 200, answer.body
    await provider(stack).drain()
    assert (await user_of(stack, user_id)).tier == "pro"
    return payment_id


# -- checkout ----------------------------------------------------------------------------


async def test_checkout_sends_the_orders_idempotence_key(
    yoo: PaymentStack, fake_yookassa: FakeYooKassa
) -> None:
    user_id = await new_user(yoo.services)

    done = await provider(yoo).checkout(user_id, Tier.PRO, "discord")

    assert len(fake_yookassa.create_requests) == 1
    call = fake_yookassa.create_requests[0]
    order = await order_of(yoo, done.provider_id)
    assert call.idempotence_key == order.idempotence_key
    token = base64.b64encode(f"{YOO_SHOP_ID}:{YOO_SECRET}".encode()).decode()
    assert call.headers["authorization"] == f"Basic {token}"
    assert call.body["amount"] == {"value": PRICE_TEXT, "currency": "RUB"}
    assert call.body["capture"] is True
    assert call.body["confirmation"] == {
        "type": "redirect",
        "return_url": "https://t.me/oneai_bot",
    }
    # (The SDK adds its own `cms_name`.)
    assert call.body["metadata"]["order_id"] == order.id.hex
    assert call.body["metadata"]["user_id"] == str(user_id)
    payment = fake_yookassa.payment(done.provider_id)
    assert done.url == payment["confirmation"]["confirmation_url"]
    assert (order.provider, order.tier, order.amount_minor, order.currency, order.status) == (
        "yookassa",
        "pro",
        PRICE_KOPECKS,
        "RUB",
        "pending",
    )
    assert order.meta == {"platform": "discord"}

    # A retry of the create call for this order (what the SDK does on a lost answer)
    # carries the same key, so YooKassa hands back the same payment, not a new one.
    again = await provider(yoo).sdk.call(YooPayment.create, dict(call.body), order.idempotence_key)
    assert again.id == done.provider_id
    assert len(fake_yookassa.create_requests) == 2
    assert fake_yookassa.create_requests[1].idempotence_key == order.idempotence_key
    assert fake_yookassa.creates == 1


async def test_each_checkout_is_its_own_order_and_key(
    yoo: PaymentStack, fake_yookassa: FakeYooKassa
) -> None:
    user_id = await new_user(yoo.services)

    first = await checkout(yoo, user_id)
    second = await checkout(yoo, user_id)

    assert first != second
    keys = [c.idempotence_key for c in fake_yookassa.create_requests]
    assert keys == [
        (await order_of(yoo, first)).idempotence_key,
        (await order_of(yoo, second)).idempotence_key,
    ]
    assert len(set(keys)) == 2
    assert fake_yookassa.creates == 2


# -- notifications that activate -------------------------------------------------------------


async def test_succeeded_payment_gives_pro(yoo: PaymentStack, fake_yookassa: FakeYooKassa) -> None:
    user_id = await new_user(yoo.services)
    payment_id = await checkout(yoo, user_id)
    fake_yookassa.succeed(payment_id)

    answer = await notify(yoo, fake_yookassa.notification("payment.succeeded", payment_id))
    assert answer.status == 200
    await provider(yoo).drain()

    # It asked the API instead of believing the notification.
    assert fake_yookassa.fetches(payment_id) == 1
    user = await user_of(yoo, user_id)
    assert (user.tier, user.tier_status) == ("pro", "active")
    async with yoo.db.read() as session:
        sub = await session.scalar(select(Subscription).where(Subscription.is_current))
        ledger = (await session.scalars(select(Payment))).all()
        outbox = (await session.scalars(select(OutboxMessage))).all()
    assert sub is not None
    assert (sub.user_id, sub.tier, sub.status, sub.payment_provider) == (
        user_id,
        "pro",
        "active",
        "yookassa",
    )
    assert [(p.provider_charge_id, p.kind, p.amount_minor, p.currency) for p in ledger] == [
        (payment_id, "payment", PRICE_KOPECKS, "RUB")
    ]
    assert ledger[0].subscription_id == sub.id
    assert [(m.user_id, m.kind, m.platform) for m in outbox] == [
        (user_id, "plan.activated", "telegram")
    ]
    assert await history_reasons(yoo, user_id) == ["new_subscription"]
    assert await webhook_events(yoo) == [(f"payment.succeeded:{payment_id}", True)]
    assert (await order_of(yoo, payment_id)).status == "paid"


async def test_ten_concurrent_copies_activate_once(
    yoo: PaymentStack, fake_yookassa: FakeYooKassa
) -> None:
    user_id = await new_user(yoo.services)
    payment_id = await checkout(yoo, user_id)
    fake_yookassa.succeed(payment_id)
    raw = json.dumps(fake_yookassa.notification("payment.succeeded", payment_id)).encode()

    answers = await asyncio.gather(*(notify(yoo, raw) for _ in range(10)))
    await provider(yoo).drain()

    assert [a.status for a in answers] == [200] * 10
    assert sorted(a.body["status"] for a in answers) == ["accepted"] + ["duplicate"] * 9
    assert effects(await yoo.counts()) == {
        "payments": 1,
        "subscriptions": 1,
        "subscription_history": 1,
        "outbox": 1,
        "webhook_events": 1,
    }
    assert (await user_of(yoo, user_id)).tier == "pro"


async def test_concurrent_processing_of_one_payment_activates_once(
    yoo: PaymentStack, fake_yookassa: FakeYooKassa
) -> None:
    """Past the webhook's dedupe (a retry pass racing a fresh notification): the ledger
    key alone keeps it to one activation."""
    user_id = await new_user(yoo.services)
    payment_id = await checkout(yoo, user_id)
    fake_yookassa.succeed(payment_id)

    results = await asyncio.gather(
        *(provider(yoo).process("payment.succeeded", payment_id) for _ in range(10))
    )

    assert results == [True] * 10
    counts = await yoo.counts()
    assert (
        counts["payments"],
        counts["subscriptions"],
        counts["subscription_history"],
        counts["outbox"],
    ) == (1, 1, 1, 1)


async def test_notification_claiming_success_while_api_says_pending(
    yoo: PaymentStack, fake_yookassa: FakeYooKassa
) -> None:
    user_id = await new_user(yoo.services)
    payment_id = await checkout(yoo, user_id)
    lie = fake_yookassa.notification(
        "payment.succeeded",
        payment_id,
        status="succeeded",
        paid=True,
    )

    answer = await notify(yoo, lie)
    await provider(yoo).drain()

    assert answer.status == 200
    assert fake_yookassa.fetches(payment_id) == 1
    assert (await user_of(yoo, user_id)).tier == "free"
    counts = await yoo.counts()
    assert {**effects(counts), "webhook_events": 0} == NOTHING_WRITTEN
    # Not done: kept for the retry pass.
    assert await webhook_events(yoo) == [(f"payment.succeeded:{payment_id}", False)]
    assert (await order_of(yoo, payment_id)).status == "pending"

    # The person pays after all: the retry pass finds it succeeded and activates once.
    fake_yookassa.succeed(payment_id)
    assert await provider(yoo).retry_unprocessed(older_than_seconds=0) == 1
    assert await provider(yoo).retry_unprocessed(older_than_seconds=0) == 0
    assert (await user_of(yoo, user_id)).tier == "pro"
    assert await webhook_events(yoo) == [(f"payment.succeeded:{payment_id}", True)]
    assert (await yoo.counts())["payments"] == 1


async def test_notification_claiming_success_while_api_says_canceled(
    yoo: PaymentStack, fake_yookassa: FakeYooKassa
) -> None:
    user_id = await new_user(yoo.services)
    payment_id = await checkout(yoo, user_id)
    fake_yookassa.cancel(payment_id)
    lie = fake_yookassa.notification("payment.succeeded", payment_id, status="succeeded", paid=True)

    answer = await notify(yoo, lie)
    await provider(yoo).drain()

    assert answer.status == 200
    assert (await user_of(yoo, user_id)).tier == "free"
    assert {**effects(await yoo.counts()), "webhook_events": 0} == NOTHING_WRITTEN
    assert await webhook_events(yoo) == [(f"payment.succeeded:{payment_id}", True)]
    assert (await order_of(yoo, payment_id)).status == "canceled"


async def test_amount_mismatch_activates_nothing(
    yoo: PaymentStack, fake_yookassa: FakeYooKassa
) -> None:
    user_id = await new_user(yoo.services)
    payment_id = await checkout(yoo, user_id)
    # YooKassa reports a succeeded payment for less than the order's price.
    fake_yookassa.succeed(payment_id, amount="1.00")

    answer = await notify(yoo, fake_yookassa.notification("payment.succeeded", payment_id))
    await provider(yoo).drain()

    assert answer.status == 200
    assert (await user_of(yoo, user_id)).tier == "free"
    # The money is on the ledger for support, and nothing else changed.
    assert {**effects(await yoo.counts()), "webhook_events": 0} == {
        **NOTHING_WRITTEN,
        "payments": 1,
    }
    assert await mismatched(yoo) == [(payment_id, 100, "RUB")]
    assert (await order_of(yoo, payment_id)).status == "pending"


async def mismatched(stack: PaymentStack) -> list[tuple[str, int, str]]:
    async with stack.db.read() as session:
        rows = await session.execute(
            select(Payment.provider_charge_id, Payment.amount_minor, Payment.currency).where(
                Payment.status == "amount_mismatch", Payment.subscription_id.is_(None)
            )
        )
        return [(str(a), int(b), str(c)) for a, b, c in rows.all()]


async def test_currency_mismatch_activates_nothing(
    yoo: PaymentStack, fake_yookassa: FakeYooKassa
) -> None:
    user_id = await new_user(yoo.services)
    payment_id = await checkout(yoo, user_id)
    payment = fake_yookassa.succeed(payment_id)
    payment["amount"] = {"value": PRICE_TEXT, "currency": "USD"}

    await notify(yoo, fake_yookassa.notification("payment.succeeded", payment_id))
    await provider(yoo).drain()

    assert (await user_of(yoo, user_id)).tier == "free"
    assert {**effects(await yoo.counts()), "webhook_events": 0} == {
        **NOTHING_WRITTEN,
        "payments": 1,
    }
    assert await mismatched(yoo) == [(payment_id, PRICE_KOPECKS, "USD")]


async def test_payment_that_is_not_ours_activates_nothing(
    yoo: PaymentStack, fake_yookassa: FakeYooKassa
) -> None:
    user_id = await new_user(yoo.services)
    await checkout(yoo, user_id)
    # A real, succeeded payment of the shop that no order of ours points to.
    stranger = await provider(yoo).sdk.call(
        YooPayment.create,
        {"amount": {"value": PRICE_TEXT, "currency": "RUB"}, "capture": True},
        "someone-elses-key",
    )
    fake_yookassa.succeed(str(stranger.id))

    await notify(yoo, fake_yookassa.notification("payment.succeeded", str(stranger.id)))
    await provider(yoo).drain()

    assert (await user_of(yoo, user_id)).tier == "free"
    assert {**effects(await yoo.counts()), "webhook_events": 0} == NOTHING_WRITTEN


# -- refunds ---------------------------------------------------------------------------------


async def test_refund_returns_to_free(yoo: PaymentStack, fake_yookassa: FakeYooKassa) -> None:
    user_id = await new_user(yoo.services)
    payment_id = await paid_pro(yoo, fake_yookassa, user_id)
    refund_id = fake_yookassa.refund(payment_id)

    answer = await notify(yoo, fake_yookassa.notification("refund.succeeded", refund_id))
    await provider(yoo).drain()

    assert answer.status == 200
    assert len(fake_yookassa.calls_to("GET", f"/v3/refunds/{refund_id}")) == 1
    user = await user_of(yoo, user_id)
    assert (user.tier, user.tier_status) == ("free", "active")
    assert await history_reasons(yoo, user_id) == ["new_subscription", "refund"]
    async with yoo.db.read() as session:
        subs = (await session.scalars(select(Subscription))).all()
        ledger = (await session.scalars(select(Payment).order_by(Payment.id))).all()
        kinds = (await session.scalars(select(OutboxMessage.kind).order_by(OutboxMessage.id))).all()
    assert [(s.is_current, s.status) for s in subs] == [(False, "refunded")]
    assert [(p.provider_charge_id, p.kind, p.amount_minor) for p in ledger] == [
        (payment_id, "payment", PRICE_KOPECKS),
        # One refund per payment: keyed by the payment it returns.
        (f"refund:{payment_id}", "refund", PRICE_KOPECKS),
    ]
    assert list(kinds) == ["plan.activated", "plan.refunded"]

    # The same refund again changes nothing.
    await notify(yoo, fake_yookassa.notification("refund.succeeded", refund_id))
    await provider(yoo).drain()
    assert await history_reasons(yoo, user_id) == ["new_subscription", "refund"]


async def test_pending_refund_changes_nothing_yet(
    yoo: PaymentStack, fake_yookassa: FakeYooKassa
) -> None:
    user_id = await new_user(yoo.services)
    payment_id = await paid_pro(yoo, fake_yookassa, user_id)
    refund_id = fake_yookassa.refund(payment_id, status="pending")

    # The body says succeeded; the API says pending.
    lie = fake_yookassa.notification("refund.succeeded", refund_id, status="succeeded")
    await notify(yoo, lie)
    await provider(yoo).drain()

    assert (await user_of(yoo, user_id)).tier == "pro"
    assert await history_reasons(yoo, user_id) == ["new_subscription"]
    assert (await yoo.counts())["payments"] == 1


# -- who may notify ------------------------------------------------------------------------------


async def _nothing_happened(stack: PaymentStack, fake: FakeYooKassa, payment_id: str) -> None:
    await provider(stack).drain()
    assert effects(await stack.counts()) == NOTHING_WRITTEN
    assert fake.fetches(payment_id) == 0


async def test_sender_outside_yookassa_addresses_is_forbidden(
    start_stack: StartStack, fake_yookassa: FakeYooKassa
) -> None:
    # The published YooKassa networks, which do not include 127.0.0.1.
    stack = await start_stack(
        yookassa=yookassa_settings(fake_yookassa, allowed_ips=list(YOOKASSA_IPS))
    )
    user_id = await new_user(stack.services)
    payment_id = await checkout(stack, user_id)
    fake_yookassa.succeed(payment_id)

    # Without a trusted proxy, X-Forwarded-For means nothing.
    answers = [
        await notify(stack, fake_yookassa.notification("payment.succeeded", payment_id)),
        await notify(
            stack,
            fake_yookassa.notification("payment.succeeded", payment_id),
            {"X-Forwarded-For": YOOKASSA_ADDRESS},
        ),
    ]

    assert [a.status for a in answers] == [403, 403]
    await _nothing_happened(stack, fake_yookassa, payment_id)
    assert (await user_of(stack, user_id)).tier == "free"


async def paid_behind_proxy(
    start_stack: StartStack, fake: FakeYooKassa, proxy: str
) -> tuple[PaymentStack, int, str]:
    """Notifications pass a reverse proxy at `proxy`; YooKassa's own addresses only.
    A person has paid (the API says so); the notification is still to come."""
    stack = await start_stack(
        yookassa=yookassa_settings(fake, allowed_ips=list(YOOKASSA_IPS), trusted_proxies=[proxy])
    )
    user_id = await new_user(stack.services)
    payment_id = await checkout(stack, user_id)
    fake.succeed(payment_id)
    return stack, user_id, payment_id


async def test_forwarded_for_from_trusted_proxy_is_believed(
    start_stack: StartStack, fake_yookassa: FakeYooKassa
) -> None:
    stack, user_id, payment_id = await paid_behind_proxy(start_stack, fake_yookassa, "127.0.0.1/32")

    answer = await notify(
        stack,
        fake_yookassa.notification("payment.succeeded", payment_id),
        {"X-Forwarded-For": YOOKASSA_ADDRESS},
    )
    await provider(stack).drain()

    assert answer.status == 200
    assert (await user_of(stack, user_id)).tier == "pro"


@pytest.mark.parametrize(
    "forwarded",
    [
        "203.0.113.7",  # not YooKassa
        f"{YOOKASSA_ADDRESS}, 203.0.113.7",  # the client forged the first hop
        "not-an-address",
        "",  # the proxy itself is not YooKassa
    ],
    ids=["stranger", "spoofed-first-hop", "garbage", "none"],
)
async def test_forwarded_for_that_is_not_yookassa_is_forbidden(
    start_stack: StartStack, fake_yookassa: FakeYooKassa, forwarded: str
) -> None:
    stack, _, payment_id = await paid_behind_proxy(start_stack, fake_yookassa, "127.0.0.1/32")
    headers = {"X-Forwarded-For": forwarded} if forwarded else {}

    answer = await notify(
        stack, fake_yookassa.notification("payment.succeeded", payment_id), headers
    )

    assert answer.status == 403
    await _nothing_happened(stack, fake_yookassa, payment_id)


async def test_forwarded_for_from_untrusted_peer_is_ignored(
    start_stack: StartStack, fake_yookassa: FakeYooKassa
) -> None:
    stack, _, payment_id = await paid_behind_proxy(start_stack, fake_yookassa, "10.0.0.0/8")

    answer = await notify(
        stack,
        fake_yookassa.notification("payment.succeeded", payment_id),
        {"X-Forwarded-For": YOOKASSA_ADDRESS},
    )

    assert answer.status == 403
    await _nothing_happened(stack, fake_yookassa, payment_id)


# -- malformed notifications ----------------------------------------------------------------


@pytest.mark.parametrize(
    "raw",
    [
        b"{not json",
        b"\xff\xfe",
        b"[]",
        b'{"type": "notification", "event": "payment.teleported", "object": {"id": "x"}}',
        b'{"type": "notification", "event": "payment.succeeded", "object": {}}',
        b'{"type": "notification", "event": "payment.succeeded", "object": {"id": 5}}',
        b'{"type": "notification", "event": "payment.succeeded"}',
        b'{"event": "payment.succeeded", "object": ' + b"[" * 100_000 + b"]" * 100_000 + b"}",
        b'{"event": "payment.succeeded", "object": {"id": "x", "n": ' + b"9" * 100_000 + b"}}",
    ],
    ids=[
        "garbage",
        "not-utf8",
        "array",
        "unknown-event",
        "no-id",
        "id-not-string",
        "no-object",
        "deep",
        "huge-number",
    ],
)
async def test_malformed_notification_is_400(
    yoo: PaymentStack, fake_yookassa: FakeYooKassa, raw: bytes
) -> None:
    user_id = await new_user(yoo.services)
    payment_id = await checkout(yoo, user_id)
    fake_yookassa.succeed(payment_id)

    answer = await notify(yoo, raw)

    assert answer.status == 400
    await _nothing_happened(yoo, fake_yookassa, payment_id)


async def test_oversized_notifications_are_413_before_they_are_read(
    yoo: PaymentStack, fake_yookassa: FakeYooKassa
) -> None:
    user_id = await new_user(yoo.services)
    payment_id = await checkout(yoo, user_id)
    fake_yookassa.succeed(payment_id)
    port = int(yoo.url.rsplit(":", 1)[1])
    # 2 GB announced, a few bytes sent: the answer must not wait for the rest.
    claimed = request_head("POST", YOOKASSA_PATH, {"Content-Length": "2000000000"})
    assert (await exchange(port, claimed + b"{}", within=3)).status == 413
    # A chunked body that grows past the limit.
    big = json.dumps({"event": "payment.succeeded", "pad": "x" * 1_100_000}).encode()
    streamed = request_head("POST", YOOKASSA_PATH, {"Transfer-Encoding": "chunked"})
    assert (await exchange(port, streamed + chunked(big))).status == 413
    await _nothing_happened(yoo, fake_yookassa, payment_id)

    answer = await notify(yoo, fake_yookassa.notification("payment.succeeded", payment_id))
    assert answer.status == 200
    await provider(yoo).drain()
    assert (await user_of(yoo, user_id)).tier == "pro"


async def test_fiscal_receipt_goes_with_the_payment_when_enabled(
    start_stack: StartStack, fake_yookassa: FakeYooKassa
) -> None:
    stack = await start_stack(
        yookassa=yookassa_settings(
            fake_yookassa, receipts=True, receipt_email="buyer@example.com", vat_code=4
        )
    )
    user_id = await new_user(stack.services)
    await checkout(stack, user_id)
    (create,) = fake_yookassa.create_requests
    receipt = create.body["receipt"]
    assert receipt["customer"] == {"email": "buyer@example.com"}
    (item,) = receipt["items"]
    assert item["amount"] == {"value": PRICE_TEXT, "currency": "RUB"}
    assert item["vat_code"] == 4
    assert float(item["quantity"]) == 1
    assert create.body["amount"] == {"value": PRICE_TEXT, "currency": "RUB"}
    assert create.body["capture"] is True
    assert create.body["confirmation"]["return_url"] == "https://t.me/oneai_bot"


async def test_no_receipt_unless_enabled(yoo: PaymentStack, fake_yookassa: FakeYooKassa) -> None:
    await checkout(yoo, await new_user(yoo.services))
    assert "receipt" not in fake_yookassa.create_requests[0].body


async def test_a_hung_provider_times_out_and_frees_its_threads(
    start_stack: StartStack, fake_yookassa: FakeYooKassa
) -> None:
    stack = await start_stack(yookassa=yookassa_settings(fake_yookassa, request_timeout=0.5))
    user_id = await new_user(stack.services)
    fake_yookassa.create_delay = 60
    started = asyncio.get_running_loop().time()
    results = await asyncio.gather(
        *(checkout(stack, user_id) for _ in range(6)), return_exceptions=True
    )
    assert all(isinstance(r, ProviderTimeout) for r in results), results
    assert asyncio.get_running_loop().time() - started < 5
    # The SDK's HTTP calls time out too, so no worker thread stays stuck on them.
    fake_yookassa.create_delay = 0
    await asyncio.sleep(1.0)
    assert await checkout(stack, user_id)
