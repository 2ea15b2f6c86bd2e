"""`oneai run`: prepare the database, start the HTTP server and every platform
that has a token, and stop them all cleanly on a signal."""

from __future__ import annotations

import asyncio
import contextlib
import importlib
import logging
import signal
from collections.abc import Callable, Coroutine
from types import ModuleType
from typing import Any

from aiohttp import web

from bot.http import INTERRUPTED_KEY, PAYMENTS_KEY, build_app
from bot.http_server import serve_http
from core.config import Settings
from core.db.migrate import prepare_database
from core.services import Services, check_redis
from core.stop_signals import RedisStopBus
from payments.scheduler import PlanScheduler
from payments.service import Payments

log = logging.getLogger(__name__)

# platform name, the variable that enables it, the module with `setup(services, app)`
PLATFORMS = (
    ("telegram", "TELEGRAM_BOT_TOKEN", "bot.telegram.runner"),
    ("discord", "DISCORD_BOT_TOKEN", "bot.discord.runner"),
)

Setup = Callable[[Services, web.Application], Callable[[], Coroutine[Any, Any, None]]]


class PlatformMissing(Exception):
    pass


def _enabled(settings: Settings) -> list[tuple[str, Setup]]:
    tokens = {
        "telegram": settings.telegram.bot_token,
        "discord": settings.discord.bot_token,
    }
    enabled = []
    for name, variable, module_name in PLATFORMS:
        if tokens[name] is None:
            continue
        try:
            module: ModuleType = importlib.import_module(module_name)
        except ModuleNotFoundError as exc:
            if exc.name is not None and exc.name.startswith(module_name.rsplit(".", 1)[0]):
                raise PlatformMissing(
                    f"{variable} is set, but this build has no {name} adapter"
                ) from None
            raise
        enabled.append((name, module.setup))
    return enabled


async def run_bot(settings: Settings) -> int:
    try:
        platforms = _enabled(settings)
    except PlatformMissing as exc:
        log.error("%s", exc)
        return 2
    await check_redis(settings.redis.redis_url)
    await prepare_database(settings.db.database_url)
    services = Services.build(settings)
    payments = Payments.build(services)
    app = build_app(services)
    app[PAYMENTS_KEY] = payments
    payments.mount(app)
    scheduler = PlanScheduler(services, payments)
    runner = web.AppRunner(app)
    stop = asyncio.Event()
    loop = asyncio.get_running_loop()
    for sig in (signal.SIGINT, signal.SIGTERM):
        # Loops without signal support (Windows) stop on KeyboardInterrupt instead.
        with contextlib.suppress(NotImplementedError):
            loop.add_signal_handler(sig, stop.set)
    stop_bus = None
    try:
        if settings.redis.redis_url is not None:
            stop_bus = RedisStopBus(settings.redis.redis_url)
            await stop_bus.start(services.chat.stop)
            services.chat.stop_bus = stop_bus
        interrupted = await services.chat.recover_stale()
        if interrupted:
            log.info("marked %d answers of stopped workers as interrupted", len(interrupted))
        app[INTERRUPTED_KEY] = interrupted
        with contextlib.suppress(Exception):
            await services.refresh_catalog()
        servers = [(name, setup(services, app)) for name, setup in platforms]
        if settings.payments.scheduler_enabled:
            scheduler.start()
        tasks: list[asyncio.Task[None]] = [
            asyncio.create_task(serve(), name=name) for name, serve in servers
        ]
        await serve_http(runner, settings.http)
        log.info("HTTP server on %s:%s", settings.http.host, settings.http.port)
        waiter = asyncio.create_task(stop.wait())
        done, _ = await asyncio.wait([waiter, *tasks], return_when=asyncio.FIRST_COMPLETED)
        failed = [t for t in done if t is not waiter and t.exception() is not None]
        for task in [waiter, *tasks]:
            task.cancel()
        await asyncio.gather(waiter, *tasks, return_exceptions=True)
        for task in failed:
            log.error("%s stopped: %s", task.get_name(), task.exception())
        return 1 if failed else 0
    finally:
        scheduler.stop()
        await runner.cleanup()
        await payments.close()
        if stop_bus is not None:
            await stop_bus.close()
        await services.close()
