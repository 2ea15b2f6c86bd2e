"""YooKassa renewal by saved card (YOOKASSA_AUTORENEW): the first payment saves the
card, the plan is charged to it before its end, once per period however often the
job runs, and a refused card tells the person the plan will end."""

from __future__ import annotations

import asyncio
from datetime import timedelta

import pytest
from sqlalchemy import select, update

from core.clock import utcnow
from core.db.models import OutboxMessage, Payment, Subscription, SubscriptionHistory
from core.tiers import Tier
from payments.yookassa_provider import YooKassaProvider
from tests.fakes.yookassa_server import FakeYooKassa
from tests.payments.conftest import PaymentStack, StartStack, yookassa_settings
from tests.payments.test_yookassa import notify
from tests.support.chat import new_user

SOON = timedelta(days=1)


@pytest.fixture
async def yoo(start_stack: StartStack, fake_yookassa: FakeYooKassa) -> PaymentStack:
    return await start_stack(yookassa=yookassa_settings(fake_yookassa, autorenew=True))


def provider(stack: PaymentStack) -> YooKassaProvider:
    assert stack.payments.yookassa is not None
    return stack.payments.yookassa


async def subscribed(stack: PaymentStack, fake: FakeYooKassa) -> tuple[int, str]:
    """A person who paid for Pro with a card YooKassa saved."""
    user_id = await new_user(stack.services)
    checkout = await provider(stack).checkout(user_id, Tier.PRO, "telegram")
    fake.succeed(checkout.provider_id)
    answer = await notify(stack, fake.notification("payment.succeeded", checkout.provider_id))
    assert answer.status == 200
    await provider(stack).drain()
    return user_id, checkout.provider_id


async def current(stack: PaymentStack, user_id: int) -> Subscription:
    async with stack.db.read() as session:
        sub = await stack.services.subscriptions.current(session, user_id)
    assert sub is not None
    return sub


async def ends_in(stack: PaymentStack, user_id: int, delta: timedelta) -> None:
    async with stack.db.write() as session:
        await session.execute(
            update(Subscription)
            .where(Subscription.user_id == user_id, Subscription.is_current)
            .values(current_period_end=utcnow() + delta)
        )


async def kinds(stack: PaymentStack, user_id: int) -> list[str]:
    async with stack.db.read() as session:
        return list(
            (
                await session.scalars(
                    select(OutboxMessage.kind)
                    .where(OutboxMessage.user_id == user_id)
                    .order_by(OutboxMessage.id)
                )
            ).all()
        )


async def test_first_payment_saves_the_card(yoo: PaymentStack, fake_yookassa: FakeYooKassa) -> None:
    user_id, payment_id = await subscribed(yoo, fake_yookassa)
    (create,) = fake_yookassa.create_requests
    assert create.body["save_payment_method"] is True
    sub = await current(yoo, user_id)
    assert sub.meta["payment_method_id"] == payment_id
    assert sub.meta["recurring"] is True
    view = await yoo.services.subscriptions.view(user_id)
    assert view.recurring


async def test_renewal_charges_the_saved_card_once_per_period(
    yoo: PaymentStack, fake_yookassa: FakeYooKassa
) -> None:
    user_id, payment_id = await subscribed(yoo, fake_yookassa)
    assert await provider(yoo).renew_due(SOON) == 0  # 30 days left: not yet
    await ends_in(yoo, user_id, timedelta(hours=12))
    old_end = (await current(yoo, user_id)).current_period_end
    # Three runs at once (a rerun, a second process): one charge.
    results = await asyncio.gather(*(provider(yoo).renew_due(SOON) for _ in range(3)))
    assert sum(results) == 1
    renewals = [c for c in fake_yookassa.create_requests if "payment_method_id" in c.body]
    assert len(renewals) == 1
    body = renewals[0].body
    assert body["payment_method_id"] == payment_id
    assert "confirmation" not in body
    assert body["amount"] == {"value": "990.00", "currency": "RUB"}
    sub = await current(yoo, user_id)
    assert sub.current_period_end == old_end + timedelta(days=30)
    assert sub.status == "active"
    async with yoo.db.read() as session:
        kinds_in_ledger = (await session.scalars(select(Payment.kind))).all()
        reasons = (
            await session.scalars(
                select(SubscriptionHistory.change_reason).order_by(SubscriptionHistory.id)
            )
        ).all()
    assert sorted(kinds_in_ledger) == ["payment", "payment"]
    assert list(reasons) == ["new_subscription", "renewal"]
    assert await kinds(yoo, user_id) == ["plan.activated", "plan.renewed"]
    # YooKassa's own notification of that charge changes nothing more.
    renewal_id = next(pid for pid, p in fake_yookassa.payments.items() if p["id"] != payment_id)
    await notify(yoo, fake_yookassa.notification("payment.succeeded", renewal_id))
    await provider(yoo).drain()
    assert (await current(yoo, user_id)).current_period_end == old_end + timedelta(days=30)
    assert await provider(yoo).renew_due(SOON) == 0


async def test_a_refused_card_marks_the_plan_unpaid(
    yoo: PaymentStack, fake_yookassa: FakeYooKassa
) -> None:
    user_id, _ = await subscribed(yoo, fake_yookassa)
    await ends_in(yoo, user_id, timedelta(hours=2))
    end = (await current(yoo, user_id)).current_period_end
    fake_yookassa.decline_saved = True
    assert await provider(yoo).renew_due(SOON) == 0
    sub = await current(yoo, user_id)
    assert (sub.status, sub.current_period_end) == ("unpaid", end)
    assert await kinds(yoo, user_id) == ["plan.activated", "plan.unpaid"]
    # Not tried again for the same period.
    assert await provider(yoo).renew_due(SOON) == 0
    assert len([c for c in fake_yookassa.create_requests if "payment_method_id" in c.body]) == 1


async def test_a_cancelled_plan_is_not_renewed(
    yoo: PaymentStack, fake_yookassa: FakeYooKassa
) -> None:
    user_id, _ = await subscribed(yoo, fake_yookassa)
    async with yoo.db.write() as session:
        assert await yoo.services.subscriptions.cancel(session, user_id) is not None
    await ends_in(yoo, user_id, timedelta(hours=2))
    assert await provider(yoo).renew_due(SOON) == 0
    assert len(fake_yookassa.create_requests) == 1  # the first purchase only


async def test_without_autorenew_nothing_is_saved_or_charged(
    start_stack: StartStack, fake_yookassa: FakeYooKassa
) -> None:
    stack = await start_stack(yookassa=yookassa_settings(fake_yookassa))
    user_id, _ = await subscribed(stack, fake_yookassa)
    assert "save_payment_method" not in fake_yookassa.create_requests[0].body
    await ends_in(stack, user_id, timedelta(hours=2))
    assert await provider(stack).renew_due(SOON) == 0
    assert "payment_method_id" not in (await current(stack, user_id)).meta
