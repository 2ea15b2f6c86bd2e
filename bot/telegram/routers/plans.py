"""/plan (the person's plan, quotas and what they can buy), the buy buttons,
/cancel_subscription and /paysupport. The payment updates themselves are in
routers/payments.py."""

from __future__ import annotations

import logging

from aiogram import Bot, F, Router
from aiogram.filters import Command
from aiogram.types import (
    CallbackQuery,
    InlineKeyboardButton,
    InlineKeyboardMarkup,
    LabeledPrice,
    Message,
)

from bot.telegram.callbacks import Buy, PayMethod
from bot.telegram.replies import patiently, reply
from bot.telegram.routers.commands import usage_lines
from core.db.models import User
from core.i18n import t
from core.notices import format_date, format_price
from core.services import Services
from core.subscriptions import PlanView
from core.tiers import TIER_ORDER, TIERS, QuotaKey, Tier
from payments.plans import Plan
from payments.service import Payments
from payments.stars import XTR, InvoiceSpec, purchase_refusal

log = logging.getLogger(__name__)


def plans_text(lang: str, current: Tier) -> str:
    lines = []
    for tier in TIER_ORDER:
        quotas = TIERS[tier].quotas
        lines.append(
            t(
                lang,
                "plan.tier",
                mark="✅ " if tier is current else "• ",
                plan=TIERS[tier].name,
                small=quotas[QuotaKey.SMALL].limit,
                large=quotas[QuotaKey.LARGE].limit,
                images=quotas[QuotaKey.IMAGE].limit,
            )
        )
    return "\n".join(lines)


def status_line(lang: str, view: PlanView) -> str | None:
    if view.period_end is None:
        return None
    status = t(lang, f"plan.status.{view.status}")
    line = t(lang, "plan.status", status=status, until=format_date(view.period_end))
    if view.recurring and not view.cancel_at_period_end:
        line += t(lang, "plan.renews")
    return line


def _methods(plan: Plan, payments: Payments, services: Services) -> list[tuple[PayMethod, str]]:
    """(method, price) for each way this plan can be paid for in Telegram."""
    found: list[tuple[PayMethod, str]] = []
    stars = plan.price(XTR)
    if stars is not None:
        found.append((PayMethod.STARS, format_price(stars, XTR)))
        found.append((PayMethod.STARS_MONTHLY, format_price(stars, XTR)))
    currency = payments.invoices.provider_currency
    if currency is not None and (amount := plan.price(currency)) is not None:
        found.append((PayMethod.PROVIDER, format_price(amount, currency)))
    if services.settings.payments.links_in_telegram:
        if payments.yookassa is not None and (rub := plan.price("RUB")) is not None:
            found.append((PayMethod.YOOKASSA, format_price(rub, "RUB")))
        if payments.razorpay is not None and payments.razorpay.sells(plan.tier):
            inr = plan.price("INR")
            if inr is not None:
                found.append((PayMethod.RAZORPAY, format_price(inr, "INR")))
    return found


def _recurring(method: PayMethod, payments: Payments) -> bool:
    """Methods whose provider renews the plan by itself."""
    if method is PayMethod.YOOKASSA:
        return payments.yookassa is not None and payments.yookassa.settings.autorenew
    return method in (PayMethod.STARS_MONTHLY, PayMethod.RAZORPAY)


_LABELS = {
    PayMethod.STARS: "buy.stars",
    PayMethod.STARS_MONTHLY: "buy.stars_monthly",
    PayMethod.PROVIDER: "buy.provider",
    PayMethod.YOOKASSA: "buy.yookassa",
    PayMethod.RAZORPAY: "buy.razorpay",
}


def buy_keyboard(
    lang: str, view: PlanView, payments: Payments, services: Services
) -> InlineKeyboardMarkup | None:
    renewing = view.recurring and not view.cancel_at_period_end
    rows = []
    for plan in sorted(payments.plans.plans.values(), key=lambda p: p.tier.rank):
        if plan.tier.rank < view.tier.rank:
            continue  # no selling a smaller plan over a bigger one
        for method, price in _methods(plan, payments, services):
            if renewing and _recurring(method, payments):
                continue  # one subscription that renews is enough
            rows.append(
                [
                    InlineKeyboardButton(
                        text=t(lang, _LABELS[method], plan=plan.name, price=price),
                        callback_data=Buy(method=method, tier=plan.tier.value).pack(),
                    )
                ]
            )
    return InlineKeyboardMarkup(inline_keyboard=rows) if rows else None


async def plan(
    message: Message, user: User, lang: str, services: Services, payments: Payments
) -> None:
    view = await services.subscriptions.view(user.id)
    lines = [t(lang, "plan.header", plan=TIERS[view.tier].name)]
    if (status := status_line(lang, view)) is not None:
        lines.append(status)
    lines += await usage_lines(user, lang, services)
    lines += ["", plans_text(lang, view.tier)]
    markup = buy_keyboard(lang, view, payments, services)
    lines.append("")
    lines.append(t(lang, "plan.buy") if markup else t(lang, "plan.nothing_to_buy"))
    if payments.plans.get(Tier.ENTERPRISE) is None:
        contact = services.settings.payments.support_contact
        lines.append(t(lang, "plan.enterprise", contact=contact))
    await reply(message, "\n".join(lines), markup)


def _invoice_texts(lang: str, tier: Tier) -> tuple[str, str, str]:
    quotas = TIERS[tier].quotas
    name = TIERS[tier].name
    return (
        t(lang, "invoice.title", plan=name),
        t(
            lang,
            "invoice.description",
            plan=name,
            small=quotas[QuotaKey.SMALL].limit,
            large=quotas[QuotaKey.LARGE].limit,
            images=quotas[QuotaKey.IMAGE].limit,
        ),
        t(lang, "invoice.label", plan=name),
    )


async def _send_invoice(
    bot: Bot, chat_id: int, lang: str, spec: InvoiceSpec, provider_token: str
) -> None:
    title, description, label = _invoice_texts(lang, spec.tier)
    price = [LabeledPrice(label=label, amount=spec.amount)]
    if spec.subscription_period is not None:
        # A Stars subscription is sold through a link, not a chat invoice.
        link = await bot.create_invoice_link(
            title=title,
            description=description,
            payload=spec.payload,
            currency=spec.currency,
            prices=price,
            provider_token="",
            subscription_period=spec.subscription_period,
        )
        shown = format_price(spec.amount, spec.currency)
        button = InlineKeyboardButton(text=t(lang, "buy.open", price=shown), url=link)
        await patiently(
            lambda: bot.send_message(
                chat_id,
                t(lang, "buy.monthly_link", plan=TIERS[spec.tier].name, price=shown),
                reply_markup=InlineKeyboardMarkup(inline_keyboard=[[button]]),
            )
        )
        return
    await patiently(
        lambda: bot.send_invoice(
            chat_id,
            title=title,
            description=description,
            payload=spec.payload,
            currency=spec.currency,
            prices=price,
            provider_token=provider_token,
        )
    )


async def buy(
    query: CallbackQuery,
    callback_data: Buy,
    user: User,
    lang: str,
    bot: Bot,
    services: Services,
    payments: Payments,
) -> None:
    chat_id = query.message.chat.id if query.message is not None else query.from_user.id
    tier_plan = payments.plans.get(callback_data.tier)
    allowed = tier_plan is not None and any(
        method is callback_data.method for method, _ in _methods(tier_plan, payments, services)
    )
    if tier_plan is None or not allowed:
        await query.answer(t(lang, "buy.unavailable"), show_alert=True)
        return
    tier = tier_plan.tier
    method = callback_data.method
    refusal = await purchase_refusal(
        services.subscriptions, user.id, tier, recurring=_recurring(method, payments)
    )
    if refusal is not None:
        await query.answer(t(lang, refusal), show_alert=True)
        return
    await query.answer()
    try:
        if method in (PayMethod.STARS, PayMethod.STARS_MONTHLY, PayMethod.PROVIDER):
            provider = method is PayMethod.PROVIDER
            spec = await payments.invoices.new_invoice(
                user.id, tier, recurring=method is PayMethod.STARS_MONTHLY, provider=provider
            )
            if spec is None:
                await reply_to(bot, chat_id, t(lang, "buy.unavailable"))
                return
            token = services.settings.payments.telegram_provider_token
            provider_token = token.get_secret_value() if (provider and token) else ""
            await _send_invoice(bot, chat_id, lang, spec, provider_token)
            return
        gateway = payments.yookassa if method is PayMethod.YOOKASSA else payments.razorpay
        currency = "RUB" if method is PayMethod.YOOKASSA else "INR"
        if gateway is None:
            await reply_to(bot, chat_id, t(lang, "buy.unavailable"))
            return
        checkout = await gateway.checkout(user.id, tier, "telegram")
    except Exception:
        log.exception("user %d: %s checkout for %s failed", user.id, method.name, tier.value)
        await reply_to(bot, chat_id, t(lang, "buy.failed"))
        return
    shown = format_price(tier_plan.price(currency) or 0, currency)
    button = InlineKeyboardButton(text=t(lang, "buy.open", price=shown), url=checkout.url)
    await reply_to(
        bot,
        chat_id,
        t(lang, "buy.link", plan=tier_plan.name, price=shown),
        InlineKeyboardMarkup(inline_keyboard=[[button]]),
    )


async def reply_to(
    bot: Bot, chat_id: int, text: str, markup: InlineKeyboardMarkup | None = None
) -> None:
    await patiently(lambda: bot.send_message(chat_id, text, reply_markup=markup))


async def cancel_subscription(
    message: Message, user: User, lang: str, bot: Bot, services: Services, payments: Payments
) -> None:
    view = await services.subscriptions.view(user.id)
    if view.period_end is None or view.tier is Tier.FREE:
        await reply(message, t(lang, "cancel_sub.none"))
        return
    until = format_date(view.period_end)
    if view.cancel_at_period_end:
        await reply(message, t(lang, "cancel_sub.already", plan=TIERS[view.tier].name, until=until))
        return
    # Stop the provider's renewals first: a cancellation only we know of would
    # still be charged.
    try:
        if view.recurring and view.provider_subscription_id:
            if view.provider == "telegram_stars" and message.from_user is not None:
                await bot.edit_user_star_subscription(
                    user_id=message.from_user.id,
                    telegram_payment_charge_id=view.provider_subscription_id,
                    is_canceled=True,
                )
            elif view.provider == "razorpay" and payments.razorpay is not None:
                await payments.razorpay.cancel(view.provider_subscription_id)
    except Exception:
        log.exception("user %d: cancelling at %s failed", user.id, view.provider)
        await reply(message, t(lang, "cancel_sub.failed"))
        return
    async with services.db.write() as session:
        change = await services.subscriptions.cancel(session, user.id, platform="telegram")
    if change is None:
        await reply(message, t(lang, "cancel_sub.none"))
        return
    services.outbox.wake()  # the confirmation is the outbox message


async def paysupport(message: Message, lang: str, services: Services) -> None:
    await reply(message, t(lang, "paysupport", contact=services.settings.payments.support_contact))


def create_router() -> Router:
    router = Router(name="plans")
    router.message.filter(F.chat.type == "private")
    router.message.register(plan, Command("plan"))
    router.message.register(cancel_subscription, Command("cancel_subscription"))
    router.message.register(paysupport, Command("paysupport"))
    router.callback_query.register(buy, Buy.filter())
    return router
