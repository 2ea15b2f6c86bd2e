"""What /plan offers and what /cancel_subscription does, for every platform.

Which plans are shown and which can be bought, with which payment methods on which
platform (Telegram asks for Stars for digital goods: there YooKassa and Razorpay
links show only when the operator turns them on; Discord gets those links and its
own premium SKU), which of them renew by themselves, the plan's status line, and the
steps that cancel a subscription at its provider. Platforms only draw the result.
"""

from __future__ import annotations

import logging
from collections.abc import Awaitable, Callable, Collection
from dataclasses import dataclass
from enum import StrEnum
from typing import TYPE_CHECKING

from core.i18n import t
from core.notices import format_date, format_price
from core.services import Services
from core.subscriptions import PlanView
from core.tiers import TIER_ORDER, TIERS, QuotaKey, Tier
from core.views import Platform
from core.views.usage import UsageReport, hidden_quotas, usage_report
from payments.plans import Plan
from payments.stars import STARS as STARS_PROVIDER
from payments.stars import XTR, purchase_refusal

if TYPE_CHECKING:
    from payments.service import Payments

log = logging.getLogger(__name__)

# payments.razorpay_provider.PROVIDER, not imported from there: that loads the SDK,
# and the terminal chat shows plans without any provider.
RAZORPAY_PROVIDER = "razorpay"
# The provider a plan bought with the Discord SKU (an entitlement) is recorded under:
# Discord bills it, and only Discord can stop it.
DISCORD_PROVIDER = "discord"


class PayMethod(StrEnum):
    """A way to pay for a plan. Short values: they travel in button ids."""

    STARS = "s"  # one-off Stars invoice, 30 days
    STARS_MONTHLY = "m"  # Stars subscription link, renews every 30 days
    PROVIDER = "p"  # invoice through the operator's payment provider token (Telegram)
    YOOKASSA = "y"  # a YooKassa checkout link
    RAZORPAY = "r"  # a Razorpay subscription link
    DISCORD_SKU = "d"  # Discord's premium button for the app's SKU


class OfferKind(StrEnum):
    INVOICE = "invoice"  # a Telegram invoice (or Stars subscription link) made on press
    LINK = "link"  # a provider's checkout page, made on press: see `start_checkout`
    SKU = "sku"  # the platform's own store button; it shows its own price


_KINDS = {
    PayMethod.STARS: OfferKind.INVOICE,
    PayMethod.STARS_MONTHLY: OfferKind.INVOICE,
    PayMethod.PROVIDER: OfferKind.INVOICE,
    PayMethod.YOOKASSA: OfferKind.LINK,
    PayMethod.RAZORPAY: OfferKind.LINK,
    PayMethod.DISCORD_SKU: OfferKind.SKU,
}

_LABELS = {
    PayMethod.STARS: "buy.stars",
    PayMethod.STARS_MONTHLY: "buy.stars_monthly",
    PayMethod.PROVIDER: "buy.provider",
    PayMethod.YOOKASSA: "buy.yookassa",
    PayMethod.RAZORPAY: "buy.razorpay",
    PayMethod.DISCORD_SKU: "buy.discord_sku",
}


@dataclass(frozen=True)
class Offer:
    method: PayMethod
    kind: OfferKind
    tier: Tier
    plan: str  # the plan's name
    amount: int | None  # minor units; None for an SKU (the store shows its price)
    currency: str | None
    price: str | None  # amount as people read it: "500 ⭐", "990 ₽"
    recurring: bool  # the provider renews it by itself
    label: str  # localized button text
    sku_id: int | None = None


@dataclass(frozen=True)
class TierLine:
    tier: Tier
    plan: str
    current: bool
    limits: dict[QuotaKey, int]
    text: str  # localized: "✅ Free: 100 small and 20 large messages a month, …"


@dataclass(frozen=True)
class PlanPage:
    """The /plan message: the person's plan and quotas, every plan, what to buy."""

    view: PlanView
    plan: str
    header: str  # localized: "💳 Your plan: Free"
    status: str | None  # localized status line of a paid or granted plan
    usage: UsageReport
    tiers: list[TierLine]
    offers: list[Offer]  # one button each, in this order
    footer: list[str]  # localized: what the buttons are for, how to get Enterprise

    @property
    def text(self) -> str:
        lines = [self.header]
        if self.status is not None:
            lines.append(self.status)
        lines += self.usage.lines
        lines += ["", "\n".join(tier.text for tier in self.tiers), "", *self.footer]
        return "\n".join(lines)


@dataclass(frozen=True)
class CheckoutLink:
    url: str
    price: str
    text: str  # localized: what happens when the person pays
    button: str  # localized: "Pay 990 ₽"


# -- plans and methods ------------------------------------------------------------------


def tier_lines(lang: str, current: Tier, hidden: Collection[QuotaKey] = ()) -> list[TierLine]:
    """Every plan with its limits (but `hidden` ones), the person's marked."""
    lines = []
    for tier in TIER_ORDER:
        limits = {key: rule.limit for key, rule in TIERS[tier].quotas.items() if key not in hidden}
        text = t(
            lang,
            "plan.tier",
            mark="✅ " if tier is current else "• ",
            plan=TIERS[tier].name,
            small=limits[QuotaKey.SMALL],
            large=limits[QuotaKey.LARGE],
            images=limits[QuotaKey.IMAGE],
        )
        lines.append(TierLine(tier, TIERS[tier].name, tier is current, limits, text))
    return lines


def status_line(lang: str, view: PlanView) -> str | None:
    """The status line of a plan with a period ("Status: active · until 2025-08-01 ·
    renews automatically"); None without one."""
    if view.period_end is None:
        return None
    status = t(lang, f"plan.status.{view.status}")
    line = t(lang, "plan.status", status=status, until=format_date(view.period_end))
    if renewing(view):
        line += t(lang, "plan.renews")
    return line


def renewing(view: PlanView) -> bool:
    """A subscription that its provider will renew (one is enough)."""
    return view.recurring and not view.cancel_at_period_end


def is_recurring(method: PayMethod, payments: Payments) -> bool:
    """Methods whose provider renews the plan by itself."""
    if method is PayMethod.YOOKASSA:
        return payments.yookassa is not None and payments.yookassa.settings.autorenew
    return method in (PayMethod.STARS_MONTHLY, PayMethod.RAZORPAY, PayMethod.DISCORD_SKU)


def _prices(
    services: Services, payments: Payments, platform: Platform, plan: Plan
) -> list[tuple[PayMethod, str | None, int | None]]:
    """(method, currency, amount) for each way `plan` can be paid for on `platform`."""
    found: list[tuple[PayMethod, str | None, int | None]] = []
    links = platform == "discord" or (
        platform == "telegram" and services.settings.payments.links_in_telegram
    )
    if platform == "telegram":
        stars = plan.price(XTR)
        if stars is not None:
            found.append((PayMethod.STARS, XTR, stars))
            found.append((PayMethod.STARS_MONTHLY, XTR, stars))
        currency = payments.invoices.provider_currency
        if currency is not None and (amount := plan.price(currency)) is not None:
            found.append((PayMethod.PROVIDER, currency, amount))
    if links:
        if payments.yookassa is not None and (rub := plan.price("RUB")) is not None:
            found.append((PayMethod.YOOKASSA, "RUB", rub))
        if payments.razorpay is not None and payments.razorpay.sells(plan.tier):
            inr = plan.price("INR")
            if inr is not None:
                found.append((PayMethod.RAZORPAY, "INR", inr))
    if platform == "discord" and plan.tier is Tier.PRO and _sku(services) is not None:
        found.append((PayMethod.DISCORD_SKU, None, None))
    return found


def _sku(services: Services) -> int | None:
    return services.settings.discord.sku_pro


def _offer(
    services: Services,
    payments: Payments,
    plan: Plan,
    method: PayMethod,
    currency: str | None,
    amount: int | None,
    lang: str,
) -> Offer:
    price = format_price(amount, currency) if amount is not None and currency else None
    return Offer(
        method,
        _KINDS[method],
        plan.tier,
        plan.name,
        amount,
        currency,
        price,
        is_recurring(method, payments),
        t(lang, _LABELS[method], plan=plan.name, price=price or ""),
        _sku(services) if method is PayMethod.DISCORD_SKU else None,
    )


def _plans_for(services: Services, payments: Payments, platform: Platform) -> list[Plan]:
    """Plans sold on `platform`, smallest first. Discord's SKU sells Pro even when the
    price list does not."""
    plans = dict(payments.plans.plans)
    if platform == "discord" and _sku(services) is not None and Tier.PRO not in plans:
        plans[Tier.PRO] = Plan(Tier.PRO, {})
    return sorted(plans.values(), key=lambda plan: plan.tier.rank)


def offers(
    services: Services, payments: Payments, platform: Platform, view: PlanView, lang: str
) -> list[Offer]:
    """What the person can buy now: no plan smaller than theirs, and no second
    subscription that renews while one does."""
    found = []
    for plan in _plans_for(services, payments, platform):
        if plan.tier.rank < view.tier.rank:
            continue  # no selling a smaller plan over a bigger one
        for method, currency, amount in _prices(services, payments, platform, plan):
            offer = _offer(services, payments, plan, method, currency, amount, lang)
            if renewing(view) and offer.recurring:
                continue  # one subscription that renews is enough
            found.append(offer)
    return found


def find_offer(
    services: Services,
    payments: Payments,
    platform: Platform,
    tier: Tier | str,
    method: PayMethod,
    lang: str,
) -> Offer | None:
    """The offer a pressed button names, if `platform` still sells `tier` that way
    (button data is client-supplied). Whether this person may buy it now is
    `purchase_refusal_text`."""
    plan = next(
        (p for p in _plans_for(services, payments, platform) if p.tier.value == str(tier)), None
    )
    if plan is None:
        return None
    for found, currency, amount in _prices(services, payments, platform, plan):
        if found is method:
            return _offer(services, payments, plan, method, currency, amount, lang)
    return None


async def purchase_refusal_text(
    services: Services, user_id: int, offer: Offer, lang: str
) -> str | None:
    """Why this person should not buy `offer` now, in their language; None: they may."""
    key = await purchase_refusal(
        services.subscriptions, user_id, offer.tier, recurring=offer.recurring
    )
    return None if key is None else t(lang, key)


async def plan_page(
    services: Services,
    payments: Payments | None,
    user_id: int,
    platform: Platform,
    lang: str,
) -> PlanPage:
    """/plan. Without `payments` (the terminal chat) nothing is on sale."""
    view = await services.subscriptions.view(user_id)
    plan = TIERS[view.tier].name
    usage = await usage_report(services, user_id, lang)
    on_sale = offers(services, payments, platform, view, lang) if payments is not None else []
    footer = [t(lang, "plan.buy") if on_sale else t(lang, "plan.nothing_to_buy")]
    if payments is None or payments.plans.get(Tier.ENTERPRISE) is None:
        contact = services.settings.payments.support_contact
        footer.append(t(lang, "plan.enterprise", contact=contact))
    return PlanPage(
        view,
        plan,
        t(lang, "plan.header", plan=plan),
        status_line(lang, view),
        usage,
        tier_lines(lang, view.tier, hidden_quotas(services)),
        on_sale,
        footer,
    )


async def start_checkout(
    payments: Payments, user_id: int, offer: Offer, platform: Platform, lang: str
) -> CheckoutLink:
    """The provider's checkout page for a LINK offer. Raises ValueError for an offer
    of another kind or a provider no longer configured, and the provider's error
    when it cannot make one."""
    gateway = payments.yookassa if offer.method is PayMethod.YOOKASSA else payments.razorpay
    if offer.kind is not OfferKind.LINK or gateway is None:
        raise ValueError(f"{offer.method.name} has no checkout page here")
    checkout = await gateway.checkout(user_id, offer.tier, platform)
    price = offer.price or ""
    return CheckoutLink(
        checkout.url,
        price,
        t(lang, "buy.link", plan=offer.plan, price=price),
        t(lang, "buy.open", price=price),
    )


# -- cancelling -------------------------------------------------------------------------


class CancelStep(StrEnum):
    """What /cancel_subscription does for the person's plan."""

    NOTHING = "nothing"  # no paid plan: say so
    ALREADY = "already"  # cancelled before: say until when it stays
    STOP_STARS = "stop_stars"  # Telegram must end the Stars subscription first
    STOP_RAZORPAY = "stop_razorpay"  # Razorpay must stop renewing first
    IN_DISCORD = "in_discord"  # Discord bills it: the person cancels it in Discord
    RECORD = "record"  # only our record: a one-off plan, or renewals we make ourselves


@dataclass(frozen=True)
class Cancellation:
    step: CancelStep
    view: PlanView
    text: str | None  # localized reply for NOTHING, ALREADY and IN_DISCORD

    @property
    def provider_subscription_id(self) -> str | None:
        return self.view.provider_subscription_id


def cancellation(view: PlanView, lang: str) -> Cancellation:
    """What cancelling means for the plan in `view`. Renewals at a provider stop
    there first: a cancellation only we knew of would still be charged."""
    if view.period_end is None or view.tier is Tier.FREE:
        return Cancellation(CancelStep.NOTHING, view, t(lang, "cancel_sub.none"))
    if view.cancel_at_period_end:
        text = t(
            lang,
            "cancel_sub.already",
            plan=TIERS[view.tier].name,
            until=format_date(view.period_end),
        )
        return Cancellation(CancelStep.ALREADY, view, text)
    if view.provider == DISCORD_PROVIDER:
        return Cancellation(CancelStep.IN_DISCORD, view, t(lang, "cancel_sub.in_discord"))
    step = CancelStep.RECORD
    if view.recurring and view.provider_subscription_id:
        if view.provider == STARS_PROVIDER:
            step = CancelStep.STOP_STARS
        elif view.provider == RAZORPAY_PROVIDER:
            step = CancelStep.STOP_RAZORPAY
    return Cancellation(step, view, None)


# Ends a Telegram Stars subscription by the charge id that started it.
StarsCanceller = Callable[[str], Awaitable[None]]


async def cancel_subscription(
    services: Services,
    payments: Payments,
    user_id: int,
    platform: Platform,
    lang: str,
    *,
    stop_stars: StarsCanceller | None = None,
) -> str | None:
    """/cancel_subscription: stop renewals at the provider, then mark the plan to end
    at its period end. Returns the reply; None when the confirmation is on its way
    through the outbox. `stop_stars`: how this platform ends a Telegram Stars
    subscription (only Telegram can; elsewhere the person is sent there)."""
    plan = cancellation(await services.subscriptions.view(user_id), lang)
    if plan.text is not None:
        return plan.text
    charge = plan.provider_subscription_id or ""
    try:
        if plan.step is CancelStep.STOP_STARS:
            if stop_stars is None:
                return t(lang, "cancel_sub.in_telegram")
            await stop_stars(charge)
        elif plan.step is CancelStep.STOP_RAZORPAY and payments.razorpay is not None:
            await payments.razorpay.cancel(charge)
    except Exception:
        log.exception("user %d: cancelling at %s failed", user_id, plan.view.provider)
        return t(lang, "cancel_sub.failed")
    async with services.db.write() as session:
        change = await services.subscriptions.cancel(session, user_id, platform=platform)
    if change is None:
        return t(lang, "cancel_sub.none")
    services.outbox.wake()  # the confirmation is the outbox message
    return None
