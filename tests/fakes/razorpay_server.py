"""A fake Razorpay API (the subscription calls the bot makes), over real HTTP.

    async with FakeRazorpay() as rzp:
        settings = RazorpaySettings(key_id="rzp_test", key_secret=SecretStr("s"),
                                    api_url=rzp.url, ...)
        ...
        assert rzp.calls[0].body["plan_id"] == "plan_pro"

It checks HTTP basic auth (`key_id:key_secret`) when `key_id` is given, keeps the
subscriptions it created, and records every request. The SDK is synchronous and
runs in a thread pool, so serving on the test's event loop is fine.
"""

from __future__ import annotations

import itertools
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

    # -- lifecycle --------------------------------------------------------------

    def routes(self, app: web.Application) -> None:
        app.router.add_post("/v1/subscriptions", self._create)
        app.router.add_get("/v1/subscriptions/{sub_id}", self._fetch)
        app.router.add_post("/v1/subscriptions/{sub_id}/cancel", self._cancel)

    # -- inspection -------------------------------------------------------------

    @property
    def creates(self) -> list[RecordedCall]:
        return self.calls_to("POST", "/v1/subscriptions")

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
