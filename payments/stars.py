"""Telegram invoices: Telegram Stars (one-off and monthly subscription) and, when
the operator opts in, a payment provider's token. No aiogram here: the Telegram
adapter turns these into API calls and feeds the updates back.

The invoice payload is the order id. Pre-checkout checks it against the order
(this person, a plan still on sale, the same price and currency) and the person
(not banned); access comes only with `successful_payment`, keyed in the ledger by
Telegram's charge id.
"""

from __future__ import annotations

import uuid
from dataclasses import dataclass
from datetime import UTC, datetime

from core.accounts import AccountService
from core.subscriptions import Purchase, SubscriptionService
from core.tiers import Tier
from payments.ledger import Ledger, LedgerEntry, Order, Settled, refund_key
from payments.plans import PERIOD_SECONDS, PlanCatalog

STARS = "telegram_stars"
PROVIDER = "telegram_provider"
XTR = "XTR"


@dataclass(frozen=True)
class InvoiceSpec:
    payload: str
    currency: str
    amount: int
    tier: Tier
    subscription_period: int | None  # seconds; Stars subscriptions only


@dataclass(frozen=True)
class PaidInvoice:
    """The fields of a `successful_payment` / `refunded_payment` that matter."""

    user_id: int  # ours
    payload: str
    currency: str
    total_amount: int
    charge_id: str  # telegram_payment_charge_id
    provider_charge_id: str = ""
    is_recurring: bool = False
    is_first_recurring: bool = False
    subscription_expiration_date: int | None = None


async def purchase_refusal(
    subscriptions: SubscriptionService, user_id: int, tier: Tier, *, recurring: bool
) -> str | None:
    """Why this person should not buy `tier` now (i18n key), or None. A smaller plan
    than the live one would give nothing; a second renewing subscription would bill
    twice for one plan."""
    view = await subscriptions.view(user_id)
    if view.period_end is not None and tier.rank < view.tier.rank:
        return "pay.error.lower_plan"
    if recurring and view.recurring and not view.cancel_at_period_end:
        return "pay.error.already_renewing"
    return None


class TelegramInvoices:
    def __init__(
        self,
        plans: PlanCatalog,
        ledger: Ledger,
        accounts: AccountService,
        subscriptions: SubscriptionService,
        *,
        provider_currency: str | None = None,
    ) -> None:
        self.plans = plans
        self.ledger = ledger
        self.accounts = accounts
        self.subscriptions = subscriptions
        # Set when the operator opted in to a provider token for Telegram invoices.
        self.provider_currency = provider_currency

    async def new_invoice(
        self, user_id: int, tier: Tier, *, recurring: bool = False, provider: bool = False
    ) -> InvoiceSpec | None:
        """An order for `tier` and the invoice that sells it; None if not on sale."""
        plan = self.plans.get(tier)
        currency = self.provider_currency if provider else XTR
        if plan is None or currency is None:
            return None
        amount = plan.price(currency)
        if amount is None or (recurring and provider):
            return None
        order = await self.ledger.create_order(
            user_id,
            PROVIDER if provider else STARS,
            tier,
            amount,
            currency,
            meta={"recurring": recurring},
        )
        return InvoiceSpec(
            order.id.hex, currency, amount, tier, PERIOD_SECONDS if recurring else None
        )

    async def _order_of(self, payload: str) -> Order | None:
        try:
            order_id = uuid.UUID(hex=payload)
        except ValueError:
            return None
        order = await self.ledger.order(order_id)
        if order is None or order.provider not in (STARS, PROVIDER):
            return None
        return order

    async def pre_checkout(
        self, user_id: int, payload: str, currency: str, total_amount: int
    ) -> str | None:
        """None if the payment may go ahead, else the i18n key of the reason."""
        order = await self._order_of(payload)
        if order is None or order.user_id != user_id:
            return "pay.error.unknown_order"
        plan = self.plans.get(order.tier)
        if plan is None:
            return "pay.error.not_for_sale"
        if (
            order.currency != currency
            or order.amount_minor != total_amount
            or plan.price(currency) != total_amount
        ):
            return "pay.error.price_changed"
        user = await self.accounts.get(user_id)
        if user is None or user.is_banned:
            return "pay.error.banned"
        return await purchase_refusal(
            self.subscriptions, user_id, order.tier, recurring=bool(order.meta.get("recurring"))
        )

    async def paid(self, paid: PaidInvoice) -> Settled | None:
        """A successful payment: the ledger row and the plan, once. None if the
        payload is not one of our orders (logged by the caller)."""
        order = await self._order_of(paid.payload)
        if order is None or order.user_id != paid.user_id:
            return None
        recurring = paid.is_recurring or bool(order.meta.get("recurring"))
        renewal = paid.is_recurring and not paid.is_first_recurring
        period_end = (
            datetime.fromtimestamp(paid.subscription_expiration_date, UTC)
            if paid.subscription_expiration_date
            else None
        )
        # The first charge names a Stars subscription (editUserStarSubscription takes
        # it); renewals carry their own charge ids, and the order keeps the first.
        if renewal:
            subscription_id = order.provider_payment_id
        elif recurring:
            subscription_id = paid.charge_id
        else:
            subscription_id = None
        purchase = Purchase(
            tier=order.tier,
            provider=order.provider,
            provider_subscription_id=subscription_id,
            period_end=period_end,
            recurring=recurring,
            platform="telegram",
        )
        return await self.ledger.settle(
            LedgerEntry(
                provider=order.provider,
                charge_id=paid.charge_id,
                kind="renewal" if renewal else "payment",
                user_id=paid.user_id,
                amount_minor=paid.total_amount,
                currency=paid.currency,
                tier=order.tier,
                order_id=order.id,
                purchase=purchase,
                platform="telegram",
                payload={
                    "provider_charge_id": paid.provider_charge_id,
                    "is_recurring": paid.is_recurring,
                    "subscription_expiration_date": paid.subscription_expiration_date,
                },
            )
        )

    async def refunded(self, paid: PaidInvoice) -> Settled | None:
        order = await self._order_of(paid.payload)
        provider = order.provider if order is not None else STARS
        return await self.ledger.settle(
            LedgerEntry(
                provider=provider,
                charge_id=refund_key(paid.charge_id),
                kind="refund",
                user_id=paid.user_id,
                amount_minor=paid.total_amount,
                currency=paid.currency,
                tier=order.tier if order is not None else None,
                order_id=order.id if order is not None else None,
                refund_of=paid.charge_id,
                platform="telegram",
                payload={"provider_charge_id": paid.provider_charge_id},
            )
        )
