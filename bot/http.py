"""The one aiohttp server: health and metrics now, payment and Telegram webhooks
are added to the same application by the features that need them."""

from __future__ import annotations

import time

from aiohttp import web
from sqlalchemy import text

from core.services import Services
from payments.service import Payments

SERVICES_KEY = web.AppKey("services", Services)
STARTED_KEY = web.AppKey("started", float)
PAYMENTS_KEY = web.AppKey("payments", Payments)


async def health(request: web.Request) -> web.Response:
    services = request.app[SERVICES_KEY]
    try:
        async with services.db.read() as session:
            await session.execute(text("SELECT 1"))
    except Exception as exc:
        return web.json_response({"status": "error", "database": str(exc)[:200]}, status=503)
    return web.json_response({"status": "ok", "worker": services.worker_id})


async def metrics(request: web.Request) -> web.Response:
    """Prometheus text format."""
    services = request.app[SERVICES_KEY]
    uptime = time.monotonic() - request.app[STARTED_KEY]
    lines = [
        "# HELP oneai_uptime_seconds Seconds since this worker started.",
        "# TYPE oneai_uptime_seconds gauge",
        f"oneai_uptime_seconds {uptime:.1f}",
        "# HELP oneai_generations_running Answers streaming in this worker.",
        "# TYPE oneai_generations_running gauge",
        f"oneai_generations_running {len(services.chat.running_ids())}",
    ]
    return web.Response(text="\n".join(lines) + "\n", content_type="text/plain")


def build_app(services: Services) -> web.Application:
    app = web.Application(client_max_size=1024 * 1024)
    app[SERVICES_KEY] = services
    app[STARTED_KEY] = time.monotonic()
    app.router.add_get("/health", health)
    app.router.add_get("/metrics", metrics)
    return app
