"""Checks `oneai` makes before it starts anything, so that a problem the operator can fix
(a file, a port, a token) stops start-up with one line naming the variable, not with a
traceback or after the bots are already online. Each raises ConfigError."""

from __future__ import annotations

import errno
import logging
import socket
from typing import Any
from urllib.parse import urlsplit, urlunsplit

from core.config import ConfigError, DiscordSettings, HttpSettings, LLMSettings, Settings
from core.llm.catalog import (
    ModelCatalog,
    is_openrouter_list,
    read_server_cache,
    write_server_cache,
)
from core.llm.errors import AuthenticationFailed, LLMError, LLMTimeout
from core.modes import ModeCatalog

log = logging.getLogger(__name__)

# Listing the models at start-up: a server that does not answer by then is down.
_LIST_TIMEOUT = 15.0


async def load_catalog(settings: Settings) -> ModelCatalog:
    """The model catalog, with a broken MODEL_CATALOG_FILE (or a DEFAULT_MODEL it does
    not list) named as such. Against a server other than OpenRouter without
    MODEL_CATALOG_FILE, the catalog is what the server's GET /models lists."""
    llm = settings.llm
    if not llm.is_openrouter and llm.catalog_file is None:
        catalog = await _server_catalog(llm)
        if catalog is not None:
            return catalog
    try:
        return ModelCatalog.load(
            llm.default_model, override_file=llm.catalog_file, cache_file=llm.catalog_cache_file
        )
    except ValueError as exc:
        # Without an override file only the default model can be wrong.
        variable = "MODEL_CATALOG_FILE" if llm.catalog_file is not None else "DEFAULT_MODEL"
        raise ConfigError(f"configuration error: {variable}: {exc}") from None


def check_llm_key(llm: LLMSettings) -> None:
    """OpenRouter answers nothing without a key: say so before starting, not at the
    first message. Other servers (Ollama, vLLM) often need none."""
    if llm.is_openrouter and llm.api_key is None:
        raise ConfigError(
            "LLM_API_KEY: not set; OpenRouter needs an API key (https://openrouter.ai/keys), "
            "or set LLM_BASE_URL to another OpenAI-compatible server"
        )


async def _server_catalog(llm: LLMSettings) -> ModelCatalog | None:
    """The server's own models; None when it lists OpenRouter's (the shipped catalog
    applies then)."""
    url = _without_password(llm.base_url)
    default = llm.default_model if "default_model" in llm.model_fields_set else None
    data: list[dict[str, Any]] | None
    if llm.models:
        # Named by the operator: nothing to ask (some gateways have no /models).
        data = [{"id": model_id} for model_id in llm.models]
        return _catalog(llm, data, default, url)
    try:
        data = await _list_models(llm)
    except LLMError as exc:
        data = read_server_cache(llm.catalog_cache_file, llm.base_url)
        if data is None or isinstance(exc, AuthenticationFailed):
            raise ConfigError(_listing_error(exc, llm, url)) from None
        log.warning("%s/models did not answer (%s); using the last known models", url, exc.code)
    else:
        if not is_openrouter_list(data):
            try:
                write_server_cache(llm.catalog_cache_file, llm.base_url, data)
            except OSError as exc:
                log.warning(
                    "could not write model catalog cache %s: %r", llm.catalog_cache_file, exc
                )
    if is_openrouter_list(data):
        return None
    return _catalog(llm, data, default, url)


def _catalog(
    llm: LLMSettings, data: list[dict[str, Any]], default: str | None, url: str
) -> ModelCatalog:
    options: dict[str, Any] = {"large": llm.large_models, "context_length": llm.context_length}
    try:
        catalog = ModelCatalog.from_server(data, None, **options)
    except ValueError:
        raise ConfigError(f"LLM_BASE_URL: {url}/models lists no models") from None
    if default is None:
        return catalog
    if default not in catalog:
        listed = ", ".join(model.id for model in catalog.all()[:5])
        more = ", …" if len(catalog) > 5 else ""
        offered = "LLM_MODELS" if llm.models else f"the models {url} offers"
        raise ConfigError(
            f"DEFAULT_MODEL: {default!r} is not among {offered} "
            f"({listed}{more}); set it to one of them, or leave it unset for the first"
        )
    return ModelCatalog.from_server(data, default, **options)


async def _list_models(llm: LLMSettings) -> list[dict[str, Any]]:
    from core.llm.client import LLMClient

    update = {"max_retries": 0, "first_token_timeout": min(llm.first_token_timeout, _LIST_TIMEOUT)}
    client = LLMClient.from_settings(llm.model_copy(update=update))
    # httpx logs each request at INFO: start-up says nothing unless it fails, in one line.
    httpx_log = logging.getLogger("httpx")
    level = httpx_log.level
    httpx_log.setLevel(max(logging.WARNING, level))
    try:
        return await client.list_models()
    finally:
        httpx_log.setLevel(level)
        await client.aclose()


def _listing_error(exc: LLMError, llm: LLMSettings, url: str) -> str:
    if isinstance(exc, AuthenticationFailed):
        if llm.api_key is None:
            return f"LLM_API_KEY: {url}/models asks for an API key; set LLM_API_KEY"
        return f"LLM_API_KEY: {url}/models refused the key (HTTP {exc.status})"
    if isinstance(exc, LLMTimeout):
        why = "no answer in time"
    elif exc.details.get("reason") == "connect_failed":
        why = "cannot connect"
    elif exc.details.get("reason") == "bad_models_response":
        why = "the answer is not an OpenAI-style model list"
    else:
        why = f"HTTP {exc.status}" if exc.status else exc.code
    return (
        f"LLM_BASE_URL: cannot list the models at {url}/models ({why}); start the server, "
        "or name its models in LLM_MODELS"
    )


def _without_password(url: str) -> str:
    parts = urlsplit(url)
    host = parts.hostname or ""
    netloc = f"{host}:{parts.port}" if parts.port else host
    return urlunsplit(parts._replace(netloc=netloc))


def check_plans(settings: Settings) -> None:
    from payments.plans import PlanCatalog, PlanConfigError

    try:
        PlanCatalog.load(settings.payments.plans_file)
    except PlanConfigError as exc:
        raise ConfigError(f"configuration error: PAYMENTS_PLANS_FILE: {exc}") from None


def load_modes(settings: Settings) -> ModeCatalog:
    """The chat modes, with a broken CHAT_MODES_FILE named as such."""
    try:
        return ModeCatalog.load(settings.llm.modes_file)
    except ValueError as exc:
        raise ConfigError(f"configuration error: CHAT_MODES_FILE: {exc}") from None


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
    check_llm_key(settings.llm)
    catalog = await load_catalog(settings)
    load_modes(settings)
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


def _spans(ids: list[int]) -> str:
    """[0, 1, 2, 5] -> "0-2, 5"."""
    spans: list[list[int]] = []
    for shard_id in sorted(ids):
        if spans and shard_id == spans[-1][1] + 1:
            spans[-1][1] = shard_id
        else:
            spans.append([shard_id, shard_id])
    return ", ".join(str(a) if a == b else f"{a}-{b}" for a, b in spans)


def _discord(discord: DiscordSettings) -> str:
    """Discord's entry: with a shard count, the shards this process runs, and "no
    DMs" when shard 0 (the only one Discord sends them on) is another process's."""
    count = discord.shard_count
    if count is None:
        return "discord"
    ids = discord.shard_ids or list(range(count))
    dms = "" if 0 in ids else ", no DMs"
    return f"discord (shards {_spans(ids)} of {count}{dms})"


def summary(settings: Settings) -> list[str]:
    """What `oneai run` serves, in a few lines for its start."""
    telegram = settings.telegram
    platforms = []
    if telegram.bot_token is not None:
        platforms.append(f"telegram ({'webhook' if telegram.webhook_url else 'polling'})")
    if settings.discord.bot_token is not None:
        platforms.append(_discord(settings.discord))
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
