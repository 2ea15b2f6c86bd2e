"""/plan (the person's plan, quotas and what they can buy), the buy buttons,
/cancel_subscription and /paysupport. The payment updates themselves are in
routers/payments.py."""

from __future__ import annotations

import logging

from aiogram import Bot, F, Router
from aiogram.filters import Command
from aiogram.types import CallbackQuery, InlineKeyboardMarkup, LabeledPrice, Message

from bot.telegram import keyboards
from bot.telegram.callbacks import Buy
from bot.telegram.replies import patiently, reply
from core.db.models import User
from core.i18n import t
from core.notices import format_price
from core.services import Services
from core.tiers import TIERS, QuotaKey, Tier
from core.views import Platform
from payments.offers import (
    OfferKind,
    PayMethod,
    find_offer,
    plan_page,
    purchase_refusal_text,
    start_checkout,
)
from payments.offers import cancel_subscription as cancel_subscription_in_core
from payments.service import Payments
from payments.stars import InvoiceSpec

log = logging.getLogger(__name__)

PLATFORM: Platform = "telegram"


async def plan(
    message: Message, user: User, lang: str, services: Services, payments: Payments
) -> None:
    page = await plan_page(services, payments, user.id, PLATFORM, lang)
    await reply(message, page.text, keyboards.offers(page.offers))


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
        await reply_to(
            bot,
            chat_id,
            t(lang, "buy.monthly_link", plan=TIERS[spec.tier].name, price=shown),
            keyboards.link(t(lang, "buy.open", price=shown), link),
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
    offer = find_offer(services, payments, PLATFORM, callback_data.tier, callback_data.method, lang)
    if offer is None:
        await query.answer(t(lang, "buy.unavailable"), show_alert=True)
        return
    refusal = await purchase_refusal_text(services, user.id, offer, lang)
    if refusal is not None:
        await query.answer(refusal, show_alert=True)
        return
    await query.answer()
    method = offer.method
    try:
        if offer.kind is OfferKind.INVOICE:
            provider = method is PayMethod.PROVIDER
            spec = await payments.invoices.new_invoice(
                user.id, offer.tier, recurring=method is PayMethod.STARS_MONTHLY, provider=provider
            )
            if spec is None:
                await reply_to(bot, chat_id, t(lang, "buy.unavailable"))
                return
            token = services.settings.payments.telegram_provider_token
            provider_token = token.get_secret_value() if (provider and token) else ""
            await _send_invoice(bot, chat_id, lang, spec, provider_token)
            return
        checkout = await start_checkout(payments, user.id, offer, PLATFORM, lang)
    except Exception:
        log.exception("user %d: %s checkout for %s failed", user.id, method.name, offer.tier.value)
        await reply_to(bot, chat_id, t(lang, "buy.failed"))
        return
    await reply_to(bot, chat_id, checkout.text, keyboards.link(checkout.button, checkout.url))


async def reply_to(
    bot: Bot, chat_id: int, text: str, markup: InlineKeyboardMarkup | None = None
) -> None:
    await patiently(lambda: bot.send_message(chat_id, text, reply_markup=markup))


async def cancel_subscription(
    message: Message, user: User, lang: str, bot: Bot, services: Services, payments: Payments
) -> None:
    sender = message.from_user

    async def stop_stars(charge_id: str) -> None:
        assert sender is not None
        await bot.edit_user_star_subscription(
            user_id=sender.id, telegram_payment_charge_id=charge_id, is_canceled=True
        )

    text = await cancel_subscription_in_core(
        services,
        payments,
        user.id,
        PLATFORM,
        lang,
        stop_stars=stop_stars if sender is not None else None,
    )
    if text is not None:
        await reply(message, text)


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
