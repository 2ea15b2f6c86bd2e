"""Everything payments needs, built once from the settings: plans, the ledger,
Telegram invoices, whichever direct providers are configured, plus their webhook
routes on the shared HTTP server, and Discord entitlements when a SKU is set."""

from __future__ import annotations

from dataclasses import dataclass

from aiohttp import web
from aiohttp.typedefs import Handler

from core import metrics
from core.services import Services
from payments.discord_entitlements import DiscordEntitlements
from payments.ledger import Ledger
from payments.plans import PlanCatalog
from payments.razorpay_provider import RazorpayProvider
from payments.refunds import Refunds
from payments.stars import TelegramInvoices
from payments.yookassa_provider import YooKassaProvider

YOOKASSA_PATH = "/webhooks/yookassa"
RAZORPAY_PATH = "/webhooks/razorpay"


@dataclass
class Payments:
    plans: PlanCatalog
    ledger: Ledger
    invoices: TelegramInvoices
    yookassa: YooKassaProvider | None
    razorpay: RazorpayProvider | None
    # Admin refunds of ledger rows; Stars need `refunds.use_telegram(bot.refund_star_payment)`.
    refunds: Refunds
    # Entitlements to DISCORD_SKU_PRO; the Discord adapter feeds its events here.
    discord: DiscordEntitlements | None = None

    @classmethod
    def build(cls, services: Services, plans: PlanCatalog | None = None) -> Payments:
        settings = services.settings
        plans = plans or PlanCatalog.load(settings.payments.plans_file)
        ledger = Ledger(services.db, services.subscriptions, services.outbox)
        pay = settings.payments
        provider_on = pay.telegram_provider_enabled and pay.telegram_provider_token is not None
        invoices = TelegramInvoices(
            plans,
            ledger,
            services.accounts,
            services.subscriptions,
            provider_currency=pay.telegram_provider_currency.upper() if provider_on else None,
        )
        yookassa = (
            YooKassaProvider(settings.yookassa, services.db, ledger, services.subscriptions, plans)
            if settings.yookassa.configured
            else None
        )
        razorpay = (
            RazorpayProvider(settings.razorpay, services.db, ledger, services.subscriptions, plans)
            if settings.razorpay.configured
            else None
        )
        sku_pro = settings.discord.sku_pro
        discord = (
            DiscordEntitlements(
                services.db, services.accounts, services.subscriptions, ledger, sku_pro
            )
            if sku_pro is not None
            else None
        )
        refunds = Refunds(
            services.db, ledger, services.subscriptions, yookassa=yookassa, razorpay=razorpay
        )
        return cls(plans, ledger, invoices, yookassa, razorpay, refunds, discord)

    def mount(self, app: web.Application) -> None:
        """Webhook routes; must run before the server starts."""
        if self.yookassa is not None:
            app.router.add_post(YOOKASSA_PATH, _counted("yookassa", self.yookassa.webhook))
        if self.razorpay is not None:
            app.router.add_post(RAZORPAY_PATH, _counted("razorpay", self.razorpay.webhook))

    async def close(self) -> None:
        if self.yookassa is not None:
            await self.yookassa.drain()
            self.yookassa.close()
        if self.razorpay is not None:
            self.razorpay.close()


def _counted(provider: str, handler: Handler) -> Handler:
    """`handler`, with each request it answers counted by status."""

    async def webhook(request: web.Request) -> web.StreamResponse:
        try:
            response = await handler(request)
        except web.HTTPException as exc:
            metrics.WEBHOOKS.labels(provider, str(exc.status)).inc()
            raise
        except Exception:
            metrics.WEBHOOKS.labels(provider, "500").inc()
            raise
        metrics.WEBHOOKS.labels(provider, str(response.status)).inc()
        return response

    return webhook
