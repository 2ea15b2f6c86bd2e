"""A fake Razorpay API (the subscription calls the bot makes), over real HTTP.

    async with FakeRazorpay() as rzp:
        settings = RazorpaySettings(key_id="rzp_test", key_secret=SecretStr("s"),
                                    api_url=rzp.url, ...)
        ...
        assert rzp.calls[0].body["plan_id"] == "plan_pro"

It checks HTTP basic auth (`key_id:key_secret`) when `key_id` is given, keeps the
subscriptions it created and the payments charged to them (`charge()` returns the
subscription.charged event Razorpay would send), refunds a captured payment at
POST /payments/{id}/refund (never more than is left of it; an
`X-Refund-Idempotency` key sent again with the same body answers with the first
refund, with another body it is refused), and records every request. The SDK is
synchronous and runs in a thread pool, so serving on the test's event loop is fine.
"""

from __future__ import annotations

import itertools
import re
import time
from typing import Any

from aiohttp import web

from tests.fakes.base import RecordedCall, RecordingServer


def _error(status: int, code: str, description: str) -> web.Response:
    body = {"error": {"code": code, "description": description, "source": "NA", "step": "NA"}}
    return web.json_response(body, status=status)


class FakeRazorpay(RecordingServer):
    """The server. Use `async with FakeRazorpay() as rzp:` or `start()` / `stop()`."""

    def __init__(
        self,
        *,
        host: str = "127.0.0.1",
        port: int = 0,
        key_id: str | None = None,
        key_secret: str | None = None,
    ) -> None:
        super().__init__(host, port)
        self.key_id = key_id
        self.key_secret = key_secret
        self.subscriptions: dict[str, dict[str, Any]] = {}
        self.create_status = 200  # set to e.g. 500 to make creates fail
        self._ids = itertools.count(1)
        self.payments: dict[str, dict[str, Any]] = {}
        self.refunds: dict[str, dict[str, Any]] = {}
        # X-Refund-Idempotency -> (payment id, request body, refund id).
        self._refund_keys: dict[str, tuple[str, dict[str, Any], str]] = {}
        self.refund_status = "processed"  # how refunds made through the API end

    # -- lifecycle --------------------------------------------------------------

    def routes(self, app: web.Application) -> None:
        app.router.add_post("/v1/subscriptions", self._create)
        app.router.add_get("/v1/subscriptions/{sub_id}", self._fetch)
        app.router.add_post("/v1/subscriptions/{sub_id}/cancel", self._cancel)
        app.router.add_get("/v1/payments/{payment_id}", self._fetch_payment)
        app.router.add_post("/v1/payments/{payment_id}/refund", self._refund)

    # -- inspection -------------------------------------------------------------

    @property
    def creates(self) -> list[RecordedCall]:
        return self.calls_to("POST", "/v1/subscriptions")

    @property
    def refund_requests(self) -> list[RecordedCall]:
        return [c for c in self.calls if c.method == "POST" and c.path.endswith("/refund")]

    # -- test helpers: what happens on Razorpay's side ------------------------------

    def charge(
        self,
        sub_id: str,
        *,
        amount: int,
        current_end: int | None = None,
        event: str = "subscription.charged",
    ) -> tuple[str, dict[str, Any]]:
        """The subscription's card is charged for a cycle ending at `current_end`:
        the captured payment's id and the webhook body Razorpay sends for it."""
        sub = self.subscriptions[sub_id]
        now = int(time.time())
        end = current_end or now + 30 * 24 * 3600
        sub.update(
            status="active",
            current_start=end - 30 * 24 * 3600,
            current_end=end,
            charge_at=end,
            paid_count=int(sub.get("paid_count") or 0) + 1,
        )
        payment_id = f"pay_fake{next(self._ids):08d}"
        payment: dict[str, Any] = {
            "id": payment_id,
            "entity": "payment",
            "amount": amount,
            "currency": "INR",
            "status": "captured",
            "order_id": None,
            "invoice_id": f"inv_fake{payment_id[8:]}",
            "international": False,
            "method": "card",
            "amount_refunded": 0,
            "refund_status": None,
            "captured": True,
            "description": None,
            "email": "void@razorpay.com",
            "contact": "+919999999999",
            "notes": [],
            "fee": 0,
            "tax": 0,
            "error_code": None,
            "created_at": now,
        }
        self.payments[payment_id] = payment
        body = self.event(event, {"subscription": dict(sub), "payment": dict(payment)})
        return payment_id, body

    def refund_event(self, refund_id: str, event: str = "refund.processed") -> dict[str, Any]:
        """The webhook body Razorpay sends about a refund."""
        refund = self.refunds[refund_id]
        payment = self.payments[refund["payment_id"]]
        return self.event(event, {"refund": dict(refund), "payment": dict(payment)})

    @staticmethod
    def event(name: str, entities: dict[str, dict[str, Any]]) -> dict[str, Any]:
        return {
            "entity": "event",
            "account_id": "acc_fake",
            "event": name,
            "contains": list(entities),
            "payload": {key: {"entity": value} for key, value in entities.items()},
            "created_at": int(time.time()),
        }

    # -- handlers ---------------------------------------------------------------

    def _authorized(self, call: RecordedCall) -> bool:
        return self._basic_auth(call, self.key_id, self.key_secret)

    async def _create(self, request: web.Request) -> web.Response:
        call = await self._record(request)
        if not self._authorized(call):
            return _error(401, "BAD_REQUEST_ERROR", "Authentication failed")
        if self.create_status != 200:
            return _error(self.create_status, "SERVER_ERROR", "We are facing some trouble")
        plan_id = call.body.get("plan_id")
        if not isinstance(plan_id, str) or not plan_id:
            return _error(400, "BAD_REQUEST_ERROR", "The plan id field is required.")
        sub_id = f"sub_fake{next(self._ids):08d}"
        now = int(time.time())
        sub: dict[str, Any] = {
            "id": sub_id,
            "entity": "subscription",
            "plan_id": plan_id,
            "customer_id": None,
            "status": "created",
            "current_start": None,
            "current_end": None,
            "ended_at": None,
            "quantity": 1,
            "notes": call.body.get("notes") or {},
            "charge_at": None,
            "start_at": None,
            "end_at": None,
            "auth_attempts": 0,
            "total_count": call.body.get("total_count"),
            "paid_count": 0,
            "customer_notify": bool(call.body.get("customer_notify", True)),
            "created_at": now,
            "expire_by": None,
            "short_url": f"{self.url}/i/{sub_id}",
            "has_scheduled_changes": False,
            "change_scheduled_at": None,
            "source": "api",
            "remaining_count": call.body.get("total_count"),
        }
        self.subscriptions[sub_id] = sub
        return web.json_response(sub)

    async def _subscription(
        self, request: web.Request
    ) -> tuple[RecordedCall, dict[str, Any]] | web.Response:
        """The call and the subscription it names, or the error Razorpay answers."""
        call = await self._record(request)
        if not self._authorized(call):
            return _error(401, "BAD_REQUEST_ERROR", "Authentication failed")
        sub = self.subscriptions.get(request.match_info["sub_id"])
        if sub is None:
            return _error(400, "BAD_REQUEST_ERROR", "The id provided does not exist")
        return call, sub

    async def _fetch(self, request: web.Request) -> web.Response:
        found = await self._subscription(request)
        return found if isinstance(found, web.Response) else web.json_response(found[1])

    async def _cancel(self, request: web.Request) -> web.Response:
        found = await self._subscription(request)
        if isinstance(found, web.Response):
            return found
        call, sub = found
        at_cycle_end = str(call.body.get("cancel_at_cycle_end", 0)) in {"1", "True", "true"}
        if at_cycle_end:
            sub["has_scheduled_changes"] = True
            sub["change_scheduled_at"] = sub.get("current_end")
        else:
            sub["status"] = "cancelled"
            sub["ended_at"] = int(time.time())
        return web.json_response(sub)

    async def _payment(
        self, request: web.Request
    ) -> tuple[RecordedCall, dict[str, Any]] | web.Response:
        call = await self._record(request)
        if not self._authorized(call):
            return _error(401, "BAD_REQUEST_ERROR", "Authentication failed")
        payment = self.payments.get(request.match_info["payment_id"])
        if payment is None:
            return _error(400, "BAD_REQUEST_ERROR", "The id provided does not exist")
        return call, payment

    async def _fetch_payment(self, request: web.Request) -> web.Response:
        found = await self._payment(request)
        return found if isinstance(found, web.Response) else web.json_response(found[1])

    async def _refund(self, request: web.Request) -> web.Response:
        found = await self._payment(request)
        if isinstance(found, web.Response):
            return found
        call, payment = found
        if not call.valid:
            return _error(400, "BAD_REQUEST_ERROR", "invalid request sent")
        key = call.headers.get("x-refund-idempotency")
        if key is not None:
            if not _IDEMPOTENCY_KEY.fullmatch(key):
                return _error(400, "BAD_REQUEST_ERROR", "The idempotency key is invalid")
            seen = self._refund_keys.get(key)
            if seen is not None:
                payment_id, body, refund_id = seen
                if payment_id != payment["id"] or body != call.body:
                    return _error(
                        400,
                        "BAD_REQUEST_ERROR",
                        "Different request with the same idempotency key has already been "
                        "processed.",
                    )
                return web.json_response(self.refunds[refund_id])
        if payment["status"] == "refunded":
            return _error(400, "BAD_REQUEST_ERROR", "The payment has been fully refunded already")
        if payment["status"] != "captured":
            return _error(
                400, "BAD_REQUEST_ERROR", "Only payments which have been captured can be refunded"
            )
        left = int(payment["amount"]) - int(payment["amount_refunded"])
        amount = call.body.get("amount", left)
        if not isinstance(amount, int) or amount < 100:
            return _error(400, "BAD_REQUEST_ERROR", "The amount must be at least INR 1.00")
        if amount > left:
            return _error(
                400,
                "BAD_REQUEST_ERROR",
                "The refund amount provided is greater than amount captured",
            )
        refund_id = f"rfnd_fake{next(self._ids):08d}"
        refund: dict[str, Any] = {
            "id": refund_id,
            "entity": "refund",
            "amount": amount,
            "currency": payment["currency"],
            "payment_id": payment["id"],
            "notes": call.body.get("notes") or [],
            "receipt": call.body.get("receipt"),
            "acquirer_data": {"arn": None},
            "created_at": int(time.time()),
            "batch_id": None,
            "status": self.refund_status,
            "speed_processed": "normal",
            "speed_requested": str(call.body.get("speed") or "normal"),
        }
        self.refunds[refund_id] = refund
        if key is not None:
            self._refund_keys[key] = (payment["id"], call.body, refund_id)
        if self.refund_status != "failed":
            payment["amount_refunded"] = int(payment["amount_refunded"]) + amount
            full = payment["amount_refunded"] >= payment["amount"]
            payment["refund_status"] = "full" if full else "partial"
            if full:
                payment["status"] = "refunded"
        return web.json_response(refund)


_IDEMPOTENCY_KEY = re.compile(r"[A-Za-z0-9_-]{10,}")
