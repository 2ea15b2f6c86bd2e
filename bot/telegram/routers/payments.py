"""Payment updates: pre-checkout (answered within Telegram's 10 seconds), the
successful payment that grants the plan, and refunds. The person hears of the
change through the outbox, once, after the change is committed."""

from __future__ import annotations

import asyncio
import logging
from collections.abc import Awaitable, Callable
from typing import TypeVar

from aiogram import F, Router
from aiogram.types import Message, PreCheckoutQuery

from bot.telegram.replies import reply
from core.db.models import User
from core.i18n import t
from payments.service import Payments
from payments.stars import PaidInvoice

log = logging.getLogger(__name__)

# Telegram cancels the payment if the answer takes more than 10 s.
PRE_CHECKOUT_BUDGET = 7.0
RETRY_DELAYS = (0.2, 0.5, 1.0, 2.0, 4.0)

_T = TypeVar("_T")


async def pre_checkout(query: PreCheckoutQuery, user: User, lang: str, payments: Payments) -> None:
    try:
        async with asyncio.timeout(PRE_CHECKOUT_BUDGET):
            error = await payments.invoices.pre_checkout(
                user.id, query.invoice_payload, query.currency, query.total_amount
            )
    except TimeoutError:
        error = "pay.error.busy"
    if error is not None:
        log.info("pre-checkout %s of user %d refused: %s", query.id, user.id, error)
        await query.answer(ok=False, error_message=t(lang, error))
        return
    await query.answer(ok=True)


def _paid(message: Message, user: User) -> PaidInvoice:
    payment = message.successful_payment or message.refunded_payment
    assert payment is not None
    successful = message.successful_payment
    return PaidInvoice(
        user_id=user.id,
        payload=payment.invoice_payload,
        currency=payment.currency,
        total_amount=payment.total_amount,
        charge_id=payment.telegram_payment_charge_id,
        provider_charge_id=payment.provider_payment_charge_id or "",
        is_recurring=bool(successful and successful.is_recurring),
        is_first_recurring=bool(successful and successful.is_first_recurring),
        subscription_expiration_date=(
            successful.subscription_expiration_date if successful else None
        ),
    )


async def _persistently(work: Callable[[], Awaitable[_T]], what: str) -> _T:
    """Telegram sends a payment update once: a passing database error must not lose
    it. Retrying is safe, the ledger's unique key makes it count once."""
    for delay in RETRY_DELAYS:
        try:
            return await work()
        except Exception as exc:
            log.warning("%s failed (%s); retrying in %.1f s", what, exc, delay)
            await asyncio.sleep(delay)
    return await work()


async def successful_payment(message: Message, user: User, lang: str, payments: Payments) -> None:
    paid = _paid(message, user)
    try:
        settled = await _persistently(lambda: payments.invoices.paid(paid), "recording a payment")
    except Exception:
        # Everything needed to apply it by hand, in the log that operators keep.
        log.critical("payment NOT recorded, apply by hand: %r", paid, exc_info=True)
        await reply(message, t(lang, "pay.unknown"))
        return
    if settled is None:
        # Money arrived for no order of ours: keep the evidence, tell the person.
        log.error(
            "payment %s of user %d (%s %d) matches no order: payload %r",
            paid.charge_id,
            user.id,
            paid.currency,
            paid.total_amount,
            paid.payload,
        )
        await reply(message, t(lang, "pay.unknown"))


async def refunded_payment(message: Message, user: User, payments: Payments) -> None:
    refund = _paid(message, user)
    try:
        await _persistently(lambda: payments.invoices.refunded(refund), "recording a refund")
    except Exception:
        log.critical("refund NOT recorded, apply by hand: %r", refund, exc_info=True)


def create_router() -> Router:
    router = Router(name="payments")
    router.pre_checkout_query.register(pre_checkout)
    router.message.register(successful_payment, F.successful_payment)
    router.message.register(refunded_payment, F.refunded_payment)
    return router
