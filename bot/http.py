"""The one aiohttp server: health and metrics now, payment and Telegram webhooks
are added to the same application by the features that need them."""

from __future__ import annotations

import logging
import time

from aiohttp import web
from aiohttp.typedefs import Handler, Middleware
from sqlalchemy import text

from bot.http_server import GUARD_KEY
from core.json_bounded import MAX_BYTES
from core.services import Services

log = logging.getLogger(__name__)


async def health(services: Services) -> web.Response:
    """Up or not, and nothing else: anyone can ask, so the reason goes to the log."""
    try:
        async with services.db.read() as session:
            await session.execute(text("SELECT 1"))
    except Exception as exc:
        log.warning("health check: the database does not answer: %r", exc)
        return web.json_response({"status": "fail"}, status=503)
    return web.json_response({"status": "ok"})


def _too_large() -> web.Response:
    response = web.json_response({"error": "request body too large"}, status=413)
    response.force_close()  # the rest of the body is not worth reading
    return response


def body_limit(max_bytes: int) -> Middleware:
    """413 for a body larger than `max_bytes` (the app's client_max_size): before a
    byte of it is read when Content-Length says so, and as soon as a chunked body grows
    past it. aiohttp itself checks only when a handler reads the body, so a claimed
    2 GB body would be waited for first."""

    @web.middleware
    async def limit_body(request: web.Request, handler: Handler) -> web.StreamResponse:
        if request.content_length is not None:
            if request.content_length > max_bytes:
                return _too_large()
        elif request.body_exists:
            try:
                await request.read()  # kept by the request for the handler
            except web.HTTPRequestEntityTooLarge:
                return _too_large()
        return await handler(request)

    return limit_body


async def metrics(request: web.Request, services: Services, started: float) -> web.Response:
    """Prometheus text format."""
    uptime = time.monotonic() - started
    lines = [
        "# HELP oneai_uptime_seconds Seconds since this worker started.",
        "# TYPE oneai_uptime_seconds gauge",
        f"oneai_uptime_seconds {uptime:.1f}",
        "# HELP oneai_generations_running Answers streaming in this worker.",
        "# TYPE oneai_generations_running gauge",
        f"oneai_generations_running {len(services.chat.running_ids())}",
    ]
    guard = request.app.get(GUARD_KEY)
    if guard is not None:
        lines += [
            "# HELP oneai_http_connections_open Open connections to this HTTP server.",
            "# TYPE oneai_http_connections_open gauge",
            f"oneai_http_connections_open {guard.open_connections}",
            "# HELP oneai_http_connections_closed_total Connections the server closed "
            "early, by reason.",
            "# TYPE oneai_http_connections_closed_total counter",
            *(
                f'oneai_http_connections_closed_total{{reason="{reason}"}} {count}'
                for reason, count in sorted(guard.closed.items())
            ),
        ]
    return web.Response(text="\n".join(lines) + "\n", content_type="text/plain")


def build_app(services: Services) -> web.Application:
    """The HTTP application: its own routes see the services they were built with;
    platforms and payment providers add theirs (webhooks) before it starts."""
    app = web.Application(client_max_size=MAX_BYTES, middlewares=[body_limit(MAX_BYTES)])
    started = time.monotonic()

    async def health_route(_request: web.Request) -> web.Response:
        return await health(services)

    async def metrics_route(request: web.Request) -> web.Response:
        return await metrics(request, services, started)

    app.router.add_get("/health", health_route)
    app.router.add_get("/metrics", metrics_route)
    return app
