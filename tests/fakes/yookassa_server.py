"""A fake YooKassa API v3 (payments and refunds), over real HTTP.

    async with FakeYooKassa(shop_id="1", secret_key="k") as yoo:
        settings = YooKassaSettings(shop_id="1", secret_key=SecretStr("k"),
                                    api_url=yoo.api_url, ...)
        ...                                   # the bot creates a payment
        yoo.succeed(payment_id)               # the person paid
        body = yoo.notification("payment.succeeded", payment_id)

Like the real API it needs an `Idempotence-Key` on POST /payments and POST
/refunds and answers a repeated key with the object it created the first time (a
different body under a used key is an error), and it checks HTTP basic auth
`shop_id:secret_key`. A refund through the API needs a succeeded payment and no
more than what is left of it to refund; it ends as `refund_status` says
(succeeded, or pending until `finish_refund`, or canceled). Test helpers move a
payment along (succeeded, canceled, any status) and make refunds as if from the
dashboard; `notification()` builds what YooKassa would POST to the shop,
optionally with a body that lies about the object's state.
"""

from __future__ import annotations

import asyncio
import copy
import uuid
from datetime import UTC, datetime
from typing import Any

from aiohttp import web

from tests.fakes.base import RecordedCall, RecordingServer


def _now_iso() -> str:
    return datetime.now(UTC).strftime("%Y-%m-%dT%H:%M:%S.") + "000Z"


def _cents(value: Any) -> int:
    units, _, cents = str(value).partition(".")
    return int(units) * 100 + int((cents + "00")[:2])


def _error(status: int, code: str, description: str, parameter: str | None = None) -> web.Response:
    body: dict[str, Any] = {
        "type": "error",
        "id": str(uuid.uuid4()),
        "code": code,
        "description": description,
    }
    if parameter is not None:
        body["parameter"] = parameter
    return web.json_response(body, status=status)


class FakeYooKassa(RecordingServer):
    """The server. Use `async with FakeYooKassa() as yoo:` or `start()` / `stop()`."""

    def __init__(
        self,
        *,
        host: str = "127.0.0.1",
        port: int = 0,
        shop_id: str | None = None,
        secret_key: str | None = None,
        gateway_id: str = "100500",
    ) -> None:
        super().__init__(host, port)
        self.shop_id = shop_id
        self.secret_key = secret_key
        self.gateway_id = gateway_id
        self.payments: dict[str, dict[str, Any]] = {}
        self.refunds: dict[str, dict[str, Any]] = {}
        # Idempotence-Key -> (request body, payment id) of the first create.
        self._by_key: dict[str, tuple[dict[str, Any], str]] = {}
        # Payments that asked to save their card, and the cards saved so far.
        self.saving: set[str] = set()
        self.decline_saved = False  # charges to saved cards are refused
        self.create_delay = 0.0  # seconds before answering a create
        # Idempotence-Key -> (request body, refund id) of the first POST /refunds.
        self._refund_keys: dict[str, tuple[dict[str, Any], str]] = {}
        self.refund_status = "succeeded"  # how refunds created through the API end
        self.refund_delay = 0.0  # seconds before answering a refund create

    # -- lifecycle --------------------------------------------------------------

    def routes(self, app: web.Application) -> None:
        app.router.add_post("/v3/payments", self._create_payment)
        app.router.add_get("/v3/payments/{payment_id}", self._get_payment)
        app.router.add_post("/v3/refunds", self._create_refund)
        app.router.add_get("/v3/refunds/{refund_id}", self._get_refund)

    # -- inspection -------------------------------------------------------------

    @property
    def api_url(self) -> str:
        """What YooKassaSettings.api_url takes."""
        return f"{self.url}/v3"

    @property
    def create_requests(self) -> list[RecordedCall]:
        """Every POST /payments, including repeats of an idempotence key."""
        return self.calls_to("POST", "/v3/payments")

    @property
    def creates(self) -> int:
        """Payments actually created (a repeated key creates nothing)."""
        return len(self.payments)

    @property
    def refund_requests(self) -> list[RecordedCall]:
        """Every POST /refunds, including repeats of an idempotence key."""
        return self.calls_to("POST", "/v3/refunds")

    def fetches(self, payment_id: str) -> int:
        return len(self.calls_to("GET", f"/v3/payments/{payment_id}"))

    # -- test helpers: what happens on YooKassa's side ----------------------------

    def payment(self, payment_id: str) -> dict[str, Any]:
        return self.payments[payment_id]

    def succeed(self, payment_id: str, *, amount: str | None = None) -> dict[str, Any]:
        """The person paid (and the payment was captured)."""
        payment = self.payments[payment_id]
        payment.update(
            status="succeeded",
            paid=True,
            refundable=True,
            captured_at=_now_iso(),
            income_amount=dict(payment["amount"]),
        )
        payment.pop("confirmation", None)
        if amount is not None:
            payment["amount"] = {**payment["amount"], "value": amount}
        payment["payment_method"] = {
            "type": "bank_card",
            "id": payment_id,
            # A card is saved when the payment asked for it (save_payment_method).
            "saved": payment_id in self.saving,
            "title": "Bank card *4444",
            "card": {
                "first6": "555555",
                "last4": "4444",
                "expiry_month": "12",
                "expiry_year": "2030",
                "card_type": "MasterCard",
            },
        }
        return payment

    @property
    def saved_methods(self) -> set[str]:
        return {
            str(p["payment_method"]["id"])
            for p in self.payments.values()
            if p.get("payment_method", {}).get("saved")
        }

    def cancel(self, payment_id: str) -> dict[str, Any]:
        payment = self.payments[payment_id]
        payment.update(
            status="canceled",
            paid=False,
            refundable=False,
            cancellation_details={"party": "yoo_money", "reason": "expired_on_confirmation"},
        )
        payment.pop("confirmation", None)
        return payment

    def set_status(self, payment_id: str, status: str, *, paid: bool) -> dict[str, Any]:
        payment = self.payments[payment_id]
        payment.update(status=status, paid=paid)
        return payment

    def refund(
        self, payment_id: str, *, amount: str | None = None, status: str = "succeeded"
    ) -> str:
        """A refund of (by default all of) the payment, made in the dashboard;
        returns the refund id."""
        payment = self.payments[payment_id]
        return self._new_refund(payment, amount or payment["amount"]["value"], status, "Refund")

    def finish_refund(self, refund_id: str, status: str = "succeeded") -> dict[str, Any]:
        """A pending refund ends (succeeded or canceled)."""
        refund = self.refunds[refund_id]
        refund["status"] = status
        if status == "succeeded":
            self._count_refund(self.payments[refund["payment_id"]], refund["amount"]["value"])
        else:
            refund["cancellation_details"] = {"party": "yoo_money", "reason": "rejected_by_payee"}
        return refund

    def refunded_cents(self, payment_id: str) -> int:
        value = self.payments[payment_id].get("refunded_amount", {}).get("value", "0")
        return _cents(value)

    def _new_refund(
        self, payment: dict[str, Any], value: str, status: str, description: str
    ) -> str:
        refund_id = str(uuid.uuid4())
        refund: dict[str, Any] = {
            "id": refund_id,
            "payment_id": payment["id"],
            "status": status,
            "created_at": _now_iso(),
            "amount": {"value": value, "currency": payment["amount"]["currency"]},
            "description": description,
        }
        if status == "canceled":
            refund["cancellation_details"] = {"party": "yoo_money", "reason": "rejected_by_payee"}
        self.refunds[refund_id] = refund
        if status == "succeeded":
            self._count_refund(payment, value)
        return refund_id

    @staticmethod
    def _count_refund(payment: dict[str, Any], value: str) -> None:
        done = _cents(payment.get("refunded_amount", {}).get("value", "0")) + _cents(value)
        payment["refunded_amount"] = {
            "value": f"{done // 100}.{done % 100:02d}",
            "currency": payment["amount"]["currency"],
        }
        if done >= _cents(payment["amount"]["value"]):
            payment["refundable"] = False

    def notification(self, event: str, object_id: str, **overrides: Any) -> dict[str, Any]:
        """The body YooKassa POSTs for `event`; `overrides` replace fields of the object
        (a forged body can claim anything; the API's answer is what counts)."""
        source = self.refunds if event.startswith("refund.") else self.payments
        obj = copy.deepcopy(source.get(object_id, {"id": object_id}))
        obj.update(overrides)
        return {"type": "notification", "event": event, "object": obj}

    # -- handlers ---------------------------------------------------------------

    def _authorized(self, call: RecordedCall) -> bool:
        return self._basic_auth(call, self.shop_id, self.secret_key)

    async def _create_payment(self, request: web.Request) -> web.Response:
        call = await self._record(request)
        if self.create_delay:
            await asyncio.sleep(self.create_delay)  # a provider that hangs
        if not self._authorized(call):
            return _error(401, "invalid_credentials", "Authentication error")
        key = call.idempotence_key
        if not key:
            return _error(400, "invalid_request", "Idempotence key is required", "Idempotence-Key")
        if not call.valid:
            return _error(400, "invalid_request", "Request body is not valid JSON")
        seen = self._by_key.get(key)
        if seen is not None:
            first_body, payment_id = seen
            if first_body != call.body:
                return _error(
                    400,
                    "invalid_request",
                    "Idempotence key duplicated with a different request",
                    "Idempotence-Key",
                )
            return web.json_response(self.payments[payment_id])
        amount = call.body.get("amount")
        if not isinstance(amount, dict) or "value" not in amount or "currency" not in amount:
            return _error(400, "invalid_request", "Amount is required", "amount")
        method = call.body.get("payment_method_id")
        if method is not None and method not in self.saved_methods:
            return _error(400, "invalid_request", "Unknown payment method", "payment_method_id")
        payment_id = str(uuid.uuid4())
        payment: dict[str, Any] = {
            "id": payment_id,
            "status": "pending",
            "paid": False,
            "amount": {"value": str(amount["value"]), "currency": str(amount["currency"])},
            "created_at": _now_iso(),
            "description": call.body.get("description", ""),
            "metadata": call.body.get("metadata") or {},
            "recipient": {"account_id": self.shop_id or "1", "gateway_id": self.gateway_id},
            "refundable": False,
            "test": True,
        }
        confirmation = call.body.get("confirmation")
        if isinstance(confirmation, dict) and confirmation.get("type") == "redirect":
            payment["confirmation"] = {
                "type": "redirect",
                "confirmation_url": f"{self.url}/checkout/{payment_id}",
            }
            if confirmation.get("return_url"):
                payment["confirmation"]["return_url"] = confirmation["return_url"]
        self.payments[payment_id] = payment
        self._by_key[key] = (call.body, payment_id)
        if call.body.get("save_payment_method") is True:
            self.saving.add(payment_id)
        saved = call.body.get("payment_method_id")
        if saved is not None:
            # A charge to a saved card: no confirmation, decided at once.
            if saved not in self.saved_methods:
                return _error(
                    400, "invalid_request", "Payment method not found", "payment_method_id"
                )
            payment.pop("confirmation", None)
            if self.decline_saved:
                self.cancel(payment_id)
            else:
                self.succeed(payment_id)
                payment["payment_method"]["id"] = saved
                payment["payment_method"]["saved"] = True
        return web.json_response(payment)

    async def _get_payment(self, request: web.Request) -> web.Response:
        call = await self._record(request)
        if not self._authorized(call):
            return _error(401, "invalid_credentials", "Authentication error")
        payment = self.payments.get(request.match_info["payment_id"])
        if payment is None:
            return _error(404, "not_found", "Payment not found")
        return web.json_response(payment)

    async def _create_refund(self, request: web.Request) -> web.Response:
        call = await self._record(request)
        if self.refund_delay:
            await asyncio.sleep(self.refund_delay)
        if not self._authorized(call):
            return _error(401, "invalid_credentials", "Authentication error")
        key = call.idempotence_key
        if not key:
            return _error(400, "invalid_request", "Idempotence key is required", "Idempotence-Key")
        if not call.valid:
            return _error(400, "invalid_request", "Request body is not valid JSON")
        seen = self._refund_keys.get(key)
        if seen is not None:
            first_body, refund_id = seen
            if first_body != call.body:
                return _error(
                    400,
                    "invalid_request",
                    "Idempotence key duplicated with a different request",
                    "Idempotence-Key",
                )
            return web.json_response(self.refunds[refund_id])
        payment = self.payments.get(str(call.body.get("payment_id") or ""))
        if payment is None:
            return _error(400, "invalid_request", "Payment not found", "payment_id")
        amount = call.body.get("amount")
        if not isinstance(amount, dict) or "value" not in amount or "currency" not in amount:
            return _error(400, "invalid_request", "Amount is required", "amount")
        if payment["status"] != "succeeded":
            return _error(
                400,
                "invalid_request",
                "A refund can be made only for a payment in the succeeded status",
                "payment_id",
            )
        if amount["currency"] != payment["amount"]["currency"]:
            return _error(400, "invalid_request", "Currency does not match the payment", "amount")
        left = _cents(payment["amount"]["value"]) - self.refunded_cents(payment["id"])
        pending = sum(
            _cents(r["amount"]["value"])
            for r in self.refunds.values()
            if r["payment_id"] == payment["id"] and r["status"] == "pending"
        )
        if _cents(amount["value"]) > left - pending:
            return _error(
                400,
                "invalid_request",
                "The refund amount exceeds the amount available for refund",
                "amount",
            )
        refund_id = self._new_refund(
            payment,
            str(amount["value"]),
            self.refund_status,
            str(call.body.get("description") or ""),
        )
        self._refund_keys[key] = (call.body, refund_id)
        return web.json_response(self.refunds[refund_id])

    async def _get_refund(self, request: web.Request) -> web.Response:
        call = await self._record(request)
        if not self._authorized(call):
            return _error(401, "invalid_credentials", "Authentication error")
        refund = self.refunds.get(request.match_info["refund_id"])
        if refund is None:
            return _error(404, "not_found", "Refund not found")
        return web.json_response(refund)
