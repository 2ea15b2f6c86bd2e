"""The one aiohttp server: liveness (/healthz), readiness (/readyz, and /health as
its terse alias) and Prometheus metrics (/metrics); payment and Telegram webhooks
are added to the same application by the features that need them."""

from __future__ import annotations

import asyncio
import logging
import time
from collections.abc import Awaitable
from typing import Protocol

from aiohttp import web
from aiohttp.typedefs import Handler, Middleware
from sqlalchemy import func, select, text

from bot.http_server import GUARD_KEY
from core import metrics
from core.db.models import OutboxMessage
from core.json_bounded import MAX_BYTES
from core.outbox import MAX_ATTEMPTS
from core.services import Services

log = logging.getLogger(__name__)


class Connected(Protocol):
    """A platform as /readyz sees it."""

    name: str

    @property
    def connected(self) -> bool: ...


# The platforms `oneai run` serves; each must be connected for /readyz.
PLATFORMS_KEY = web.AppKey("platforms", list[Connected])

# A part that takes longer than this to answer counts as failing.
CHECK_TIMEOUT = 3.0


async def _database(services: Services) -> None:
    async with services.db.read() as session:
        await session.execute(text("SELECT 1"))


async def _redis(url: str) -> None:
    from core.redis_client import connect  # with REDIS_URL only

    client = connect(url, socket_connect_timeout=CHECK_TIMEOUT, socket_timeout=CHECK_TIMEOUT)
    try:
        await client.ping()
    finally:
        await client.aclose()


async def failing_parts(services: Services, platforms: list[Connected]) -> list[str]:
    """What keeps this process from serving: the database, Redis (when set), a
    platform that is not connected. The reasons go to the log."""
    checks: list[tuple[str, Awaitable[None]]] = [("database", _database(services))]
    if (redis_url := services.settings.redis.redis_url) is not None:
        checks.append(("redis", _redis(redis_url)))
    results = await asyncio.gather(
        *(asyncio.wait_for(check, CHECK_TIMEOUT) for _, check in checks), return_exceptions=True
    )
    failing = []
    for (part, _), result in zip(checks, results, strict=True):
        if isinstance(result, BaseException):
            if isinstance(result, asyncio.CancelledError):
                raise result
            why = "no answer in time" if isinstance(result, TimeoutError) else repr(result)
            log.warning("readiness check: the %s does not answer: %s", part, why)
            failing.append(part)
    for platform in platforms:
        if not platform.connected:
            log.warning("readiness check: %s is not connected", platform.name)
            failing.append(platform.name)
    metrics.READY.set(0 if failing else 1)
    return failing


async def health(services: Services, platforms: list[Connected] | None = None) -> web.Response:
    """/health: up or not, and nothing else: anyone can ask, so the reason goes to
    the log (the same checks as /readyz)."""
    if await failing_parts(services, platforms or []):
        return web.json_response({"status": "fail"}, status=503)
    return web.json_response({"status": "ok"})


async def ready(services: Services, platforms: list[Connected]) -> web.Response:
    """/readyz: 200 when the database, Redis (when set) and every platform answer;
    503 naming the parts that do not (their reasons go to the log)."""
    failing = await failing_parts(services, platforms)
    if failing:
        return web.json_response({"status": "fail", "failing": failing}, status=503)
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


def _app_lines(request: web.Request, services: Services, started: float) -> list[str]:
    """This application's own figures (its services and server connections), as whole
    numbers in the text format, after the process registry's metrics."""
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
    return lines


async def outbox_backlog(services: Services) -> int:
    """Outbox rows still to send (not the ones given up on): one count over the
    partial index of pending rows."""
    async with services.db.read() as session:
        count = await session.scalar(
            select(func.count())
            .select_from(OutboxMessage)
            .where(OutboxMessage.sent_at.is_(None), OutboxMessage.attempts < MAX_ATTEMPTS)
        )
    return int(count or 0)


async def metrics_page(request: web.Request, services: Services, started: float) -> web.Response:
    """Prometheus text format: the process's metrics, then this application's."""
    try:
        backlog = await asyncio.wait_for(outbox_backlog(services), CHECK_TIMEOUT)
    except Exception as exc:
        # The rest of the page is still worth having; the gauge keeps its last value.
        log.warning("metrics: the outbox backlog could not be read: %r", exc)
    else:
        metrics.OUTBOX_BACKLOG.set(backlog)
    body = (
        metrics.exposition() + ("\n".join(_app_lines(request, services, started)) + "\n").encode()
    )
    return web.Response(body=body, headers={"Content-Type": metrics.CONTENT_TYPE})


def build_app(services: Services) -> web.Application:
    """The HTTP application: its own routes see the services they were built with;
    platforms and payment providers add theirs (webhooks) before it starts."""
    app = web.Application(client_max_size=MAX_BYTES, middlewares=[body_limit(MAX_BYTES)])
    platforms: list[Connected] = []
    app[PLATFORMS_KEY] = platforms
    started = time.monotonic()

    async def healthz(_request: web.Request) -> web.Response:
        # The process answers: no I/O, so a slow database never fails liveness.
        return web.json_response({"status": "ok"})

    async def readyz(_request: web.Request) -> web.Response:
        return await ready(services, platforms)

    async def health_route(_request: web.Request) -> web.Response:
        return await health(services, platforms)

    async def metrics_route(request: web.Request) -> web.Response:
        return await metrics_page(request, services, started)

    app.router.add_get("/healthz", healthz)
    app.router.add_get("/readyz", readyz)
    app.router.add_get("/health", health_route)
    app.router.add_get("/metrics", metrics_route)
    return app
