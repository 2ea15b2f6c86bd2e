"""Razorpay subscriptions: one per purchase, paid on Razorpay's page (`short_url`),
renewed by Razorpay, reported by signed webhooks.

The webhook checks `X-Razorpay-Signature` (HMAC-SHA256 of the raw body, with the
SDK's verifier) before it parses anything; dedupes on `x-razorpay-event-id`; and,
because events arrive out of order, applies an event to a subscription only if it
is not older than the last one applied (halted -> active after a retry is legal).
"""

from __future__ import annotations

import hashlib
import logging
from dataclasses import dataclass
from datetime import UTC, datetime
from typing import TYPE_CHECKING, Any

from aiohttp import web
from sqlalchemy import select
from sqlalchemy.ext.asyncio import AsyncSession

from core.config import RazorpaySettings
from core.db.engine import Database
from core.db.models import Payment, PaymentOrder, Subscription
from core.json_bounded import BadJSON, loads_bounded
from core.subscriptions import Purchase, Reason, Status, SubscriptionService
from core.tiers import Tier
from payments.ledger import PAID_KINDS, Ledger, LedgerEntry, platform_of, refund_key
from payments.plans import PlanCatalog
from payments.sdk import SdkRunner
from payments.webhook_events import first_sighting, mark_processed

if TYPE_CHECKING:
    import razorpay

log = logging.getLogger(__name__)

PROVIDER = "razorpay"
ACTIVATING = {"subscription.activated", "subscription.charged", "subscription.resumed"}
ENDING = {"subscription.cancelled", "subscription.completed"}
REFUND_EVENTS = {"refund.processed", "refund.failed"}
STATUS_EVENTS = {
    "subscription.pending": (Status.PAST_DUE, Reason.PAST_DUE),
    "subscription.halted": (Status.UNPAID, Reason.UNPAID),
}


class RazorpayError(Exception):
    pass


@dataclass(frozen=True)
class Checkout:
    url: str
    provider_id: str


def _entity(event: dict[str, Any], name: str) -> dict[str, Any]:
    value = (event.get("payload") or {}).get(name) or {}
    entity = value.get("entity") if isinstance(value, dict) else None
    return entity if isinstance(entity, dict) else {}


def _time(value: Any) -> datetime | None:
    return datetime.fromtimestamp(int(value), UTC) if isinstance(value, int) and value else None


class RazorpayProvider:
    def __init__(
        self,
        settings: RazorpaySettings,
        db: Database,
        ledger: Ledger,
        subscriptions: SubscriptionService,
        plans: PlanCatalog,
    ) -> None:
        self.settings = settings
        self.db = db
        self.ledger = ledger
        self.subscriptions = subscriptions
        self.plans = plans
        secret = settings.key_secret.get_secret_value() if settings.key_secret else ""
        # Imported only when an account is configured: the SDK and requests take ~13 MB.
        import razorpay

        self.client: razorpay.Client = razorpay.Client(
            auth=(settings.key_id or "", secret), base_url=settings.api_url.rstrip("/")
        )
        self.sdk = SdkRunner(PROVIDER, settings.request_timeout)

    def sells(self, tier: Tier) -> bool:
        plan = self.plans.get(tier)
        return (
            plan is not None
            and plan.price("INR") is not None
            and tier.value in self.settings.plan_map
        )

    async def checkout(self, user_id: int, tier: Tier, platform: str) -> Checkout:
        """Create the Razorpay subscription; the person pays at its short_url."""
        plan = self.plans.get(tier)
        plan_id = self.settings.plan_map.get(tier.value)
        amount = plan.price("INR") if plan is not None else None
        if plan_id is None or amount is None:
            raise RazorpayError(f"{tier.value} is not sold through Razorpay")
        order = await self.ledger.create_order(
            user_id, PROVIDER, tier, amount, "INR", meta={"platform": platform}
        )
        data = {
            "plan_id": plan_id,
            "total_count": self.settings.total_count,
            "customer_notify": 1,
            "notes": {"order_id": order.id.hex, "user_id": str(user_id)},
        }
        created = await self.sdk.call(
            self.client.subscription.create, data, timeout=self.settings.request_timeout
        )
        sub_id = str(created.get("id") or "")
        url = str(created.get("short_url") or "")
        if not sub_id or not url:
            raise RazorpayError("Razorpay answered without a subscription id or link")
        await self.ledger.attach_payment(order.id, sub_id)
        return Checkout(url, sub_id)

    async def cancel(self, provider_subscription_id: str) -> None:
        """Stop renewals; Razorpay ends it at the end of the paid cycle."""
        await self.sdk.call(
            self.client.subscription.cancel,
            provider_subscription_id,
            {"cancel_at_cycle_end": 1},
            timeout=self.settings.request_timeout,
        )

    async def create_refund(
        self, payment_id: str, amount_minor: int, idempotence_key: str, notes: dict[str, str]
    ) -> dict[str, Any]:
        """POST /payments/{id}/refund. The same X-Refund-Idempotency key with the same
        body answers with the refund made the first time. Raises the SDK's
        BadRequestError (refused), ServerError / GatewayError, requests' errors or
        ProviderTimeout."""
        data = {"amount": amount_minor, "speed": "normal", "notes": notes}
        refund: dict[str, Any] = await self.sdk.call(
            self.client.payment.refund,
            payment_id,
            data,
            headers={"X-Refund-Idempotency": idempotence_key},
        )
        return refund

    # -- webhook ------------------------------------------------------------------------

    async def webhook(self, request: web.Request) -> web.Response:
        secret = self.settings.webhook_secret
        if secret is None:
            return web.json_response({"error": "webhook not configured"}, status=404)
        raw = await request.read()
        signature = request.headers.get("X-Razorpay-Signature")
        if not signature:
            log.warning("razorpay webhook from %s: no signature header", request.remote)
            return web.json_response({"error": "missing signature"}, status=400)
        from razorpay.errors import SignatureVerificationError  # loaded with the client

        try:
            body = raw.decode("utf-8")
            self.client.utility.verify_webhook_signature(body, signature, secret.get_secret_value())
        except (UnicodeDecodeError, TypeError, SignatureVerificationError):
            # TypeError: the SDK compares str digests, which refuses non-ASCII input.
            log.warning("razorpay webhook from %s: bad signature", request.remote)
            return web.json_response({"error": "bad signature"}, status=400)
        try:
            event = loads_bounded(raw)
        except BadJSON as exc:
            log.warning("razorpay webhook: signed but refused: %s", exc)
            return web.json_response({"error": "malformed JSON"}, status=400)
        if not isinstance(event, dict) or not isinstance(event.get("event"), str):
            return web.json_response({"error": "not an event"}, status=400)
        event_id = request.headers.get("x-razorpay-event-id") or (
            "sha256:" + hashlib.sha256(raw).hexdigest()
        )
        status, reason = await self.handle_event(event_id, event)
        return web.json_response({"status": reason}, status=status)

    async def handle_event(self, event_id: str, event: dict[str, Any]) -> tuple[int, str]:
        """Apply one verified event. Everything it changes, and the note that it was
        seen, commit together: a crash leaves it unseen and Razorpay retries."""
        name = str(event["event"])
        if name in REFUND_EVENTS:
            return await self._refund_event(event_id, name, event)
        sub = _entity(event, "subscription")
        sub_id = str(sub.get("id") or "")
        if not name.startswith("subscription.") or not sub_id:
            async with self.db.write() as session:
                await first_sighting(session, PROVIDER, event_id, name)
            return 200, "ignored"
        created_at = _time(event.get("created_at")) or datetime.now(UTC)
        async with self.db.write() as session:
            order = await self._order(session, sub_id, sub)
            if order is None:
                log.warning("razorpay %s for unknown subscription %s", name, sub_id)
                return 400, "unknown subscription"
            if self.plans.get(order.tier) is None:
                log.warning("razorpay %s: plan %s is not on sale", name, order.tier)
                return 400, "unknown plan"
            if not await first_sighting(session, PROVIDER, event_id, name):
                return 200, "duplicate"
            stale = order.last_event_at is not None and created_at < order.last_event_at
            if not stale:
                order.last_event_at = created_at
            elif name not in ACTIVATING:
                log.info("razorpay %s for %s is older than what was applied", name, sub_id)
                await mark_processed(session, PROVIDER, event_id)
                return 200, "stale"
            changed = await self._apply(session, name, event, order, sub, stale=stale)
            await mark_processed(session, PROVIDER, event_id)
        if changed:
            self.ledger.outbox.wake()
        return 200, "applied" if changed else "recorded"

    async def _refund_event(
        self, event_id: str, name: str, event: dict[str, Any]
    ) -> tuple[int, str]:
        """refund.processed: the money of one of our payments went back (an admin's
        refund, whose claim this completes, or one made in the dashboard); the plan
        follows once. refund.failed frees an admin's claim for another try."""
        refund = _entity(event, "refund")
        refund_id = str(refund.get("id") or "")
        payment_id = str(refund.get("payment_id") or "")
        async with self.db.write() as session:
            paid = (
                await session.execute(
                    select(Payment.user_id, PaymentOrder.meta)
                    .outerjoin(PaymentOrder, PaymentOrder.id == Payment.order_id)
                    .where(
                        Payment.provider == PROVIDER,
                        Payment.provider_charge_id == payment_id,
                        Payment.kind.in_(PAID_KINDS),
                    )
                )
            ).first()
            if not await first_sighting(session, PROVIDER, event_id, name):
                return 200, "duplicate"
            if not refund_id or paid is None or paid.user_id is None:
                log.info("razorpay %s %s: not a payment of ours", name, refund_id)
                return 200, "ignored"
            if name == "refund.failed":
                changed = await self.ledger.refund_failed_in(
                    session, PROVIDER, payment_id, refund_id, "failed at Razorpay"
                )
            else:
                settled = await self.ledger.settle_in(
                    session,
                    LedgerEntry(
                        provider=PROVIDER,
                        # One refund per payment: an admin's refund of it has this key.
                        charge_id=refund_key(payment_id),
                        kind="refund",
                        user_id=paid.user_id,
                        amount_minor=int(refund.get("amount") or 0),
                        currency=str(refund.get("currency") or "INR"),
                        refund_of=payment_id,
                        platform=platform_of(paid.meta or {}),
                        payload={"refund_id": refund_id},
                    ),
                )
                changed = not settled.duplicate
            await mark_processed(session, PROVIDER, event_id)
        if changed:
            self.ledger.outbox.wake()
        return 200, "applied" if changed else "recorded"

    async def _order(
        self, session: AsyncSession, sub_id: str, sub: dict[str, Any]
    ) -> PaymentOrder | None:
        query = select(PaymentOrder).where(
            PaymentOrder.provider == PROVIDER, PaymentOrder.provider_payment_id == sub_id
        )
        return await session.scalar(
            query.with_for_update().execution_options(populate_existing=True)
        )

    async def _apply(
        self,
        session: AsyncSession,
        name: str,
        event: dict[str, Any],
        order: PaymentOrder,
        sub: dict[str, Any],
        *,
        stale: bool,
    ) -> bool:
        """`stale`: a newer event was applied already. A charge is money and is
        recorded whenever it arrives (its period still counts); the status an old
        event implies is not."""
        sub_id = str(sub["id"])
        ours = await session.scalar(
            select(Subscription).where(
                Subscription.payment_provider == PROVIDER,
                Subscription.provider_subscription_id == sub_id,
                Subscription.is_current,
            )
        )
        platform = platform_of(order.meta)
        if name in ACTIVATING:
            payment = _entity(event, "payment")
            # An event carries the payment of an attempt; only a captured one is money.
            if payment.get("id") and payment.get("status", "captured") == "captured":
                return await self._charge(session, name, order, sub, payment, ours, stale)
            if stale:
                return False
            if ours is not None:
                # Active again without a new charge (a halted plan that recovered).
                change = await self.subscriptions.set_status(
                    session, ours, Status.ACTIVE, Reason.REACTIVATED, platform=platform
                )
                return change is not None
            # A first activation with nothing charged yet (e.g. a trial cycle).
            return await self._charge(session, name, order, sub, {}, None, stale)
        if ours is None:
            return False
        if name in STATUS_EVENTS:
            status, reason = STATUS_EVENTS[name]
            change = await self.subscriptions.set_status(
                session, ours, status, reason, platform=platform
            )
            return change is not None
        if name in ENDING:
            change = await self.subscriptions.cancel(session, order.user_id, platform=platform)
            return change is not None
        return False

    async def _charge(
        self,
        session: AsyncSession,
        name: str,
        order: PaymentOrder,
        sub: dict[str, Any],
        payment: dict[str, Any],
        ours: Subscription | None,
        stale: bool,
    ) -> bool:
        sub_id = str(sub["id"])
        platform = platform_of(order.meta)
        amount = int(payment.get("amount") or 0)
        if payment and amount != order.amount_minor:
            # Razorpay charges its plan's amount; ours is what people were shown.
            log.error(
                "razorpay %s charged %d for %s, but the plan is priced %d: check "
                "RAZORPAY_PLAN_IDS against the plans file",
                sub_id,
                amount,
                order.tier,
                order.amount_minor,
            )
        settled = await self.ledger.settle_in(
            session,
            LedgerEntry(
                provider=PROVIDER,
                # The payment id makes a charge count once, whichever event brings it.
                charge_id=str(payment.get("id") or f"activation:{sub_id}"),
                kind="renewal" if ours is not None else "payment",
                user_id=order.user_id,
                amount_minor=amount,
                currency=str(payment.get("currency") or "INR"),
                tier=Tier(order.tier),
                order_id=order.id,
                purchase=Purchase(
                    tier=Tier(order.tier),
                    provider=PROVIDER,
                    provider_subscription_id=sub_id,
                    period_end=_time(sub.get("current_end")),
                    recurring=True,
                    platform=platform,
                    keep_status=stale,
                ),
                platform=platform,
                payload={"event": name, "subscription_status": sub.get("status")},
            ),
        )
        if settled.duplicate and not stale and ours is not None and ours.status != Status.ACTIVE:
            # The charge came with its twin event already; a halted plan whose retry
            # succeeded is active again.
            change = await self.subscriptions.set_status(
                session, ours, Status.ACTIVE, Reason.REACTIVATED, platform=platform
            )
            return change is not None
        return settled.change is not None

    def close(self) -> None:
        self.sdk.close()
