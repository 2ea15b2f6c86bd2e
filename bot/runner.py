"""`oneai run`: prepare the database, start the HTTP server and every platform
that has a token, and stop them all cleanly on a signal: no new updates, running
answers get SHUTDOWN_GRACE seconds to finish, the rest are interrupted (units
back, people told), then everything closes."""

from __future__ import annotations

import asyncio
import contextlib
import importlib
import logging
import signal
from collections.abc import Callable
from types import ModuleType
from typing import Protocol

from aiohttp import web

from bot.http import PLATFORMS_KEY, build_app
from bot.http_server import serve_http
from bot.startup import summary
from core import heap
from core.config import Settings
from core.db.migrate import prepare_database
from core.llm.catalog import ModelCatalog
from core.services import Services, check_redis
from core.stop_signals import RedisStopBus
from payments.scheduler import PlanScheduler
from payments.service import Payments

log = logging.getLogger(__name__)

# platform name, the variable that enables it, the module with `setup(services, app, payments)`
PLATFORMS = (
    ("telegram", "TELEGRAM_BOT_TOKEN", "bot.telegram.runner"),
    ("discord", "DISCORD_BOT_TOKEN", "bot.discord.runner"),
)

# After the grace, how long interrupted answers get to show that they were cut.
FINAL_STATE_TIMEOUT = 10.0


class Platform(Protocol):
    name: str

    @property
    def connected(self) -> bool:
        """Taking updates (for /readyz)."""

    async def serve(self) -> None:
        """Take updates until `stop_intake`."""

    async def stop_intake(self) -> None: ...

    async def wait_idle(self) -> None:
        """Until every answer in progress has shown its final state."""

    async def close(self) -> None: ...


# The services, the HTTP application (for webhook routes) and the payment providers.
Setup = Callable[[Services, web.Application, Payments], Platform]


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


async def run_bot(settings: Settings, *, catalog: ModelCatalog | None = None) -> int:
    try:
        enabled = _enabled(settings)
    except PlatformMissing as exc:
        log.error("%s", exc)
        return 2
    await check_redis(settings.redis.redis_url)
    await prepare_database(settings.db.database_url)
    services = Services.build(settings, catalog=catalog)
    payments = Payments.build(services)
    app = build_app(services)
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
    platforms: list[Platform] = []
    tasks: list[asyncio.Task[None]] = []
    try:
        if settings.redis.redis_url is not None:
            stop_bus = RedisStopBus(settings.redis.redis_url)
            await stop_bus.start(services.chat.stop)
            services.chat.stop_bus = stop_bus
        # Alive from here on; answers of workers that died are ended and announced.
        await services.go_live()
        with contextlib.suppress(Exception):
            await services.refresh_catalog()
        platforms = [setup(services, app, payments) for _, setup in enabled]
        app[PLATFORMS_KEY].extend(platforms)
        # Broadcasts a stopped process was sending go on here (without Redis this
        # is the only process, so it takes over every one).
        await services.broadcasts.open(take_over=settings.redis.redis_url is None)
        if settings.payments.scheduler_enabled:
            scheduler.start()
        heap.settle()  # what start-up built lives as long as the process
        tasks = [asyncio.create_task(p.serve(), name=p.name) for p in platforms]
        await serve_http(runner, settings.http)
        for line in summary(settings):
            log.info("%s", line)
        waiter = asyncio.create_task(stop.wait())
        done, _ = await asyncio.wait([waiter, *tasks], return_when=asyncio.FIRST_COMPLETED)
        waiter.cancel()
        failed = [t for t in done if t is not waiter and t.exception() is not None]
        for task in failed:
            log.error("%s stopped: %s", task.get_name(), task.exception())
        await _shut_down(services, platforms, tasks, settings.workers.shutdown_grace)
        return 1 if failed else 0
    finally:
        for task in tasks:
            task.cancel()
        await asyncio.gather(*tasks, return_exceptions=True)
        for platform in platforms:
            try:
                await platform.close()
            except Exception:
                log.warning("closing %s failed", platform.name, exc_info=True)
        await scheduler.stop()
        await runner.cleanup()
        await payments.close()
        if stop_bus is not None:
            await stop_bus.close()
        await services.close()


async def _shut_down(
    services: Services, platforms: list[Platform], tasks: list[asyncio.Task[None]], grace: float
) -> None:
    """No new updates; answers in progress finish within `grace` or are cut (units
    back, people told); then the platforms are done."""
    for platform in platforms:
        try:
            await platform.stop_intake()
        except Exception:
            log.warning("stopping %s's updates failed", platform.name, exc_info=True)
    try:
        # Calls on the wire finish and are recorded; the next start resumes the rest.
        await services.broadcasts.close()
    except Exception:
        log.warning("stopping broadcasts failed", exc_info=True)
    running = len(services.chat.running_ids())
    if running:
        log.info("stopping: %d answers get up to %g s to finish", running, grace)
    cut = await services.chat.drain(grace)
    if cut:
        log.info("stopping: %d answers were cut short", cut)
    with contextlib.suppress(TimeoutError):
        async with asyncio.timeout(FINAL_STATE_TIMEOUT):
            await asyncio.gather(*(platform.wait_idle() for platform in platforms))
    with contextlib.suppress(TimeoutError):
        async with asyncio.timeout(FINAL_STATE_TIMEOUT):
            await asyncio.gather(*tasks, return_exceptions=True)
