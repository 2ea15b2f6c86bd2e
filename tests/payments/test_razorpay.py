"""Razorpay subscriptions end to end: checkout against the fake API, signed webhooks
over HTTP into the real ledger, subscriptions and outbox."""

from __future__ import annotations

import asyncio
import base64
import hashlib
import hmac
import json
import uuid
from datetime import UTC, datetime, timedelta
from typing import Any

import pytest
from sqlalchemy import select

from core.db.models import (
    OutboxMessage,
    Payment,
    PaymentOrder,
    Subscription,
    SubscriptionHistory,
    UsageQuota,
    User,
    WebhookEvent,
)
from core.quotas import QuotaService
from core.subscriptions import Reason
from core.tiers import TIERS, QuotaKey, Tier
from payments.plans import PlanCatalog
from payments.razorpay_provider import RazorpayProvider
from payments.service import RAZORPAY_PATH
from tests.fakes.razorpay_server import FakeRazorpay
from tests.payments.conftest import (
    NOTHING_WRITTEN,
    RZP_KEY_ID,
    RZP_KEY_SECRET,
    RZP_PLAN_ID,
    RZP_WEBHOOK_SECRET,
    PaymentStack,
    Response,
    StartStack,
    effects,
    razorpay_settings,
)
from tests.support.chat import new_user
from tests.support.raw_http import chunked, exchange, request_head

PRICE_PAISE = 84900
# Period ends in whole seconds, as Razorpay sends them.
PERIOD_END = int((datetime.now(UTC) + timedelta(days=30)).timestamp())
NEXT_PERIOD_END = PERIOD_END + 30 * 24 * 3600


@pytest.fixture
async def rzp(start_stack: StartStack, fake_razorpay: FakeRazorpay) -> PaymentStack:
    return await start_stack(razorpay=razorpay_settings(fake_razorpay))


def provider(stack: PaymentStack) -> RazorpayProvider:
    assert stack.payments.razorpay is not None
    return stack.payments.razorpay


def sign(raw: bytes, secret: str = RZP_WEBHOOK_SECRET) -> str:
    return hmac.new(secret.encode(), raw, hashlib.sha256).hexdigest()


def event(
    name: str,
    sub_id: str,
    *,
    created_at: int,
    payment_id: str | None = None,
    current_end: int = PERIOD_END,
    status: str = "active",
    amount: int = PRICE_PAISE,
) -> dict[str, Any]:
    """A webhook body shaped like Razorpay's."""
    subscription = {
        "id": sub_id,
        "entity": "subscription",
        "plan_id": RZP_PLAN_ID,
        "status": status,
        "current_start": current_end - 30 * 24 * 3600,
        "current_end": current_end,
        "quantity": 1,
        "notes": {},
        "total_count": 120,
        "paid_count": 1,
    }
    payload: dict[str, Any] = {"subscription": {"entity": subscription}}
    contains = ["subscription"]
    if payment_id is not None:
        contains.append("payment")
        payload["payment"] = {
            "entity": {
                "id": payment_id,
                "entity": "payment",
                "amount": amount,
                "currency": "INR",
                "status": "captured",
                "method": "card",
                "captured": True,
            }
        }
    return {
        "entity": "event",
        "account_id": "acc_fake",
        "event": name,
        "contains": contains,
        "payload": payload,
        "created_at": created_at,
    }


async def post_raw(
    stack: PaymentStack,
    raw: bytes,
    *,
    signature: str | None = None,
    event_id: str | None = None,
    signed: bool = True,
) -> Response:
    headers: dict[str, str] = {"Content-Type": "application/json"}
    if signed:
        headers["X-Razorpay-Signature"] = signature if signature is not None else sign(raw)
    headers["x-razorpay-event-id"] = event_id or f"evt_{uuid.uuid4().hex[:14]}"
    return await stack.post(RAZORPAY_PATH, raw, headers)


async def post_event(
    stack: PaymentStack, body: dict[str, Any], *, event_id: str | None = None
) -> Response:
    return await post_raw(stack, json.dumps(body).encode(), event_id=event_id)


async def post_renewal(stack: PaymentStack, sub_id: str, *, created_at: int) -> Response:
    """The charge for the next period (payment p2)."""
    return await post_event(
        stack,
        event(
            "subscription.charged",
            sub_id,
            created_at=created_at,
            payment_id="p2",
            current_end=NEXT_PERIOD_END,
        ),
    )


async def subscribed(stack: PaymentStack, user_id: int) -> str:
    """The person chose Pro: our order and Razorpay's subscription exist."""
    checkout = await provider(stack).checkout(user_id, Tier.PRO, "telegram")
    return checkout.provider_id


async def current_sub(stack: PaymentStack, user_id: int) -> Subscription:
    async with stack.db.read() as session:
        sub = await session.scalar(
            select(Subscription).where(Subscription.user_id == user_id, Subscription.is_current)
        )
    assert sub is not None
    return sub


async def user_tier(stack: PaymentStack, user_id: int) -> str:
    async with stack.db.read() as session:
        user = await session.get(User, user_id)
    assert user is not None
    return user.tier


async def history_reasons(stack: PaymentStack, user_id: int) -> list[str]:
    async with stack.db.read() as session:
        rows = await session.scalars(
            select(SubscriptionHistory.change_reason)
            .where(SubscriptionHistory.user_id == user_id)
            .order_by(SubscriptionHistory.id)
        )
        return list(rows.all())


async def ledger_keys(stack: PaymentStack) -> list[tuple[str, str, int]]:
    async with stack.db.read() as session:
        rows = await session.execute(
            select(Payment.provider_charge_id, Payment.kind, Payment.amount_minor).order_by(
                Payment.id
            )
        )
        return [(key, kind, amount) for key, kind, amount in rows.all()]


# -- checkout ----------------------------------------------------------------------------


async def test_checkout_creates_subscription_with_plan_and_notes(
    rzp: PaymentStack, fake_razorpay: FakeRazorpay
) -> None:
    user_id = await new_user(rzp.services)

    checkout = await provider(rzp).checkout(user_id, Tier.PRO, "discord")

    assert len(fake_razorpay.creates) == 1
    call = fake_razorpay.creates[0]
    async with rzp.db.read() as session:
        order = await session.scalar(select(PaymentOrder))
    assert order is not None
    assert call.body == {
        "plan_id": RZP_PLAN_ID,
        "total_count": 120,
        "customer_notify": 1,
        "notes": {"order_id": order.id.hex, "user_id": str(user_id)},
    }
    token = base64.b64encode(f"{RZP_KEY_ID}:{RZP_KEY_SECRET}".encode()).decode()
    assert call.headers["authorization"] == f"Basic {token}"
    sub = fake_razorpay.subscriptions[checkout.provider_id]
    assert checkout.url == sub["short_url"]
    # The order remembers the subscription, so its webhooks find their way back.
    assert (order.provider, order.tier, order.amount_minor, order.currency) == (
        "razorpay",
        "pro",
        PRICE_PAISE,
        "INR",
    )
    assert order.user_id == user_id
    assert order.provider_payment_id == checkout.provider_id
    assert order.status == "pending"
    assert order.meta == {"platform": "discord"}
    # Nothing is paid yet.
    assert effects(await rzp.counts()) == NOTHING_WRITTEN


async def test_cancel_asks_razorpay_to_stop_at_cycle_end(
    rzp: PaymentStack, fake_razorpay: FakeRazorpay
) -> None:
    user_id = await new_user(rzp.services)
    sub_id = await subscribed(rzp, user_id)

    await provider(rzp).cancel(sub_id)

    calls = fake_razorpay.calls_to("POST", f"/v1/subscriptions/{sub_id}/cancel")
    assert len(calls) == 1
    assert calls[0].body == {"cancel_at_cycle_end": 1}
    assert fake_razorpay.subscriptions[sub_id]["has_scheduled_changes"] is True


# -- activation ---------------------------------------------------------------------------


async def test_signed_activation_gives_pro(rzp: PaymentStack) -> None:
    user_id = await new_user(rzp.services)
    # Some free quota used before paying: a new plan starts with fresh windows.
    quotas = QuotaService(rzp.db)
    async with rzp.db.write() as session:
        await quotas.reserve(session, user_id, Tier.FREE, QuotaKey.SMALL)
    sub_id = await subscribed(rzp, user_id)

    answer = await post_event(
        rzp,
        event("subscription.activated", sub_id, created_at=100, payment_id="pay_first"),
        event_id="evt_activated_1",
    )

    assert answer.status == 200, answer.body
    assert await user_tier(rzp, user_id) == "pro"
    sub = await current_sub(rzp, user_id)
    assert sub.tier == "pro"
    assert sub.status == "active"
    assert sub.payment_provider == "razorpay"
    assert sub.provider_subscription_id == sub_id
    assert sub.current_period_end == datetime.fromtimestamp(PERIOD_END, UTC)
    assert sub.cancel_at_period_end is False
    assert await history_reasons(rzp, user_id) == ["new_subscription"]
    async with rzp.db.read() as session:
        outbox = (await session.scalars(select(OutboxMessage))).all()
        events = (await session.scalars(select(WebhookEvent))).all()
        order = await session.scalar(select(PaymentOrder))
        quota_rows = (
            await session.scalars(select(UsageQuota).where(UsageQuota.user_id == user_id))
        ).all()
    assert [(m.user_id, m.kind, m.platform) for m in outbox] == [
        (user_id, "plan.activated", "telegram")
    ]
    assert outbox[0].payload["tier"] == "pro"
    assert [(e.provider, e.event_id, e.processed_at is not None) for e in events] == [
        ("razorpay", "evt_activated_1", True)
    ]
    assert await ledger_keys(rzp) == [("pay_first", "payment", PRICE_PAISE)]
    assert order is not None
    assert order.status == "paid"
    # Quotas are at Pro limits, with the free usage gone.
    pro = TIERS[Tier.PRO].quotas
    assert {(q.quota_key, q.subscription_tier, q.quota_limit) for q in quota_rows} == {
        (key.value, "pro", rule.limit) for key, rule in pro.items()
    }
    report = {s.key: s for s in await rzp.services.quotas.report(user_id, Tier.PRO)}
    assert {key: (s.limit, s.used) for key, s in report.items()} == {
        key: (rule.limit, 0) for key, rule in pro.items()
    }


async def test_ten_concurrent_copies_activate_once(rzp: PaymentStack) -> None:
    user_id = await new_user(rzp.services)
    sub_id = await subscribed(rzp, user_id)
    raw = json.dumps(
        event("subscription.activated", sub_id, created_at=100, payment_id="pay_once")
    ).encode()

    answers = await asyncio.gather(*(post_raw(rzp, raw, event_id="evt_same") for _ in range(10)))

    assert sorted(a.status for a in answers) == [200] * 10
    assert sorted(a.body["status"] for a in answers) == ["applied"] + ["duplicate"] * 9
    counts = await rzp.counts()
    assert effects(counts) == {
        "payments": 1,
        "subscriptions": 1,
        "subscription_history": 1,
        "outbox": 1,
        "webhook_events": 1,
    }
    assert await user_tier(rzp, user_id) == "pro"


async def test_ten_concurrent_copies_without_event_id_activate_once(rzp: PaymentStack) -> None:
    """No x-razorpay-event-id: the body's hash stands in for it."""
    user_id = await new_user(rzp.services)
    sub_id = await subscribed(rzp, user_id)
    raw = json.dumps(
        event("subscription.charged", sub_id, created_at=100, payment_id="pay_once")
    ).encode()
    headers = {"X-Razorpay-Signature": sign(raw), "Content-Type": "application/json"}

    answers = await asyncio.gather(*(rzp.post(RAZORPAY_PATH, raw, headers) for _ in range(10)))

    assert [a.status for a in answers] == [200] * 10
    assert effects(await rzp.counts()) == {
        "payments": 1,
        "subscriptions": 1,
        "subscription_history": 1,
        "outbox": 1,
        "webhook_events": 1,
    }


async def test_same_payment_as_activated_and_charged_is_one_ledger_row(
    rzp: PaymentStack,
) -> None:
    user_id = await new_user(rzp.services)
    sub_id = await subscribed(rzp, user_id)

    first = await post_event(
        rzp,
        event("subscription.activated", sub_id, created_at=100, payment_id="pay_1"),
        event_id="evt_a",
    )
    second = await post_event(
        rzp,
        event("subscription.charged", sub_id, created_at=100, payment_id="pay_1"),
        event_id="evt_b",
    )

    assert (first.status, second.status) == (200, 200)
    assert await ledger_keys(rzp) == [("pay_1", "payment", PRICE_PAISE)]
    assert await history_reasons(rzp, user_id) == ["new_subscription"]
    counts = await rzp.counts()
    assert counts["outbox"] == 1
    assert counts["subscriptions"] == 1
    assert counts["webhook_events"] == 2  # both seen, one applied
    assert (await current_sub(rzp, user_id)).current_period_end == datetime.fromtimestamp(
        PERIOD_END, UTC
    )


async def test_activated_and_charged_concurrently_for_same_payment(rzp: PaymentStack) -> None:
    user_id = await new_user(rzp.services)
    sub_id = await subscribed(rzp, user_id)
    bodies = [
        (event(name, sub_id, created_at=100, payment_id="pay_1"), f"evt_{name}_{i}")
        for i in range(5)
        for name in ("subscription.activated", "subscription.charged")
    ]

    answers = await asyncio.gather(*(post_event(rzp, b, event_id=e) for b, e in bodies))

    assert [a.status for a in answers] == [200] * 10
    assert await ledger_keys(rzp) == [("pay_1", "payment", PRICE_PAISE)]
    assert await history_reasons(rzp, user_id) == ["new_subscription"]
    assert (await rzp.counts())["outbox"] == 1


async def test_replayed_event_changes_nothing(rzp: PaymentStack) -> None:
    user_id = await new_user(rzp.services)
    sub_id = await subscribed(rzp, user_id)
    body = event("subscription.charged", sub_id, created_at=100, payment_id="pay_1")
    await post_event(rzp, body, event_id="evt_1")
    before = await rzp.counts()

    again = await post_event(rzp, body, event_id="evt_1")

    assert again.status == 200
    assert again.body["status"] == "duplicate"
    assert await rzp.counts() == before


# -- rejected requests ---------------------------------------------------------------------


async def _rejected(rzp: PaymentStack, answer: Response, user_id: int) -> None:
    assert 400 <= answer.status < 500, (answer.status, answer.body)
    counts = await rzp.counts()
    assert effects(counts) == NOTHING_WRITTEN
    assert counts["payment_orders"] == 1  # the checkout's, untouched
    async with rzp.db.read() as session:
        order = await session.scalar(select(PaymentOrder))
    assert order is not None
    assert (order.status, order.last_event_at) == ("pending", None)
    assert await user_tier(rzp, user_id) == "free"


async def test_forged_signature_is_rejected(
    rzp: PaymentStack, caplog: pytest.LogCaptureFixture
) -> None:
    user_id = await new_user(rzp.services)
    sub_id = await subscribed(rzp, user_id)
    raw = json.dumps(event("subscription.activated", sub_id, created_at=1, payment_id="p")).encode()
    forged = sign(raw, "not-the-secret")

    with caplog.at_level("DEBUG"):
        answer = await post_raw(rzp, raw, signature=forged)

    assert answer.status == 400
    await _rejected(rzp, answer, user_id)
    # The log says why, and gives away neither secret nor signature.
    logged = "\n".join(r.getMessage() for r in caplog.records)
    assert "bad signature" in logged
    for secret in (RZP_WEBHOOK_SECRET, forged):
        assert secret not in logged


async def test_signature_of_another_body_is_rejected(rzp: PaymentStack) -> None:
    user_id = await new_user(rzp.services)
    sub_id = await subscribed(rzp, user_id)
    honest = json.dumps(event("subscription.halted", sub_id, created_at=1)).encode()
    tampered = json.dumps(
        event("subscription.activated", sub_id, created_at=1, payment_id="p")
    ).encode()

    answer = await post_raw(rzp, tampered, signature=sign(honest))

    assert answer.status == 400
    await _rejected(rzp, answer, user_id)


@pytest.mark.parametrize("signature", [None, ""], ids=["no-header", "empty-header"])
async def test_missing_signature_is_400_not_500(rzp: PaymentStack, signature: str | None) -> None:
    user_id = await new_user(rzp.services)
    sub_id = await subscribed(rzp, user_id)
    raw = json.dumps(event("subscription.activated", sub_id, created_at=1, payment_id="p")).encode()

    if signature is None:
        answer = await post_raw(rzp, raw, signed=False)
    else:
        answer = await post_raw(rzp, raw, signature=signature)

    assert answer.status == 400
    await _rejected(rzp, answer, user_id)


async def test_non_ascii_signature_is_400_not_500(rzp: PaymentStack) -> None:
    user_id = await new_user(rzp.services)
    sub_id = await subscribed(rzp, user_id)
    raw = json.dumps(event("subscription.activated", sub_id, created_at=1, payment_id="p")).encode()

    answer = await post_raw(rzp, raw, signature="é" * 64)

    await _rejected(rzp, answer, user_id)


@pytest.mark.parametrize(
    "raw",
    [
        b"{not json",
        b'{"event": "subscription.activated",',
        b"[1, 2]",
        b'{"no": "event"}',
        b"\xff",
        b'{"event": "subscription.activated", "x": ' + b"[" * 100_000 + b"]" * 100_000 + b"}",
        b'{"event": "subscription.activated", "created_at": ' + b"1" * 100_000 + b"}",
    ],
    ids=["garbage", "truncated", "array", "no-event", "not-utf8", "deep", "huge-number"],
)
async def test_signed_malformed_body_is_rejected(rzp: PaymentStack, raw: bytes) -> None:
    user_id = await new_user(rzp.services)
    await subscribed(rzp, user_id)

    answer = await post_raw(rzp, raw)

    assert answer.status == 400
    await _rejected(rzp, answer, user_id)


async def test_oversized_bodies_are_413_before_they_are_read(rzp: PaymentStack) -> None:
    user_id = await new_user(rzp.services)
    sub_id = await subscribed(rzp, user_id)
    port = int(rzp.url.rsplit(":", 1)[1])
    # 2 GB announced, a few bytes sent: the answer must not wait for the rest.
    claimed = request_head(
        "POST",
        RAZORPAY_PATH,
        {"X-Razorpay-Signature": sign(b"{}"), "Content-Length": "2000000000"},
    )
    assert (await exchange(port, claimed + b"{}", within=3)).status == 413
    # A chunked body that grows past the limit.
    big = json.dumps({"event": "subscription.activated", "pad": "x" * 1_100_000}).encode()
    streamed = request_head(
        "POST",
        RAZORPAY_PATH,
        {"X-Razorpay-Signature": sign(big), "Transfer-Encoding": "chunked"},
    )
    assert (await exchange(port, streamed + chunked(big))).status == 413
    assert effects(await rzp.counts()) == NOTHING_WRITTEN

    answer = await post_event(rzp, event("subscription.activated", sub_id, created_at=100))
    assert answer.status == 200, answer.body
    assert await user_tier(rzp, user_id) == "pro"


async def test_unknown_subscription_is_rejected(rzp: PaymentStack) -> None:
    user_id = await new_user(rzp.services)
    await subscribed(rzp, user_id)
    body = event("subscription.activated", "sub_nobodys", created_at=1, payment_id="pay_x")

    answer = await post_event(rzp, body)

    assert answer.status == 400
    await _rejected(rzp, answer, user_id)


async def test_a_plan_no_longer_sold_is_rejected(rzp: PaymentStack) -> None:
    """The operator took the plan off sale after the subscription was created."""
    user_id = await new_user(rzp.services)
    sub_id = await subscribed(rzp, user_id)
    provider(rzp).plans = PlanCatalog({})
    body = event("subscription.activated", sub_id, created_at=1, payment_id="pay_y")

    answer = await post_event(rzp, body)

    assert answer.status == 400
    await _rejected(rzp, answer, user_id)


# -- order of events -----------------------------------------------------------------------


async def test_older_event_after_newer_is_ignored(rzp: PaymentStack) -> None:
    user_id = await new_user(rzp.services)
    sub_id = await subscribed(rzp, user_id)
    charged = await post_event(
        rzp, event("subscription.charged", sub_id, created_at=200, payment_id="pay_1")
    )
    assert charged.status == 200
    before = await rzp.counts()

    pending = await post_event(rzp, event("subscription.pending", sub_id, created_at=100))

    assert pending.status == 200
    assert pending.body["status"] == "stale"
    sub = await current_sub(rzp, user_id)
    assert sub.status == "active"
    async with rzp.db.read() as session:
        user = await session.get(User, user_id)
        order = await session.scalar(select(PaymentOrder))
    assert user is not None
    assert (user.tier, user.tier_status) == ("pro", "active")
    assert order is not None
    assert order.last_event_at == datetime.fromtimestamp(200, UTC)
    after = await rzp.counts()
    # Only the stale event's own webhook_events row is new.
    assert {**after, "webhook_events": after["webhook_events"] - 1} == before
    assert await history_reasons(rzp, user_id) == ["new_subscription"]


async def test_pending_then_newer_charge(rzp: PaymentStack) -> None:
    """In order: pending marks the plan past due; the newer charge makes it active."""
    user_id = await new_user(rzp.services)
    sub_id = await subscribed(rzp, user_id)
    await post_event(rzp, event("subscription.activated", sub_id, created_at=100, payment_id="p1"))

    await post_event(rzp, event("subscription.pending", sub_id, created_at=150))
    assert (await current_sub(rzp, user_id)).status == "past_due"

    await post_renewal(rzp, sub_id, created_at=200)
    sub = await current_sub(rzp, user_id)
    assert sub.status == "active"
    assert sub.current_period_end == datetime.fromtimestamp(NEXT_PERIOD_END, UTC)
    assert await history_reasons(rzp, user_id) == ["new_subscription", "past_due", "renewal"]


async def test_halted_then_newer_charge_reactivates_and_extends(rzp: PaymentStack) -> None:
    user_id = await new_user(rzp.services)
    sub_id = await subscribed(rzp, user_id)
    await post_event(rzp, event("subscription.activated", sub_id, created_at=100, payment_id="p1"))

    halted = await post_event(rzp, event("subscription.halted", sub_id, created_at=200))
    assert halted.status == 200
    sub = await current_sub(rzp, user_id)
    assert sub.status == "unpaid"
    async with rzp.db.read() as session:
        user = await session.get(User, user_id)
    assert user is not None
    assert (user.tier, user.tier_status) == ("pro", "unpaid")

    charged = await post_renewal(rzp, sub_id, created_at=300)

    assert charged.status == 200
    sub = await current_sub(rzp, user_id)
    assert sub.status == "active"
    assert sub.current_period_end == datetime.fromtimestamp(NEXT_PERIOD_END, UTC)
    async with rzp.db.read() as session:
        user = await session.get(User, user_id)
    assert user is not None
    assert (user.tier, user.tier_status) == ("pro", "active")
    assert await ledger_keys(rzp) == [
        ("p1", "payment", PRICE_PAISE),
        ("p2", "renewal", PRICE_PAISE),
    ]
    assert await history_reasons(rzp, user_id) == ["new_subscription", "unpaid", "renewal"]
    assert (await rzp.counts())["subscriptions"] == 1


async def test_cancelled_keeps_pro_until_period_end(rzp: PaymentStack) -> None:
    user_id = await new_user(rzp.services)
    sub_id = await subscribed(rzp, user_id)
    await post_event(rzp, event("subscription.activated", sub_id, created_at=100, payment_id="p1"))

    answer = await post_event(
        rzp, event("subscription.cancelled", sub_id, created_at=200, status="cancelled")
    )

    assert answer.status == 200
    sub = await current_sub(rzp, user_id)
    assert sub.cancel_at_period_end is True
    assert sub.status == "cancelled"
    assert sub.current_period_end == datetime.fromtimestamp(PERIOD_END, UTC)
    assert await user_tier(rzp, user_id) == "pro"
    assert await history_reasons(rzp, user_id) == ["new_subscription", "cancellation"]
    async with rzp.db.read() as session:
        kinds = (await session.scalars(select(OutboxMessage.kind).order_by(OutboxMessage.id))).all()
    assert list(kinds) == ["plan.activated", "plan.cancelled"]

    # Razorpay also sends `completed` at the end of the last cycle: no second cancellation.
    completed = await post_event(
        rzp, event("subscription.completed", sub_id, created_at=300, status="completed")
    )
    assert completed.status == 200
    assert await history_reasons(rzp, user_id) == ["new_subscription", "cancellation"]


# -- late charges and reactivation ------------------------------------------------------------


async def test_late_renewal_charge_after_cancellation_is_still_recorded(
    rzp: PaymentStack,
) -> None:
    user_id = await new_user(rzp.services)
    sub_id = await subscribed(rzp, user_id)
    await post_event(rzp, event("subscription.activated", sub_id, created_at=100, payment_id="p1"))
    # Cycle 2 is charged (t=200), then the person cancels (t=250); Razorpay's first
    # delivery of the charge failed and its retry arrives after the cancellation.
    await post_event(
        rzp, event("subscription.cancelled", sub_id, created_at=250, status="cancelled")
    )

    late = await post_renewal(rzp, sub_id, created_at=200)

    assert late.status == 200
    # The money moved: it is in the ledger, and the paid cycle is granted.
    assert [key for key, _, _ in await ledger_keys(rzp)] == ["p1", "p2"]
    sub = await current_sub(rzp, user_id)
    assert sub.current_period_end == datetime.fromtimestamp(NEXT_PERIOD_END, UTC)
    # The newer cancellation still stands.
    assert (sub.status, sub.cancel_at_period_end) == ("cancelled", True)


async def test_reactivation_without_payment_is_a_status_change_not_a_renewal(
    rzp: PaymentStack,
) -> None:
    user_id = await new_user(rzp.services)
    sub_id = await subscribed(rzp, user_id)
    await post_event(rzp, event("subscription.activated", sub_id, created_at=100, payment_id="p1"))
    await post_event(rzp, event("subscription.halted", sub_id, created_at=200, status="halted"))

    answer = await post_event(rzp, event("subscription.activated", sub_id, created_at=300))

    assert answer.status == 200
    sub = await current_sub(rzp, user_id)
    assert sub.status == "active"
    assert await ledger_keys(rzp) == [("p1", "payment", PRICE_PAISE)]
    assert await history_reasons(rzp, user_id) == ["new_subscription", "unpaid", "reactivated"]


async def test_a_charge_after_the_plan_expired_brings_the_same_row_back(
    rzp: PaymentStack,
) -> None:
    """Razorpay retried the card for days; our plan expired meanwhile. The charge
    that finally succeeds must not collide with the lapsed row of the same
    subscription (a 500 on every retry would lose it)."""
    user_id = await new_user(rzp.services)
    sub_id = await subscribed(rzp, user_id)
    await post_event(rzp, event("subscription.activated", sub_id, created_at=100, payment_id="p1"))
    first = await current_sub(rzp, user_id)
    async with rzp.db.write() as session:
        change = await rzp.services.subscriptions.end(session, user_id, Reason.EXPIRY)
    assert change is not None

    late = await post_renewal(rzp, sub_id, created_at=300)

    assert late.status == 200
    again = await current_sub(rzp, user_id)
    assert again.id == first.id
    assert (again.tier, again.status) == ("pro", "active")
    assert again.current_period_end == datetime.fromtimestamp(NEXT_PERIOD_END, UTC)
    assert (await rzp.counts())["subscriptions"] == 1
    assert await history_reasons(rzp, user_id) == ["new_subscription", "expiry", "new_subscription"]
