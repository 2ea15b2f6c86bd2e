"""An admin's refund of one payment, end to end over real HTTP: YooKassa and
Razorpay against their fake APIs (the webhooks through the bot's HTTP server),
Telegram Stars through the real aiogram Bot against the fake Bot API with the real
dispatcher receiving Telegram's refunded_payment. One refund per payment however
often and however at once it is pressed, the provider's notice after it changing
nothing more, and a crash between the provider call and the ledger finished by
the notice or by a later press with the same idempotence key."""

from __future__ import annotations

import asyncio
from collections.abc import AsyncIterator
from datetime import timedelta
from typing import Any

import pytest
from aiogram import Bot
from aiogram.client.session.aiohttp import AiohttpSession
from aiogram.client.telegram import TelegramAPIServer
from sqlalchemy import func, select

from bot.telegram.factory import build_dispatcher
from core.accounts import PlatformProfile
from core.db.models import (
    AuditLog,
    OutboxMessage,
    Payment,
    Subscription,
    SubscriptionHistory,
    User,
)
from core.i18n import TEXTS, error_text
from core.services import Services
from core.tiers import Tier
from payments.ledger import LedgerEntry, Settled, refund_key
from payments.refunds import (
    AlreadyRefunded,
    NothingToRefund,
    PaymentNotFound,
    ProviderNotConfigured,
    RefundError,
    RefundInProgress,
    RefundNotSupported,
    RefundOutcomeUnknown,
    RefundRefused,
    RefundResult,
    Refunds,
)
from payments.service import Payments
from payments.stars import PROVIDER as TELEGRAM_PROVIDER
from payments.stars import PaidInvoice
from tests.fakes.llm_server import FakeLLM
from tests.fakes.razorpay_server import FakeRazorpay
from tests.fakes.telegram_server import FakeTelegram
from tests.fakes.yookassa_server import FakeYooKassa
from tests.payments.conftest import (
    PaymentStack,
    StartStack,
    razorpay_settings,
    yookassa_settings,
)
from tests.payments.test_razorpay import post_event, subscribed
from tests.payments.test_yookassa import notify, paid_pro
from tests.support.chat import new_user
from tests.telegram.conftest import USER, Harness, telegram_settings, until

YOO_PRICE = "990.00"
YOO_KOPECKS = 99000
RZP_PAISE = 84900
STARS_PRICE = 500


@pytest.fixture
async def stack(
    start_stack: StartStack, fake_yookassa: FakeYooKassa, fake_razorpay: FakeRazorpay
) -> PaymentStack:
    return await start_stack(
        yookassa=yookassa_settings(fake_yookassa), razorpay=razorpay_settings(fake_razorpay)
    )


def refunds_of(stack: PaymentStack) -> Refunds:
    return stack.payments.refunds


async def drain(stack: PaymentStack) -> None:
    assert stack.payments.yookassa is not None
    await stack.payments.yookassa.drain()


async def admin(services: Services) -> int:
    return await new_user(services, "admin")


async def tier_of(services: Services, user_id: int) -> str:
    async with services.db.read() as session:
        user = await session.get(User, user_id)
    assert user is not None
    return user.tier


async def snapshot(services: Services) -> dict[str, Any]:
    """Everything a refund writes."""
    async with services.db.read() as session:
        ledger = (await session.scalars(select(Payment).order_by(Payment.id))).all()
        subs = (await session.scalars(select(Subscription).order_by(Subscription.id))).all()
        history = (
            await session.scalars(
                select(SubscriptionHistory.change_reason).order_by(SubscriptionHistory.id)
            )
        ).all()
        notices = (
            await session.scalars(select(OutboxMessage.kind).order_by(OutboxMessage.id))
        ).all()
        audit = int(await session.scalar(select(func.count()).select_from(AuditLog)) or 0)
    return {
        "ledger": [(p.provider_charge_id, p.kind, p.status, p.amount_minor) for p in ledger],
        "subscriptions": [(s.tier, s.status, s.is_current) for s in subs],
        "history": list(history),
        "notices": list(notices),
        "audit": audit,
    }


async def audit_rows(services: Services) -> list[AuditLog]:
    async with services.db.read() as session:
        return list((await session.scalars(select(AuditLog).order_by(AuditLog.id))).all())


async def ledger_id(services: Services, charge_id: str) -> int:
    async with services.db.read() as session:
        found = await session.scalar(
            select(Payment.id).where(Payment.provider_charge_id == charge_id)
        )
    assert found is not None
    return found


async def razorpay_paid(stack: PaymentStack, fake: FakeRazorpay, user_id: int) -> str:
    """Subscribed and charged (a signed subscription.charged): on Pro."""
    sub_id = await subscribed(stack, user_id)
    payment_id, body = fake.charge(sub_id, amount=RZP_PAISE)
    answer = await post_event(stack, body)
    assert answer.status == 200, answer.body
    assert await tier_of(stack.services, user_id) == "pro"
    return payment_id


def fail_once(refunds: Refunds, monkeypatch: pytest.MonkeyPatch) -> None:
    """The process dies between the provider's answer and the ledger write."""
    settle = refunds.ledger.settle

    async def crash(entry: LedgerEntry) -> Settled:
        monkeypatch.setattr(refunds.ledger, "settle", settle)
        raise ConnectionResetError("the database went away")

    monkeypatch.setattr(refunds.ledger, "settle", crash)


# -- YooKassa -------------------------------------------------------------------------


async def test_yookassa_refund_end_to_end(stack: PaymentStack, fake_yookassa: FakeYooKassa) -> None:
    boss = await admin(stack.services)
    user_id = await new_user(stack.services)
    payment_id = await paid_pro(stack, fake_yookassa, user_id)
    row_id = await ledger_id(stack.services, payment_id)

    result = await refunds_of(stack).refund(payment_id, admin_user_id=boss, reason="asked twice")

    # One POST /refunds with our idempotence key, for all of the payment.
    (call,) = fake_yookassa.refund_requests
    assert call.idempotence_key == f"oneai-refund-{row_id}-1"
    assert call.body["payment_id"] == payment_id
    assert call.body["amount"] == {"value": YOO_PRICE, "currency": "RUB"}
    (refund_id,) = fake_yookassa.refunds
    assert fake_yookassa.refunded_cents(payment_id) == YOO_KOPECKS
    assert isinstance(result, RefundResult)
    assert (result.status, result.payment_id, result.provider_refund_id) == (
        "refunded",
        row_id,
        refund_id,
    )
    assert (result.before.tier, result.after.tier) == (Tier.PRO, Tier.FREE)
    assert result.change is not None and result.change.new_tier is Tier.FREE
    assert "Refunded 990 ₽" in result.text("en") and "Pro" in result.text("en")
    assert "Возвращено" in result.text("ru")
    after = await snapshot(stack.services)
    assert after["ledger"] == [
        (payment_id, "payment", "refunded", YOO_KOPECKS),
        (f"refund:{payment_id}", "refund", "succeeded", YOO_KOPECKS),
    ]
    assert after["subscriptions"] == [("pro", "refunded", False)]
    assert after["history"] == ["new_subscription", "refund"]
    assert after["notices"] == ["plan.activated", "plan.refunded"]
    (entry,) = await audit_rows(stack.services)
    assert (entry.actor_user_id, entry.action, entry.target_user_id) == (boss, "refund", user_id)
    assert entry.details["outcome"] == "refunded"
    assert entry.details["payment_id"] == row_id
    assert entry.details["refund_id"] == refund_id
    assert entry.details["reason"] == "asked twice"
    assert (entry.details["before"]["tier"], entry.details["after"]["tier"]) == ("pro", "free")

    # YooKassa's refund.succeeded that follows is fetched and changes nothing more.
    answer = await notify(stack, fake_yookassa.notification("refund.succeeded", refund_id))
    await drain(stack)
    assert answer.status == 200
    assert len(fake_yookassa.calls_to("GET", f"/v3/refunds/{refund_id}")) == 1
    assert await snapshot(stack.services) == after


async def test_yookassa_double_press_calls_the_provider_once(
    stack: PaymentStack, fake_yookassa: FakeYooKassa
) -> None:
    user_id = await new_user(stack.services)
    payment_id = await paid_pro(stack, fake_yookassa, user_id)
    refunds = refunds_of(stack)

    await refunds.refund(payment_id, admin_user_id=None, reason=None)
    after = await snapshot(stack.services)
    for again in (payment_id, await ledger_id(stack.services, payment_id)):
        with pytest.raises(AlreadyRefunded) as refused:
            await refunds.refund(again, admin_user_id=None, reason=None)
        assert not isinstance(refused.value, RefundInProgress)

    assert len(fake_yookassa.refund_requests) == 1
    assert await snapshot(stack.services) == after


async def test_yookassa_concurrent_presses_call_the_provider_once(
    stack: PaymentStack, fake_yookassa: FakeYooKassa
) -> None:
    boss = await admin(stack.services)
    user_id = await new_user(stack.services)
    payment_id = await paid_pro(stack, fake_yookassa, user_id)
    fake_yookassa.refund_delay = 0.3  # the first press is still waiting on YooKassa

    outcomes = await asyncio.gather(
        *(refunds_of(stack).refund(payment_id, admin_user_id=boss, reason=None) for _ in range(5)),
        return_exceptions=True,
    )

    done = [o for o in outcomes if isinstance(o, RefundResult)]
    refused = [o for o in outcomes if isinstance(o, AlreadyRefunded)]
    assert len(done) == 1 and len(refused) == 4, outcomes
    assert len(fake_yookassa.refund_requests) == 1
    after = await snapshot(stack.services)
    assert after["history"] == ["new_subscription", "refund"]
    assert after["notices"] == ["plan.activated", "plan.refunded"]
    assert after["audit"] == 1
    assert await tier_of(stack.services, user_id) == "free"


async def test_yookassa_crash_after_the_refund_is_finished_by_its_notice(
    stack: PaymentStack, fake_yookassa: FakeYooKassa, monkeypatch: pytest.MonkeyPatch
) -> None:
    boss = await admin(stack.services)
    user_id = await new_user(stack.services)
    payment_id = await paid_pro(stack, fake_yookassa, user_id)
    refunds = refunds_of(stack)
    fail_once(refunds, monkeypatch)

    with pytest.raises(ConnectionResetError):
        await refunds.refund(payment_id, admin_user_id=boss, reason="crash")
    # The money went back; our record is only the claim.
    (refund_id,) = fake_yookassa.refunds
    assert await tier_of(stack.services, user_id) == "pro"
    claim = (await snapshot(stack.services))["ledger"][-1]
    assert claim == (f"refund:{payment_id}", "refund", "requested", YOO_KOPECKS)
    # Pressed again meanwhile: under way, no second refund.
    with pytest.raises(RefundInProgress):
        await refunds.refund(payment_id, admin_user_id=boss, reason=None)

    await notify(stack, fake_yookassa.notification("refund.succeeded", refund_id))
    await drain(stack)

    after = await snapshot(stack.services)
    assert after["ledger"][-1] == (f"refund:{payment_id}", "refund", "succeeded", YOO_KOPECKS)
    assert after["history"] == ["new_subscription", "refund"]
    assert after["notices"] == ["plan.activated", "plan.refunded"]
    (entry,) = await audit_rows(stack.services)
    assert (entry.actor_user_id, entry.details["outcome"], entry.details["reason"]) == (
        boss,
        "refunded",
        "crash",
    )
    with pytest.raises(AlreadyRefunded):
        await refunds.refund(payment_id, admin_user_id=boss, reason=None)
    assert len(fake_yookassa.refund_requests) == 1


async def test_yookassa_pending_refund_changes_the_plan_when_it_succeeds(
    stack: PaymentStack, fake_yookassa: FakeYooKassa
) -> None:
    boss = await admin(stack.services)
    user_id = await new_user(stack.services)
    payment_id = await paid_pro(stack, fake_yookassa, user_id)
    fake_yookassa.refund_status = "pending"

    result = await refunds_of(stack).refund(payment_id, admin_user_id=boss, reason=None)

    assert result.status == "pending" and result.before == result.after
    assert "processing it" in result.text("en")
    assert await tier_of(stack.services, user_id) == "pro"
    with pytest.raises(RefundInProgress):
        await refunds_of(stack).refund(payment_id, admin_user_id=boss, reason=None)
    assert result.provider_refund_id is not None
    fake_yookassa.finish_refund(result.provider_refund_id)
    await notify(stack, fake_yookassa.notification("refund.succeeded", result.provider_refund_id))
    await drain(stack)
    assert await tier_of(stack.services, user_id) == "free"
    assert [a.details["outcome"] for a in await audit_rows(stack.services)] == [
        "pending",
        "refunded",
    ]
    assert len(fake_yookassa.refund_requests) == 1


async def test_yookassa_refusal_frees_the_payment_for_another_try(
    stack: PaymentStack, fake_yookassa: FakeYooKassa
) -> None:
    boss = await admin(stack.services)
    user_id = await new_user(stack.services)
    payment_id = await paid_pro(stack, fake_yookassa, user_id)
    row_id = await ledger_id(stack.services, payment_id)
    fake_yookassa.set_status(payment_id, "waiting_for_capture", paid=True)

    with pytest.raises(RefundRefused) as refused:
        await refunds_of(stack).refund(payment_id, admin_user_id=boss, reason=None)

    assert "succeeded status" in refused.value.reason
    assert refused.value.user_message.startswith("YooKassa refused the refund: ")
    assert error_text("ru", refused.value).startswith("YooKassa отказал в возврате: ")
    assert await tier_of(stack.services, user_id) == "pro"
    assert (await snapshot(stack.services))["ledger"][-1][2] == "failed"
    # Tried again once YooKassa allows it: a new idempotence key, one refund.
    fake_yookassa.set_status(payment_id, "succeeded", paid=True)
    await refunds_of(stack).refund(payment_id, admin_user_id=boss, reason=None)
    keys = [c.idempotence_key for c in fake_yookassa.refund_requests]
    assert keys == [f"oneai-refund-{row_id}-1", f"oneai-refund-{row_id}-2"]
    assert len(fake_yookassa.refunds) == 1
    assert await tier_of(stack.services, user_id) == "free"
    assert [a.details["outcome"] for a in await audit_rows(stack.services)] == [
        "refused",
        "refunded",
    ]


# -- Razorpay -------------------------------------------------------------------------


async def test_razorpay_refund_end_to_end(stack: PaymentStack, fake_razorpay: FakeRazorpay) -> None:
    boss = await admin(stack.services)
    user_id = await new_user(stack.services)
    payment_id = await razorpay_paid(stack, fake_razorpay, user_id)
    row_id = await ledger_id(stack.services, payment_id)

    result = await refunds_of(stack).refund(payment_id, admin_user_id=boss, reason="duplicate")

    (call,) = fake_razorpay.refund_requests
    assert call.path == f"/v1/payments/{payment_id}/refund"
    assert call.headers["x-refund-idempotency"] == f"oneai-refund-{row_id}-1"
    assert call.body["amount"] == RZP_PAISE
    (refund_id,) = fake_razorpay.refunds
    assert fake_razorpay.payments[payment_id]["status"] == "refunded"
    assert (result.status, result.provider_refund_id) == ("refunded", refund_id)
    assert (result.before.tier, result.after.tier) == (Tier.PRO, Tier.FREE)
    after = await snapshot(stack.services)
    assert after["ledger"] == [
        (payment_id, "payment", "refunded", RZP_PAISE),
        (f"refund:{payment_id}", "refund", "succeeded", RZP_PAISE),
    ]
    assert after["history"] == ["new_subscription", "refund"]
    assert after["notices"] == ["plan.activated", "plan.refunded"]
    (entry,) = await audit_rows(stack.services)
    assert (entry.actor_user_id, entry.target_user_id, entry.details["refund_id"]) == (
        boss,
        user_id,
        refund_id,
    )

    # refund.processed that follows (twice, once under another event id): nothing more.
    body = fake_razorpay.refund_event(refund_id)
    first = await post_event(stack, body, event_id="evt_refund_1")
    second = await post_event(stack, body, event_id="evt_refund_2")
    assert (first.status, first.body["status"]) == (200, "recorded")
    assert (second.status, second.body["status"]) == (200, "recorded")
    assert await snapshot(stack.services) == after


async def test_a_refunded_razorpay_subscription_stops_renewing(
    stack: PaymentStack, fake_razorpay: FakeRazorpay
) -> None:
    user_id = await new_user(stack.services)
    payment_id = await razorpay_paid(stack, fake_razorpay, user_id)
    (sub_id,) = fake_razorpay.subscriptions

    result = await refunds_of(stack).refund(payment_id, admin_user_id=None, reason=None)

    assert (result.before.tier, result.after.tier, result.renewals) == (
        Tier.PRO,
        Tier.FREE,
        "stopped",
    )
    # Cancelled at the end of the cycle that was refunded: no charge follows it.
    assert fake_razorpay.subscriptions[sub_id]["has_scheduled_changes"] is True
    assert "Its renewals at Razorpay are stopped." in result.text("en")


async def test_razorpay_concurrent_presses_call_the_provider_once(
    stack: PaymentStack, fake_razorpay: FakeRazorpay
) -> None:
    user_id = await new_user(stack.services)
    payment_id = await razorpay_paid(stack, fake_razorpay, user_id)

    outcomes = await asyncio.gather(
        *(refunds_of(stack).refund(payment_id, admin_user_id=None, reason=None) for _ in range(4)),
        return_exceptions=True,
    )

    assert sum(isinstance(o, RefundResult) for o in outcomes) == 1, outcomes
    assert sum(isinstance(o, AlreadyRefunded) for o in outcomes) == 3, outcomes
    assert len(fake_razorpay.refund_requests) == 1
    assert (await snapshot(stack.services))["history"] == ["new_subscription", "refund"]


async def test_razorpay_crash_then_a_later_press_gets_the_same_refund(
    stack: PaymentStack, fake_razorpay: FakeRazorpay, monkeypatch: pytest.MonkeyPatch
) -> None:
    boss = await admin(stack.services)
    user_id = await new_user(stack.services)
    payment_id = await razorpay_paid(stack, fake_razorpay, user_id)
    refunds = refunds_of(stack)
    fail_once(refunds, monkeypatch)

    with pytest.raises(ConnectionResetError):
        await refunds.refund(payment_id, admin_user_id=boss, reason=None)
    with pytest.raises(RefundInProgress):
        await refunds.refund(payment_id, admin_user_id=boss, reason=None)
    assert len(fake_razorpay.refund_requests) == 1

    # Nobody finished the claim in time (no webhook came): the next press asks
    # Razorpay again under the same key and gets the refund it made.
    refunds.claim_ttl = timedelta(0)
    result = await refunds.refund(payment_id, admin_user_id=boss, reason=None)

    requests = fake_razorpay.refund_requests
    assert len(requests) == 2
    assert (
        requests[0].headers["x-refund-idempotency"] == requests[1].headers["x-refund-idempotency"]
    )
    assert len(fake_razorpay.refunds) == 1
    assert result.provider_refund_id == next(iter(fake_razorpay.refunds))
    assert await tier_of(stack.services, user_id) == "free"
    assert (await snapshot(stack.services))["history"] == ["new_subscription", "refund"]


async def test_razorpay_refund_made_in_the_dashboard_first(
    stack: PaymentStack, fake_razorpay: FakeRazorpay
) -> None:
    """Someone refunded it at Razorpay and its webhook has not come: Razorpay says
    it is refunded already, and that is recorded as the refund."""
    user_id = await new_user(stack.services)
    payment_id = await razorpay_paid(stack, fake_razorpay, user_id)
    fake_razorpay.payments[payment_id].update(status="refunded", amount_refunded=RZP_PAISE)

    result = await refunds_of(stack).refund(payment_id, admin_user_id=None, reason=None)

    assert result.status == "refunded" and result.after.tier is Tier.FREE
    assert len(fake_razorpay.refunds) == 0
    assert (await snapshot(stack.services))["ledger"][-1][:3] == (
        f"refund:{payment_id}",
        "refund",
        "succeeded",
    )


async def test_razorpay_refund_webhook_alone_ends_the_plan_once(
    stack: PaymentStack, fake_razorpay: FakeRazorpay
) -> None:
    """A refund made in the dashboard reaches the plan through refund.processed."""
    user_id = await new_user(stack.services)
    payment_id = await razorpay_paid(stack, fake_razorpay, user_id)
    refund = await asyncio.to_thread(
        stack.payments.razorpay.client.payment.refund,  # type: ignore[union-attr]
        payment_id,
        {"amount": RZP_PAISE},
    )

    body = fake_razorpay.refund_event(str(refund["id"]))
    answers = await asyncio.gather(*(post_event(stack, body) for _ in range(3)))

    assert sorted(a.body["status"] for a in answers) == ["applied", "recorded", "recorded"]
    after = await snapshot(stack.services)
    assert after["history"] == ["new_subscription", "refund"]
    assert after["notices"] == ["plan.activated", "plan.refunded"]
    with pytest.raises(AlreadyRefunded):
        await refunds_of(stack).refund(payment_id, admin_user_id=None, reason=None)
    assert len(fake_razorpay.refund_requests) == 1  # the dashboard's


# -- errors ---------------------------------------------------------------------------


async def test_refusals_have_clear_messages(
    stack: PaymentStack, fake_yookassa: FakeYooKassa
) -> None:
    refunds = refunds_of(stack)
    user_id = await new_user(stack.services)
    payment_id = await paid_pro(stack, fake_yookassa, user_id)
    await refunds.refund(payment_id, admin_user_id=None, reason=None)
    refund_row = await ledger_id(stack.services, f"refund:{payment_id}")
    async with stack.db.write() as session:
        for provider, charge in (("telegram_stars", "stars-1"), (TELEGRAM_PROVIDER, "tp-1")):
            session.add(
                Payment(
                    user_id=user_id,
                    provider=provider,
                    provider_charge_id=charge,
                    kind="payment",
                    status="succeeded",
                    tier="pro",
                    amount_minor=500,
                    currency="XTR",
                    payload={},
                )
            )

    cases: list[tuple[int | str, type[RefundError], str]] = [
        (999_999, PaymentNotFound, "There is no payment 999999 in the ledger."),
        ("pay_unknown", PaymentNotFound, "There is no payment pay_unknown in the ledger."),
        (payment_id, AlreadyRefunded, "was refunded already"),
        (refund_row, NothingToRefund, "nothing to refund"),
        ("stars-1", ProviderNotConfigured, "Telegram Stars is not set up on this bot"),
        ("tp-1", RefundNotSupported, "cannot be refunded from the bot"),
    ]
    for target, kind, words in cases:
        with pytest.raises(kind) as refused:
            await refunds.refund(target, admin_user_id=None, reason=None)
        assert words in refused.value.user_message
        assert error_text("ru", refused.value) != refused.value.user_message
    with pytest.raises(ValueError):
        await refunds.refund(payment_id, admin_user_id=123_456, reason=None)
    # Every refusal text exists in both languages.
    codes = [c.code for c in RefundError.__subclasses__()] + [RefundInProgress.code]
    for code in [*codes, RefundOutcomeUnknown.code]:
        assert f"error.{code}" in TEXTS["en"] and f"error.{code}" in TEXTS["ru"]


async def test_a_provider_that_does_not_answer_leaves_the_outcome_open(
    stack: PaymentStack, fake_yookassa: FakeYooKassa
) -> None:
    user_id = await new_user(stack.services)
    payment_id = await paid_pro(stack, fake_yookassa, user_id)
    yookassa = stack.payments.yookassa
    assert yookassa is not None
    yookassa.sdk.timeout = 0.2
    fake_yookassa.refund_delay = 1.0

    with pytest.raises(RefundOutcomeUnknown) as unknown:
        await refunds_of(stack).refund(payment_id, admin_user_id=None, reason=None)

    assert "may have gone through" in unknown.value.user_message
    assert await tier_of(stack.services, user_id) == "pro"
    assert (await snapshot(stack.services))["ledger"][-1][2] == "requested"
    with pytest.raises(RefundInProgress):
        await refunds_of(stack).refund(payment_id, admin_user_id=None, reason=None)


# -- Telegram Stars -------------------------------------------------------------------


@pytest.fixture
async def tg() -> AsyncIterator[FakeTelegram]:
    async with FakeTelegram(per_chat_interval=None, global_per_second=None) as fake:
        fake.user(USER, first_name="Ann", language_code="en")
        yield fake


@pytest.fixture
async def telegram(
    services: Services, tg: FakeTelegram, fake_llm: FakeLLM
) -> AsyncIterator[tuple[Harness, Payments]]:
    """The Telegram adapter polling the fake Bot API, with Payments whose refunds
    go through its aiogram Bot."""
    payments = Payments.build(services)
    bot = Bot(tg.token, session=AiohttpSession(api=TelegramAPIServer.from_base(tg.url)))
    dispatcher, answerer = build_dispatcher(
        services, bot, settings=telegram_settings(tg), payments_service=payments
    )
    payments.refunds.use_telegram(bot.refund_star_payment)
    task = asyncio.create_task(
        dispatcher.start_polling(bot, handle_signals=False, polling_timeout=1)
    )
    await tg.wait_for(lambda: tg.waiting_pollers > 0 or bool(tg.calls_of("getUpdates")))
    try:
        yield Harness(tg, fake_llm, bot, dispatcher, answerer, services), payments
    finally:
        await dispatcher.stop_polling()
        await asyncio.wait_for(task, 10)
        await bot.session.close()


async def stars_paid(app: Harness, payments: Payments, charge: str) -> int:
    """Ann buys Pro for Stars in the chat: our user id."""
    user = await app.services.accounts.upsert(PlatformProfile("telegram", str(USER)))
    spec = await payments.invoices.new_invoice(user.id, Tier.PRO)
    assert spec is not None
    query = app.tg.pre_checkout(USER, spec.payload, "XTR", spec.amount)
    await until(lambda: app.tg.pre_checkouts[query].answered)
    app.tg.successful_payment(USER, spec.payload, "XTR", spec.amount, charge)
    await until(lambda: any("Pro is active" in (m.text or "") for m in app.bot_messages()))
    return user.id


def spy_refund_notices(payments: Payments, monkeypatch: pytest.MonkeyPatch) -> list[Settled]:
    """What the dispatcher made of each refunded_payment message."""
    seen: list[Settled] = []
    recorded = payments.invoices.refunded

    async def refunded(paid: PaidInvoice) -> Settled | None:
        settled = await recorded(paid)
        assert settled is not None
        seen.append(settled)
        return settled

    monkeypatch.setattr(payments.invoices, "refunded", refunded)
    return seen


def refunded_texts(app: Harness) -> list[str]:
    return [m.text or "" for m in app.bot_messages() if "refunded" in (m.text or "")]


async def test_stars_refund_end_to_end(
    telegram: tuple[Harness, Payments], monkeypatch: pytest.MonkeyPatch
) -> None:
    app, payments = telegram
    boss = await admin(app.services)
    user_id = await stars_paid(app, payments, "charge-1")
    notices = spy_refund_notices(payments, monkeypatch)

    result = await payments.refunds.refund("charge-1", admin_user_id=boss, reason="asked")

    (call,) = app.tg.calls_of("refundStarPayment")
    assert call.ok
    assert call.params["user_id"] == USER
    assert call.params["telegram_payment_charge_id"] == "charge-1"
    assert app.tg.charges["charge-1"].refunded
    assert (result.status, result.before.tier, result.after.tier) == (
        "refunded",
        Tier.PRO,
        Tier.FREE,
    )
    assert "Refunded 500 ⭐ (Telegram Stars" in result.text("en")
    # Ann hears it once; Telegram's refunded_payment message changes nothing more.
    await until(lambda: bool(refunded_texts(app)) and bool(notices))
    await asyncio.sleep(0.3)
    assert refunded_texts(app) == ["Your Pro payment was refunded; you are on Free now."]
    # Whichever came first, the press's answer or the message, the other is a no-op.
    assert len(notices) == 1
    assert notices[0].duplicate or result.change is None
    after = await snapshot(app.services)
    assert after["ledger"] == [
        ("charge-1", "payment", "refunded", STARS_PRICE),
        (refund_key("charge-1"), "refund", "succeeded", STARS_PRICE),
    ]
    assert after["history"] == ["new_subscription", "refund"]
    assert after["audit"] == 1
    assert await tier_of(app.services, user_id) == "free"
    # Pressed again: already refunded, and Telegram is not asked again.
    with pytest.raises(AlreadyRefunded):
        await payments.refunds.refund("charge-1", admin_user_id=boss, reason=None)
    assert len(app.tg.calls_of("refundStarPayment")) == 1
    assert await snapshot(app.services) == after


async def test_stars_concurrent_presses_call_telegram_once(
    telegram: tuple[Harness, Payments],
) -> None:
    app, payments = telegram
    user_id = await stars_paid(app, payments, "charge-2")

    outcomes = await asyncio.gather(
        *(payments.refunds.refund("charge-2", admin_user_id=None, reason=None) for _ in range(5)),
        return_exceptions=True,
    )

    assert sum(isinstance(o, RefundResult) for o in outcomes) == 1, outcomes
    assert sum(isinstance(o, AlreadyRefunded) for o in outcomes) == 4, outcomes
    assert len(app.tg.calls_of("refundStarPayment")) == 1
    await until(lambda: bool(refunded_texts(app)))
    await asyncio.sleep(0.3)
    assert len(refunded_texts(app)) == 1
    assert await tier_of(app.services, user_id) == "free"


async def test_stars_refund_after_a_crash_is_finished_by_telegrams_message(
    telegram: tuple[Harness, Payments], monkeypatch: pytest.MonkeyPatch
) -> None:
    app, payments = telegram
    boss = await admin(app.services)
    user_id = await stars_paid(app, payments, "charge-3")
    fail_once(payments.refunds, monkeypatch)

    with pytest.raises(ConnectionResetError):
        await payments.refunds.refund("charge-3", admin_user_id=boss, reason="crash")

    # Telegram refunded it and says so in the chat: that completes the claim.
    await until(lambda: bool(refunded_texts(app)))
    assert await tier_of(app.services, user_id) == "free"
    (entry,) = await audit_rows(app.services)
    assert (entry.actor_user_id, entry.details["outcome"]) == (boss, "refunded")
    # A later press after the claim's time: Telegram says already refunded.
    payments.refunds.claim_ttl = timedelta(0)
    with pytest.raises(AlreadyRefunded):
        await payments.refunds.refund("charge-3", admin_user_id=boss, reason=None)
    assert len(app.tg.calls_of("refundStarPayment")) == 1


async def test_stars_refused_by_telegram(telegram: tuple[Harness, Payments]) -> None:
    app, payments = telegram
    user_id = await stars_paid(app, payments, "charge-4")
    app.tg.charges.pop("charge-4")  # Telegram does not know the charge

    with pytest.raises(RefundRefused) as refused:
        await payments.refunds.refund("charge-4", admin_user_id=None, reason=None)

    assert "CHARGE_NOT_FOUND" in refused.value.reason
    assert await tier_of(app.services, user_id) == "pro"
    assert (await snapshot(app.services))["ledger"][-1][2] == "failed"
