"""YooKassa direct: a payment with a redirect confirmation, sent to the person as a
URL button; notifications at POST /webhooks/yookassa.

The order's idempotence key goes with every create call (the SDK would make a new
one per call, which double-charges on a retry). A notification is believed only
from YooKassa's published addresses, and then only as a hint: the payment (or
refund) is fetched from the API and that answer is what counts.
"""

from __future__ import annotations

import asyncio
import ipaddress
import logging
from dataclasses import dataclass
from datetime import timedelta
from typing import Any

from aiohttp import web
from sqlalchemy import select
from sqlalchemy.exc import IntegrityError

from core.clock import utcnow
from core.config import YooKassaSettings
from core.db.engine import Database
from core.db.models import Subscription, WebhookEvent
from core.json_bounded import BadJSON, loads_bounded
from core.subscriptions import Purchase, Reason, Status, SubscriptionService
from core.tiers import Tier
from payments.ledger import Ledger, LedgerEntry, Order, platform_of, refund_key
from payments.plans import PlanCatalog
from payments.sdk import SdkRunner
from payments.webhook_events import first_sighting, mark_processed

log = logging.getLogger(__name__)

PROVIDER = "yookassa"
EVENTS = {
    "payment.succeeded",
    "payment.canceled",
    "refund.succeeded",
    "payment.waiting_for_capture",
}

Network = ipaddress.IPv4Network | ipaddress.IPv6Network


class YooKassaError(Exception):
    pass


@dataclass(frozen=True)
class Checkout:
    url: str
    provider_id: str


def _networks(values: list[str]) -> list[Network]:
    return [ipaddress.ip_network(value.strip(), strict=False) for value in values]


def _kopecks_to_decimal(amount: int) -> str:
    return f"{amount // 100}.{amount % 100:02d}"


def _decimal_to_kopecks(value: Any) -> int:
    units, _, cents = str(value).partition(".")
    return int(units) * 100 + int((cents + "00")[:2])


def _attr(obj: Any, *path: str) -> Any:
    for name in path:
        obj = getattr(obj, name, None)
        if obj is None:
            return None
    return obj


class YooKassaProvider:
    def __init__(
        self,
        settings: YooKassaSettings,
        db: Database,
        ledger: Ledger,
        subscriptions: SubscriptionService,
        plans: PlanCatalog,
    ) -> None:
        self.settings = settings
        self.subscriptions = subscriptions
        self.db = db
        self.ledger = ledger
        self.plans = plans
        self.allowed = _networks(settings.allowed_ips)
        self.proxies = _networks(settings.trusted_proxies)
        self.sdk = SdkRunner(PROVIDER, settings.request_timeout)
        secret = settings.secret_key.get_secret_value() if settings.secret_key else ""
        # Imported only when a shop is configured: the SDK and requests take ~13 MB.
        import yookassa

        from payments.yookassa_http import bound_sdk_requests

        self._payments = yookassa.Payment
        self._refunds = yookassa.Refund
        # The SDK keeps its configuration in class attributes: one shop per process.
        yookassa.Configuration.configure(
            settings.shop_id, secret, api_url=settings.api_url.rstrip("/"), max_attempts=3
        )
        bound_sdk_requests(settings.request_timeout)
        self._tasks: set[asyncio.Task[bool]] = set()

    def sells(self, tier: Tier) -> bool:
        plan = self.plans.get(tier)
        return plan is not None and plan.price("RUB") is not None

    async def checkout(self, user_id: int, tier: Tier, platform: str) -> Checkout:
        plan = self.plans.get(tier)
        amount = plan.price("RUB") if plan is not None else None
        if plan is None or amount is None:
            raise YooKassaError(f"{tier.value} is not sold through YooKassa")
        order = await self.ledger.create_order(
            user_id, PROVIDER, tier, amount, "RUB", meta={"platform": platform}
        )
        params = self._payment_params(order, plan.name)
        created = await self.sdk.call(self._payments.create, params, order.idempotence_key)
        url = _attr(created, "confirmation", "confirmation_url")
        if not created.id or not url:
            raise YooKassaError("YooKassa answered without a payment id or link")
        await self.ledger.attach_payment(order.id, str(created.id))
        return Checkout(str(url), str(created.id))

    def _payment_params(
        self, order: Order, plan_name: str, *, saved_method: str | None = None
    ) -> dict[str, Any]:
        amount = {"value": _kopecks_to_decimal(order.amount_minor), "currency": "RUB"}
        description = f"OneAI {plan_name}, 30 days"
        params: dict[str, Any] = {
            "amount": amount,
            "capture": True,
            "description": description,
            "metadata": {"order_id": order.id.hex, "user_id": str(order.user_id)},
        }
        if saved_method is not None:
            # A renewal: charged to the saved card, nobody to redirect.
            params["payment_method_id"] = saved_method
        else:
            params["confirmation"] = {"type": "redirect", "return_url": self.settings.return_url}
            if self.settings.autorenew:
                params["save_payment_method"] = True
        if self.settings.receipts:
            customer = {"email": self.settings.receipt_email} if self.settings.receipt_email else {}
            params["receipt"] = {
                "customer": customer,
                "items": [
                    {
                        "description": description,
                        "quantity": "1.00",
                        "amount": amount,
                        "vat_code": self.settings.vat_code,
                        "payment_mode": "full_payment",
                        "payment_subject": "service",
                    }
                ],
            }
        return params

    async def create_refund(
        self,
        payment_id: str,
        amount_minor: int,
        currency: str,
        idempotence_key: str,
        description: str,
    ) -> Any:
        """POST /refunds for (all of) a payment. The same key, sent again with the
        same request, answers with the refund made the first time. Raises the SDK's
        ApiError subclasses (BadRequestError: refused) or ProviderTimeout."""
        amount = {"value": _kopecks_to_decimal(amount_minor), "currency": currency}
        params: dict[str, Any] = {
            "payment_id": payment_id,
            "amount": amount,
            "description": description[:250],
        }
        if self.settings.receipts:
            customer = {"email": self.settings.receipt_email} if self.settings.receipt_email else {}
            params["receipt"] = {
                "customer": customer,
                "items": [
                    {
                        "description": description[:128],
                        "quantity": "1.00",
                        "amount": amount,
                        "vat_code": self.settings.vat_code,
                        "payment_mode": "full_payment",
                        "payment_subject": "service",
                    }
                ],
            }
        return await self.sdk.call(self._refunds.create, params, idempotence_key)

    # -- webhook ------------------------------------------------------------------------

    def client_address(self, request: web.Request) -> str | None:
        """The sender: the peer, or, when the peer is a trusted proxy, the last
        address in X-Forwarded-For that the proxies did not add."""
        peer = request.remote
        if peer is None or not self.proxies:
            return peer
        chain = [peer]
        forwarded = request.headers.get("X-Forwarded-For", "")
        chain = [part.strip() for part in forwarded.split(",") if part.strip()] + chain
        for address in reversed(chain):
            try:
                ip = ipaddress.ip_address(address)
            except ValueError:
                return None
            if not any(ip in net for net in self.proxies):
                return address
        return chain[0]

    def allowed_sender(self, address: str | None) -> bool:
        if address is None:
            return False
        try:
            ip = ipaddress.ip_address(address)
        except ValueError:
            return False
        return any(ip in net for net in self.allowed)

    async def webhook(self, request: web.Request) -> web.Response:
        address = self.client_address(request)
        if not self.allowed_sender(address):
            log.warning("yookassa notification from %s: not a YooKassa address", address)
            return web.json_response({"error": "forbidden"}, status=403)
        try:
            body = loads_bounded(await request.read())
        except BadJSON as exc:
            log.warning("yookassa notification from %s: refused: %s", address, exc)
            return web.json_response({"error": "malformed JSON"}, status=400)
        event = body.get("event") if isinstance(body, dict) else None
        obj = body.get("object") if isinstance(body, dict) else None
        object_id = obj.get("id") if isinstance(obj, dict) else None
        if event not in EVENTS or not isinstance(object_id, str) or not object_id:
            log.warning("yookassa notification: not an event we know (%r)", event)
            return web.json_response({"error": "unknown event"}, status=400)
        async with self.db.write() as session:
            fresh = await first_sighting(session, PROVIDER, f"{event}:{object_id}", str(event))
        if fresh:
            # Answer now; the API round trip and the change happen after the row is safe.
            task = asyncio.create_task(self.process(str(event), object_id))
            self._tasks.add(task)
            task.add_done_callback(self._tasks.discard)
        return web.json_response({"status": "accepted" if fresh else "duplicate"})

    async def process(self, event: str, object_id: str) -> bool:
        """Fetch the object from the API and act on what it says. True once done
        (the event is then marked processed); False leaves it for a retry."""
        try:
            if event.startswith("refund."):
                done = await self._refund(object_id)
            else:
                done = await self._payment(object_id)
        except Exception:
            log.exception("yookassa %s %s: processing failed; will retry", event, object_id)
            return False
        if done:
            async with self.db.write() as session:
                await mark_processed(session, PROVIDER, f"{event}:{object_id}")
        return done

    async def _payment(self, payment_id: str) -> bool:
        payment = await self.sdk.call(self._payments.find_one, payment_id)
        order = await self.ledger.order_by_payment(PROVIDER, str(payment.id))
        if order is None:
            log.warning("yookassa payment %s: no order of ours", payment_id)
            return True
        status = str(payment.status)
        if status == "canceled":
            await self.ledger.mark_order(order.id, "canceled")
            return True
        if status != "succeeded" or not payment.paid:
            return status != "pending" and status != "waiting_for_capture"
        amount = _decimal_to_kopecks(_attr(payment, "amount", "value"))
        currency = str(_attr(payment, "amount", "currency"))
        matches = amount == order.amount_minor and currency == order.currency
        if not matches:
            log.error(
                "yookassa payment %s: %s %s does not match order %s (%s %s)",
                payment_id,
                amount,
                currency,
                order.id,
                order.amount_minor,
                order.currency,
            )
        platform = platform_of(order.meta)
        method_id = _attr(payment, "payment_method", "id")
        saved = bool(_attr(payment, "payment_method", "saved")) and self.settings.autorenew
        purchase = Purchase(
            tier=order.tier,
            provider=PROVIDER,
            platform=platform,
            recurring=saved,
            meta={"payment_method_id": str(method_id), "platform": platform} if saved else {},
        )
        # A mismatched payment buys nothing, but the money is on record for support.
        await self.ledger.settle(
            LedgerEntry(
                provider=PROVIDER,
                charge_id=str(payment.id),
                kind="payment",
                user_id=order.user_id,
                amount_minor=amount,
                currency=currency,
                status=status if matches else "amount_mismatch",
                tier=order.tier,
                order_id=order.id,
                purchase=purchase if matches else None,
                platform=platform,
                payload={"expected": order.amount_minor, "expected_currency": order.currency},
            )
        )
        return True

    async def _refund(self, refund_id: str) -> bool:
        refund = await self.sdk.call(self._refunds.find_one, refund_id)
        status = str(refund.status)
        payment_id = str(refund.payment_id)
        if status == "canceled":
            await self.ledger.refund_failed(
                PROVIDER, payment_id, str(refund.id), "canceled by YooKassa"
            )
            return True
        if status != "succeeded":
            return status != "pending"
        order = await self.ledger.order_by_payment(PROVIDER, payment_id)
        if order is None:
            log.warning("yookassa refund %s: payment %s is not ours", refund_id, payment_id)
            return True
        platform = platform_of(order.meta)
        await self.ledger.settle(
            LedgerEntry(
                provider=PROVIDER,
                # One refund per payment: an admin's refund of it has this key too.
                charge_id=refund_key(payment_id),
                kind="refund",
                user_id=order.user_id,
                amount_minor=_decimal_to_kopecks(_attr(refund, "amount", "value")),
                currency=str(_attr(refund, "amount", "currency")),
                tier=order.tier,
                order_id=order.id,
                refund_of=payment_id,
                platform=platform,
                payload={"refund_id": str(refund.id)},
            )
        )
        return True

    async def renew_due(self, before: timedelta) -> int:
        """Charge saved cards for plans that end within `before` and were not
        cancelled. One order per subscription and period (its idempotence key says
        which), so a rerun or a second process never charges twice."""
        if not self.settings.autorenew:
            return 0
        now = utcnow()
        async with self.db.read() as session:
            due = (
                await session.scalars(
                    select(Subscription).where(
                        Subscription.is_current,
                        Subscription.payment_provider == PROVIDER,
                        Subscription.cancel_at_period_end.is_(False),
                        Subscription.current_period_end > now,
                        Subscription.current_period_end <= now + before,
                    )
                )
            ).all()
        charged = 0
        for sub in due:
            method = sub.meta.get("payment_method_id")
            plan = self.plans.get(sub.tier)
            amount = plan.price("RUB") if plan is not None else None
            if not method or plan is None or amount is None:
                continue
            key = f"renew-{sub.id}-{int(sub.current_period_end.timestamp())}"
            order = await self.ledger.order_by_key(key)
            if order is None:
                try:
                    order = await self.ledger.create_order(
                        sub.user_id,
                        PROVIDER,
                        plan.tier,
                        amount,
                        "RUB",
                        meta={"platform": sub.meta.get("platform"), "renews": sub.id},
                        idempotence_key=key,
                    )
                except IntegrityError:
                    continue  # another process made it a moment ago
            # One caller charges; a failed call puts the order back for the next run,
            # which sends the same idempotence key.
            if not await self.ledger.move_order(order.id, "created", "charging"):
                continue
            if await self._cancelled_since(sub.id):
                await self.ledger.move_order(order.id, "charging", "skipped")
                continue
            try:
                params = self._payment_params(order, plan.name, saved_method=str(method))
                created = await self.sdk.call(self._payments.create, params, order.idempotence_key)
            except Exception:
                log.exception("yookassa renewal of subscription %d failed; will retry", sub.id)
                await self.ledger.move_order(order.id, "charging", "created")
                continue
            await self.ledger.attach_payment(order.id, str(created.id))
            if str(created.status) in ("succeeded", "canceled"):
                await self._payment(str(created.id))
            if str(created.status) == "canceled":
                await self._declined(sub.id)
                continue
            charged += 1
        return charged

    async def _cancelled_since(self, subscription_id: int) -> bool:
        """A /cancel_subscription that committed after the due list was read."""
        async with self.db.read() as session:
            sub = await session.get(Subscription, subscription_id)
            return sub is None or not sub.is_current or sub.cancel_at_period_end

    async def _declined(self, subscription_id: int) -> None:
        """The saved card was refused: the person is told the plan will end."""
        async with self.db.write() as session:
            sub = await session.get(Subscription, subscription_id)
            if sub is None or not sub.is_current:
                return
            platform = platform_of(sub.meta)
            await self.subscriptions.set_status(
                session, sub, Status.UNPAID, Reason.UNPAID, platform=platform
            )
        self.ledger.outbox.wake()

    async def retry_unprocessed(self, older_than_seconds: float = 60.0) -> int:
        """Events whose processing failed or was cut off by a restart."""
        cutoff = utcnow() - timedelta(seconds=older_than_seconds)
        async with self.db.read() as session:
            rows = (
                await session.execute(
                    select(WebhookEvent.event_type, WebhookEvent.event_id).where(
                        WebhookEvent.provider == PROVIDER,
                        WebhookEvent.processed_at.is_(None),
                        WebhookEvent.received_at <= cutoff,
                    )
                )
            ).all()
        done = 0
        for event, key in rows:
            object_id = key.partition(":")[2]
            if await self.process(event, object_id):
                done += 1
        return done

    async def drain(self) -> None:
        """Wait for notifications still being processed (shutdown, tests)."""
        while self._tasks:
            await asyncio.gather(*list(self._tasks), return_exceptions=True)

    def close(self) -> None:
        self.sdk.close()
