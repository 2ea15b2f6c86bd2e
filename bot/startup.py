"""Checks `oneai` makes before it starts anything, so that a problem the operator can fix
(a file, a port, a token) stops start-up with one line naming the variable, not with a
traceback or after the bots are already online. Each raises ConfigError."""

from __future__ import annotations

import errno
import socket
from urllib.parse import urlsplit

from core.config import ConfigError, HttpSettings, Settings
from core.llm.catalog import ModelCatalog


def load_catalog(settings: Settings) -> ModelCatalog:
    """The model catalog, with a broken MODEL_CATALOG_FILE (or a DEFAULT_MODEL it does
    not list) named as such."""
    llm = settings.llm
    try:
        return ModelCatalog.load(
            llm.default_model, override_file=llm.catalog_file, cache_file=llm.catalog_cache_file
        )
    except ValueError as exc:
        # Without an override file only the default model can be wrong.
        variable = "MODEL_CATALOG_FILE" if llm.catalog_file is not None else "DEFAULT_MODEL"
        raise ConfigError(f"configuration error: {variable}: {exc}") from None


def check_plans(settings: Settings) -> None:
    from payments.plans import PlanCatalog, PlanConfigError

    try:
        PlanCatalog.load(settings.payments.plans_file)
    except PlanConfigError as exc:
        raise ConfigError(f"configuration error: PAYMENTS_PLANS_FILE: {exc}") from None


def check_http_port(http: HttpSettings) -> None:
    """Binds the HTTP server's address once and lets it go. The server binds it for good
    only after the platforms have started, too late for a clear refusal."""
    if http.port == 0:  # any free port
        return
    where = f"{http.host}:{http.port}"
    try:
        addresses = socket.getaddrinfo(
            http.host or None, http.port, type=socket.SOCK_STREAM, flags=socket.AI_PASSIVE
        )
    except socket.gaierror as exc:
        raise ConfigError(f"HTTP_HOST: {http.host!r} does not resolve ({exc.strerror})") from None
    for family, kind, proto, _, address in addresses:
        with socket.socket(family, kind, proto) as probe:
            # As aiohttp's server does: a port left in TIME_WAIT by a restart is free.
            probe.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
            if family == socket.AF_INET6:
                probe.setsockopt(socket.IPPROTO_IPV6, socket.IPV6_V6ONLY, 1)
            try:
                probe.bind(address)
            except OSError as exc:
                raise ConfigError(_bind_error(exc, where, http.port)) from None


def _bind_error(exc: OSError, where: str, port: int) -> str:
    if exc.errno == errno.EADDRINUSE:
        return (
            f"HTTP_PORT: {where} is already in use (another `oneai run`, or another "
            "server); stop it or set HTTP_PORT to a free port"
        )
    if exc.errno == errno.EACCES:
        return f"HTTP_PORT: listening on port {port} needs privileges; pick a port above 1023"
    if exc.errno == errno.EADDRNOTAVAIL:
        return f"HTTP_HOST: {where} is not an address of this machine"
    return f"HTTP_HOST/HTTP_PORT: cannot listen on {where}: {exc.strerror or exc}"


async def check_run(settings: Settings) -> ModelCatalog:
    """Everything `oneai run` can be refused before it starts serving: its files, its
    HTTP port, and each platform's token. Returns the catalog it loaded."""
    catalog = load_catalog(settings)
    check_plans(settings)
    check_http_port(settings.http)
    if settings.telegram.bot_token is not None:
        from bot.telegram.runner import check_token

        await check_token(settings.telegram)
    return catalog


def _where(url: str) -> str:
    """A URL's host (and port, and database or path), never its password."""
    parts = urlsplit(url)
    if parts.scheme.startswith("sqlite"):
        return parts.path.removeprefix("/") or ":memory:"
    host = parts.hostname or "localhost"
    port = f":{parts.port}" if parts.port else ""
    return f"{host}{port}{parts.path}"


def summary(settings: Settings) -> list[str]:
    """What `oneai run` serves, in a few lines for its start."""
    telegram = settings.telegram
    platforms = []
    if telegram.bot_token is not None:
        platforms.append(f"telegram ({'webhook' if telegram.webhook_url else 'polling'})")
    if settings.discord.bot_token is not None:
        platforms.append("discord")
    db_url = settings.db.database_url
    kind = "sqlite" if settings.db.is_sqlite else "postgresql"
    redis = settings.redis.redis_url
    pay = settings.payments
    providers = ["telegram stars"] if telegram.bot_token is not None else []
    if pay.telegram_provider_token is not None and pay.telegram_provider_enabled:
        providers.append("telegram provider")
    if settings.yookassa.configured:
        providers.append("yookassa")
    if settings.razorpay.configured:
        providers.append("razorpay")
    if settings.discord.sku_pro is not None:
        providers.append("discord premium")
    app, http = settings.app, settings.http
    return [
        f"platforms: {', '.join(platforms) or 'none'}",
        f"database: {kind} {_where(db_url)}; redis: {_where(redis) if redis else 'off'}",
        f"payments: {', '.join(providers) or 'none'}; "
        f"scheduler: {'on' if pay.scheduler_enabled else 'off'}",
        f"HTTP: http://{http.host}:{http.port} (/healthz /readyz /metrics); "
        f"logs: {app.log_level} {app.log_format}",
    ]
