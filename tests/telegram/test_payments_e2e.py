"""Buying a plan with Telegram Stars, end to end: /plan, the invoice, pre-checkout,
successful_payment, the notice from the outbox, renewals, cancellation, refunds,
and replays. The real aiogram stack against the fake Bot API over HTTP."""

from __future__ import annotations

import asyncio
import time
from datetime import UTC, datetime, timedelta
from typing import Any

import pytest
from pydantic import SecretStr
from sqlalchemy import func, select
from sqlalchemy.exc import OperationalError

from bot.telegram.callbacks import Buy, PayMethod
from core.config import PaymentSettings, YooKassaSettings
from core.db.models import OutboxMessage, Payment, Subscription, SubscriptionHistory, User
from core.grants import grant
from core.services import Services
from core.subscriptions import Reason
from payments.ledger import Settled
from payments.plans import PlanCatalog
from payments.stars import PaidInvoice, TelegramInvoices
from tests.fakes.llm_server import FakeLLM
from tests.fakes.telegram_server import Call, FakeTelegram, StoredMessage
from tests.fakes.yookassa_server import FakeYooKassa
from tests.telegram.conftest import USER, Harness, start_harness, stop_harness, until

PRO_STARS = 500
STARS = Buy(method=PayMethod.STARS, tier="pro").pack()
MONTHLY = Buy(method=PayMethod.STARS_MONTHLY, tier="pro").pack()


def texts(app: Harness) -> list[str]:
    return [m.text or "" for m in app.bot_messages()]


async def said(app: Harness, fragment: str, count: int = 1) -> StoredMessage:
    await until(lambda: sum(fragment in t for t in texts(app)) >= count)
    return [m for m in app.bot_messages() if fragment in (m.text or "")][-1]


async def count(app: Harness, model: type[object], **where: object) -> int:
    async with app.services.db.read() as session:
        query = select(func.count()).select_from(model)
        for name, value in where.items():
            query = query.where(getattr(model, name) == value)
        return int(await session.scalar(query) or 0)


async def our_user(app: Harness) -> User:
    user = await app.services.accounts.by_identity("telegram", str(USER))
    assert user is not None
    return user


async def open_plan(app: Harness) -> StoredMessage:
    before = sum("Your plan:" in t for t in texts(app))
    app.tg.send_text(USER, "/plan")
    return await said(app, "Your plan:", before + 1)


async def invoice_for(app: Harness, data: str, method: str = "sendInvoice") -> Call:
    before = len(app.tg.calls_of(method))
    menu = await open_plan(app)
    app.tg.press(USER, menu.message_id, data)
    await until(lambda: len([c for c in app.tg.calls_of(method) if c.ok]) > before)
    return [c for c in app.tg.calls_of(method) if c.ok][-1]


async def pay(
    app: Harness,
    payload: str,
    charge: str,
    *,
    amount: int = PRO_STARS,
    expires: int | None = None,
    recurring: bool = False,
    first: bool = False,
) -> None:
    query = app.tg.pre_checkout(USER, payload, "XTR", amount)
    await until(lambda: app.tg.pre_checkouts[query].answered)
    assert app.tg.pre_checkouts[query].ok, app.tg.pre_checkouts[query].error_message
    app.tg.successful_payment(
        USER,
        payload,
        "XTR",
        amount,
        charge,
        is_recurring=recurring,
        is_first_recurring=first,
        subscription_expiration_date=expires,
    )


async def test_plan_offers_stars_and_buying_pro_shows_new_quotas(app: Harness) -> None:
    menu = await open_plan(app)
    assert "Your plan: Free" in (menu.text or "")
    assert [b["callback_data"] for b in menu.buttons] == [STARS, MONTHLY]
    invoice = await invoice_for(app, STARS)
    params = invoice.params
    assert params["currency"] == "XTR"
    assert params.get("provider_token", "") == ""
    assert [p["amount"] for p in params["prices"]] == [PRO_STARS]
    await pay(app, str(params["payload"]), "charge-1")
    await said(app, "✅ Pro is active until")
    user = await our_user(app)
    assert (user.tier, user.tier_status) == ("pro", "active")
    # Pre-checkout was answered well within Telegram's 10 seconds.
    (query,) = app.tg.pre_checkouts.values()
    assert query.answer_delay is not None and query.answer_delay < 2
    app.tg.send_text(USER, "/usage")
    usage = await said(app, "📊 Plan: Pro")
    assert "0/500" in (usage.text or "")
    plan = await open_plan(app)
    assert "Your plan: Pro" in (plan.text or "")
    assert "Status: active · until" in (plan.text or "")


async def test_ten_copies_of_one_payment_activate_once(app: Harness) -> None:
    invoice = await invoice_for(app, STARS)
    payload = str(invoice.params["payload"])
    query = app.tg.pre_checkout(USER, payload, "XTR", PRO_STARS)
    await until(lambda: app.tg.pre_checkouts[query].answered)
    for _ in range(10):
        app.tg.successful_payment(USER, payload, "XTR", PRO_STARS, "charge-dup")
    await said(app, "✅ Pro is active")
    await asyncio.sleep(0.5)  # give any duplicate time to show up
    assert sum("Pro is active" in t for t in texts(app)) == 1
    assert await count(app, Payment, provider_charge_id="charge-dup") == 1
    assert await count(app, SubscriptionHistory) == 1
    assert await count(app, OutboxMessage) == 1
    assert await count(app, Subscription) == 1


async def test_pre_checkout_refuses_forged_and_changed_invoices(app: Harness) -> None:
    invoice = await invoice_for(app, STARS)
    payload = str(invoice.params["payload"])
    cases = [
        ("not-an-order", PRO_STARS, "no longer valid"),
        ("0" * 32, PRO_STARS, "no longer valid"),
        (payload, PRO_STARS - 1, "price has changed"),
    ]
    for forged, amount, reason in cases:
        query = app.tg.pre_checkout(USER, forged, "XTR", amount)
        await until(lambda q=query: app.tg.pre_checkouts[q].answered)  # type: ignore[misc]
        answer = app.tg.pre_checkouts[query]
        assert answer.ok is False
        assert reason in (answer.error_message or "")
    # Someone else's invoice is not yours to pay.
    app.tg.user(2002, first_name="Eve")
    query = app.tg.pre_checkout(2002, payload, "XTR", PRO_STARS)
    await until(lambda: app.tg.pre_checkouts[query].answered)
    assert app.tg.pre_checkouts[query].ok is False
    assert await count(app, Payment) == 0


async def test_a_banned_person_cannot_pay(app: Harness) -> None:
    invoice = await invoice_for(app, STARS)
    user = await our_user(app)
    await app.services.accounts.set_banned(user.id, True)
    query = app.tg.pre_checkout(USER, str(invoice.params["payload"]), "XTR", PRO_STARS)
    await until(lambda: app.tg.pre_checkouts[query].answered)
    assert app.tg.pre_checkouts[query].ok is False


async def test_a_payment_for_no_order_is_logged_and_the_person_told(app: Harness) -> None:
    await open_plan(app)
    app.tg.successful_payment(USER, "f" * 32, "XTR", PRO_STARS, "charge-x")
    await said(app, "could not match it to an order")
    assert (await our_user(app)).tier == "free"


async def test_monthly_stars_subscription_renews_cancels_and_refunds(app: Harness) -> None:
    link = await invoice_for(app, MONTHLY, "createInvoiceLink")
    assert link.params["subscription_period"] == 2592000
    offer = await said(app, "a month in Telegram Stars")
    assert offer.buttons[0]["url"] == link.result
    payload = str(link.params["payload"])
    first_end = int(time.time()) + 30 * 86400
    await pay(app, payload, "sub-1", expires=first_end, recurring=True, first=True)
    await said(app, "✅ Pro is active")
    # Telegram renews: a new charge, the same payload, a later expiration date.
    second_end = first_end + 30 * 86400
    app.tg.successful_payment(
        USER, payload, "XTR", PRO_STARS, "sub-2", is_recurring=True,
        subscription_expiration_date=second_end,
    )  # fmt: skip
    await said(app, "🔄 Pro is extended until")
    async with app.services.db.read() as session:
        sub = await session.scalar(select(Subscription).where(Subscription.is_current))
    assert sub is not None
    assert sub.current_period_end == datetime.fromtimestamp(second_end, UTC)
    assert sub.provider_subscription_id == "sub-1"
    plan = await open_plan(app)
    assert "renews automatically" in (plan.text or "")
    # Cancelling stops Telegram's renewals for the first charge's subscription.
    app.tg.send_text(USER, "/cancel_subscription")
    await said(app, "subscription is cancelled. It stays active until")
    (edit,) = app.tg.calls_of("editUserStarSubscription")
    assert edit.params["telegram_payment_charge_id"] == "sub-1"
    assert edit.params["is_canceled"] is True
    assert app.tg.charges["sub-1"].subscription_canceled
    assert (await our_user(app)).tier_status == "cancelled"
    app.tg.send_text(USER, "/cancel_subscription")
    await said(app, "already cancelled")
    # A refund of the renewal takes the plan away, once.
    for _ in range(3):
        app.tg.refunded_payment(USER, payload, "XTR", PRO_STARS, "sub-2")
    await said(app, "payment was refunded; you are on Free now")
    await asyncio.sleep(0.3)
    assert sum("refunded" in t for t in texts(app)) == 1
    assert (await our_user(app)).tier == "free"
    assert await count(app, Payment, kind="refund") == 1


async def test_cancel_subscription_without_a_plan(app: Harness) -> None:
    app.tg.send_text(USER, "/cancel_subscription")
    await said(app, "no subscription to cancel")


async def test_paysupport_answers(app: Harness) -> None:
    app.tg.send_text(USER, "/paysupport")
    await said(app, "Questions about a payment")


async def test_a_forged_buy_button_changes_nothing(app: Harness) -> None:
    menu = await open_plan(app)
    before = len(app.tg.calls)
    for data in ("b:s:enterprise", "b:y:pro", "b:s:nope", "b:z:pro"):
        query = app.tg.press(USER, menu.message_id, data, forge=True)
        await until(lambda q=query: app.tg.callback_queries[q].answered)  # type: ignore[misc]
    assert not app.tg.calls_of("sendInvoice")
    assert not app.tg.calls_of("createInvoiceLink")
    assert len([c for c in app.tg.calls[before:] if c.method == "sendMessage"]) == 0


async def test_an_operator_grant_reaches_the_person(app: Harness) -> None:
    app.tg.send_text(USER, "/help")
    await said(app, "/new")
    change = await grant(app.services, f"telegram:{USER}", "enterprise", 10)
    assert change.new_tier.value == "enterprise"
    notice = await said(app, "✅ Enterprise is active until")
    until_day = (datetime.now(UTC) + timedelta(days=10)).strftime("%Y-%m-%d")
    assert until_day in (notice.text or "")
    assert (await our_user(app)).tier == "enterprise"


async def test_provider_invoice_and_yookassa_link_when_the_operator_turns_them_on(
    services: Services, tg: FakeTelegram, fake_llm: FakeLLM
) -> None:
    async with FakeYooKassa(shop_id="shop", secret_key="key") as yoo:
        settings = services.settings.__dict__  # the sections are cached properties
        # The token is read under its documented name, TELEGRAM_PAYMENT_PROVIDER_TOKEN.
        token: dict[str, Any] = {"TELEGRAM_PAYMENT_PROVIDER_TOKEN": "284685063:TEST:abc"}
        settings["payments"] = PaymentSettings(
            **token,
            telegram_provider_enabled=True,
            telegram_provider_currency="RUB",
            links_in_telegram=True,
        )
        settings["yookassa"] = YooKassaSettings(
            shop_id="shop", secret_key=SecretStr("key"), api_url=yoo.api_url
        )
        app = await start_harness(services, tg, fake_llm)
        try:
            menu = await open_plan(app)
            methods = [str(b["callback_data"]) for b in menu.buttons]
            assert methods == [STARS, MONTHLY, "b:p:pro", "b:y:pro"]
            invoice = await invoice_for(app, "b:p:pro")
            assert invoice.params["currency"] == "RUB"
            assert invoice.params["provider_token"] == "284685063:TEST:abc"
            assert [p["amount"] for p in invoice.params["prices"]] == [99000]
            await open_plan(app)
            menu = [m for m in app.bot_messages() if m.buttons][-1]
            app.tg.press(USER, menu.message_id, "b:y:pro")
            link = await said(app, "Pay on the provider's page")
            (button,) = link.buttons
            assert str(button["url"]).startswith("http")
            (create,) = yoo.create_requests
            assert create.body["amount"] == {"value": "990.00", "currency": "RUB"}
            assert create.body["capture"] is True
            assert create.idempotence_key
        finally:
            await stop_harness(app)


async def test_cancelling_a_one_off_plan_touches_no_telegram_subscription(app: Harness) -> None:
    invoice = await invoice_for(app, STARS)
    await pay(app, str(invoice.params["payload"]), "one-off-1")
    await said(app, "✅ Pro is active")
    app.tg.send_text(USER, "/cancel_subscription")
    await said(app, "subscription is cancelled. It stays active until")
    assert not app.tg.calls_of("editUserStarSubscription")


async def test_one_renewing_subscription_at_a_time(app: Harness) -> None:
    link = await invoice_for(app, MONTHLY, "createInvoiceLink")
    payload = str(link.params["payload"])
    expires = int(time.time()) + 30 * 86400
    await pay(app, payload, "m-1", expires=expires, recurring=True, first=True)
    await said(app, "✅ Pro is active")
    menu = await open_plan(app)
    assert [b["callback_data"] for b in menu.buttons] == [STARS]  # no second monthly
    query = app.tg.press(USER, menu.message_id, MONTHLY, forge=True)
    await until(lambda: app.tg.callback_queries[query].answered)
    assert "already have a subscription that renews" in (app.tg.callback_queries[query].text or "")
    # An old monthly invoice opened again is refused at pre-checkout.
    second = app.tg.pre_checkout(USER, payload, "XTR", PRO_STARS)
    await until(lambda: app.tg.pre_checkouts[second].answered)
    assert app.tg.pre_checkouts[second].ok is False


async def test_a_bigger_plan_is_not_sold_down(app: Harness) -> None:
    invoice = await invoice_for(app, STARS)
    payload = str(invoice.params["payload"])
    await grant(app.services, f"telegram:{USER}", "enterprise", 30)
    await said(app, "Enterprise is active")
    query = app.tg.pre_checkout(USER, payload, "XTR", PRO_STARS)
    await until(lambda: app.tg.pre_checkouts[query].answered)
    assert app.tg.pre_checkouts[query].ok is False
    assert "already includes" in (app.tg.pre_checkouts[query].error_message or "")
    # Money that arrives anyway is recorded, changes nothing, and the person is told.
    app.tg.successful_payment(USER, payload, "XTR", PRO_STARS, "late-1")
    await said(app, "nothing changed. Write to /paysupport")
    assert (await our_user(app)).tier == "enterprise"
    assert await count(app, Payment, provider_charge_id="late-1") == 1


async def test_an_old_invoice_after_a_price_change_is_refused(app: Harness) -> None:
    invoice = await invoice_for(app, STARS)
    payments = app.dispatcher["payments"]
    payments.plans.plans.clear()
    payments.plans.plans.update(PlanCatalog.parse({"pro": {"xtr": 750}}).plans)
    query = app.tg.pre_checkout(USER, str(invoice.params["payload"]), "XTR", PRO_STARS)
    await until(lambda: app.tg.pre_checkouts[query].answered)
    assert app.tg.pre_checkouts[query].ok is False
    assert "price has changed" in (app.tg.pre_checkouts[query].error_message or "")


async def test_a_stars_renewal_after_the_plan_lapsed_renews_the_same_subscription(
    app: Harness,
) -> None:
    link = await invoice_for(app, MONTHLY, "createInvoiceLink")
    payload = str(link.params["payload"])
    expires = int(time.time()) + 30 * 86400
    await pay(app, payload, "r-1", expires=expires, recurring=True, first=True)
    await said(app, "✅ Pro is active")
    user = await our_user(app)
    async with app.services.db.write() as session:
        assert await app.services.subscriptions.end(session, user.id, Reason.EXPIRY)
    app.tg.successful_payment(
        USER, payload, "XTR", PRO_STARS, "r-2", is_recurring=True,
        subscription_expiration_date=expires + 30 * 86400,
    )  # fmt: skip
    await said(app, "✅ Pro is active", 2)
    async with app.services.db.read() as session:
        subs = (await session.scalars(select(Subscription))).all()
    assert len(subs) == 1 and subs[0].is_current
    assert subs[0].provider_subscription_id == "r-1"  # /cancel_subscription can reach it


async def test_a_passing_database_error_does_not_lose_a_payment(
    app: Harness, monkeypatch: pytest.MonkeyPatch
) -> None:
    invoice = await invoice_for(app, STARS)
    invoices: TelegramInvoices = app.dispatcher["payments"].invoices
    real = invoices.paid
    failures = [OperationalError("INSERT", {}, Exception("database is locked"))]

    async def flaky(paid: PaidInvoice) -> Settled | None:
        if failures:
            raise failures.pop()
        return await real(paid)

    monkeypatch.setattr(invoices, "paid", flaky)
    await pay(app, str(invoice.params["payload"]), "flaky-1")
    await said(app, "✅ Pro is active")
    assert not failures
    assert await count(app, Payment, provider_charge_id="flaky-1") == 1
