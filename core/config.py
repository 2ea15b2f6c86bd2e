"""Configuration: one pydantic-settings class per section, read from the environment and `.env`.

Every variable here is listed in `.env.example` and in the README's table.
"""

from __future__ import annotations

import re
from functools import cached_property
from pathlib import Path
from typing import Annotated, Any, Literal
from urllib.parse import urlsplit

from pydantic import (
    AliasChoices,
    Field,
    SecretStr,
    ValidationError,
    field_validator,
    model_validator,
)
from pydantic_settings import BaseSettings, NoDecode, SettingsConfigDict

ENV_FILE = ".env"


def _section(prefix: str = "") -> SettingsConfigDict:
    return SettingsConfigDict(
        env_prefix=prefix,
        env_file=ENV_FILE,
        env_file_encoding="utf-8",
        extra="ignore",
        case_sensitive=False,
        # `TELEGRAM_BOT_TOKEN=` in .env means "not set", not "an empty token".
        env_ignore_empty=True,
    )


def _split_ids(value: Any) -> Any:
    """`1,2, 3` -> [1, 2, 3]; lists are comma separated, not JSON."""
    if isinstance(value, str):
        return [part.strip() for part in value.split(",") if part.strip()]
    if isinstance(value, int):
        return [value]
    return value


IdList = Annotated[list[int], NoDecode]


def _check_database_url(url: str) -> None:
    """Parse it now, so a typo is a configuration error rather than a driver's traceback.
    The messages never repeat the URL: it may carry a password."""
    from sqlalchemy.engine import make_url
    from sqlalchemy.exc import ArgumentError

    expected = "expected postgresql+asyncpg://USER:PASSWORD@HOST:PORT/DATABASE"
    try:
        port = make_url(url).port
    except (ArgumentError, ValueError):
        raise ValueError(f"is not a valid URL ({expected})") from None
    if port is not None and not 0 < port < 65536:
        raise ValueError(f"port {port} is out of range ({expected})")


class DatabaseSettings(BaseSettings):
    model_config = _section()

    database_url: str = "sqlite+aiosqlite:///./oneai.db"
    database_echo: bool = False
    # SQLite allows one writer; waiting writers retry for this long (seconds, not ms).
    sqlite_busy_timeout: float = Field(default=30.0, gt=0)

    @field_validator("database_url")
    @classmethod
    def _known_driver(cls, value: str) -> str:
        url = value.strip()
        if url.startswith("postgres://"):
            url = "postgresql+asyncpg://" + url.removeprefix("postgres://")
        elif url.startswith("postgresql://"):
            url = "postgresql+asyncpg://" + url.removeprefix("postgresql://")
        elif url.startswith("sqlite:///"):
            url = "sqlite+aiosqlite:///" + url.removeprefix("sqlite:///")
        if not url.startswith(("sqlite+aiosqlite://", "postgresql+asyncpg://")):
            raise ValueError("must be a sqlite+aiosqlite:// or postgresql+asyncpg:// URL")
        _check_database_url(url)
        return url

    @property
    def is_sqlite(self) -> bool:
        return self.database_url.startswith("sqlite")


class RedisSettings(BaseSettings):
    model_config = _section()

    redis_url: str | None = None

    @field_validator("redis_url")
    @classmethod
    def _redis_scheme(cls, value: str | None) -> str | None:
        if value is None or not value.strip():
            return None
        if not value.startswith(("redis://", "rediss://", "unix://")):
            raise ValueError("must start with redis://, rediss:// or unix://")
        try:
            urlsplit(value.strip()).port  # noqa: B018 -- parsing is the check
        except ValueError:
            # Not the parser's words: they may quote the URL, password included.
            raise ValueError(
                "is not a valid Redis URL (expected redis://[:PASSWORD@]HOST[:PORT][/DB])"
            ) from None
        return value.strip()


class LLMSettings(BaseSettings):
    model_config = _section("LLM_")

    base_url: str = "https://openrouter.ai/api/v1"
    api_key: SecretStr | None = Field(
        default=None, validation_alias=AliasChoices("LLM_API_KEY", "OPENROUTER_API_KEY")
    )
    default_model: str = Field(
        default="openai/gpt-4o-mini", validation_alias=AliasChoices("DEFAULT_MODEL")
    )
    connect_timeout: float = Field(default=10.0, gt=0)
    first_token_timeout: float = Field(default=60.0, gt=0)
    idle_timeout: float = Field(default=60.0, gt=0)
    max_retries: int = Field(default=3, ge=0, le=10)
    # OpenRouter attribution headers (HTTP-Referer / X-Title).
    app_url: str = "https://github.com/oneai-bot/oneai"
    app_title: str = "OneAI"
    catalog_file: Path | None = Field(
        default=None, validation_alias=AliasChoices("MODEL_CATALOG_FILE")
    )
    catalog_cache_file: Path = Field(
        default=Path("./.oneai-models-cache.json"),
        validation_alias=AliasChoices("MODEL_CATALOG_CACHE_FILE"),
    )
    catalog_refresh_hours: float = Field(
        default=24.0, ge=0, validation_alias=AliasChoices("MODEL_CATALOG_REFRESH_HOURS")
    )
    # Chat modes (/mode): a JSON file that changes, adds to or replaces the shipped set.
    modes_file: Path | None = Field(default=None, validation_alias=AliasChoices("CHAT_MODES_FILE"))
    # Any other OpenAI-compatible server: the models come from its GET /models (or are
    # LLM_MODELS, then nothing is asked), small messages unless in LLM_LARGE_MODELS.
    models: Annotated[list[str], NoDecode] = Field(default_factory=list)
    large_models: Annotated[list[str], NoDecode] = Field(default_factory=list)
    # Such servers rarely say how long a context their models take.
    context_length: int = Field(default=8192, ge=512)

    _split = field_validator("models", "large_models", mode="before")(_split_ids)

    # Web search through OpenRouter's web plugin: `auto` offers it where the base URL
    # is OpenRouter; `on` also behind a gateway that forwards to OpenRouter.
    web_search: Literal["auto", "on", "off"] = Field(
        default="auto", validation_alias=AliasChoices("WEB_SEARCH")
    )

    @property
    def web_search_available(self) -> bool:
        return self.web_search == "on" or (self.web_search == "auto" and self.is_openrouter)

    @field_validator("base_url")
    @classmethod
    def _http_url(cls, value: str) -> str:
        if not value.startswith(("http://", "https://")):
            raise ValueError("must be an http:// or https:// URL")
        return value.rstrip("/")

    @property
    def is_openrouter(self) -> bool:
        """OpenRouter's API, which the shipped catalog is made for."""
        host = urlsplit(self.base_url).hostname or ""
        return host == "openrouter.ai" or host.endswith(".openrouter.ai")


# What BotFather issues: the bot's numeric id, a colon, then the secret part.
_BOT_TOKEN = re.compile(r"[0-9]+:[A-Za-z0-9_-]+")


class TelegramSettings(BaseSettings):
    model_config = _section("TELEGRAM_")

    bot_token: SecretStr | None = None
    api_url: str = "https://api.telegram.org"
    admin_ids: IdList = Field(default_factory=list)
    # Streaming: at most one edit per chat per interval, and a budget for all chats.
    edit_interval: float = Field(default=1.0, gt=0)
    global_edits_per_second: float = Field(default=25.0, gt=0)
    # edit: send a message and edit it; draft: sendMessageDraft in private chats,
    # then the final message.
    stream_mode: Literal["edit", "draft"] = "edit"
    # Webhook mode when set (the public HTTPS URL Telegram posts updates to).
    webhook_url: str | None = None
    webhook_secret: SecretStr | None = None
    webhook_path: str = "/telegram/webhook"

    _split = field_validator("admin_ids", mode="before")(_split_ids)

    @field_validator("bot_token")
    @classmethod
    def _token_shape(cls, value: SecretStr | None) -> SecretStr | None:
        # Checked here, not by aiogram when the bot is built: its error is a traceback,
        # and the message must never echo the token.
        if value is None:
            return None
        token = value.get_secret_value().strip()
        if _BOT_TOKEN.fullmatch(token) is None:
            raise ValueError(
                "is not a bot token: expected the bot's numeric id, a colon, then the "
                "secret part (letters, digits, _ and -), as BotFather gives it: "
                "123456789:AAE..."
            )
        return SecretStr(token)

    @model_validator(mode="after")
    def _webhook_needs_secret(self) -> TelegramSettings:
        # Without it anyone who finds the URL can post updates "from" any user.
        if self.webhook_url and self.webhook_secret is None:
            raise ValueError(
                "TELEGRAM_WEBHOOK_SECRET must be set when TELEGRAM_WEBHOOK_URL is "
                "(1-256 characters: A-Z, a-z, 0-9, _ and -)"
            )
        return self

    @field_validator("api_url", "webhook_url")
    @classmethod
    def _url(cls, value: str | None) -> str | None:
        if value is None:
            return None
        if not value.startswith(("http://", "https://")):
            raise ValueError("must be an http:// or https:// URL")
        return value.rstrip("/")


# A Discord bot token: base64 user id, timestamp and HMAC, dot-separated.
_DISCORD_TOKEN = re.compile(r"[A-Za-z0-9_-]{20,}\.[A-Za-z0-9_-]{4,}\.[A-Za-z0-9_-]{20,}")


class DiscordSettings(BaseSettings):
    model_config = _section("DISCORD_")

    bot_token: SecretStr | None = None
    admin_ids: IdList = Field(default_factory=list)
    # Slash commands are synced to these servers at start (instant, for development)
    # and globally otherwise (Discord may take up to an hour to show them).
    guild_ids: IdList = Field(default_factory=list)
    # Streaming: at most one edit per channel per interval, and a budget for all.
    edit_interval: float = Field(default=1.0, gt=0)
    global_edits_per_second: float = Field(default=40.0, gt=0)
    # The SKU whose entitlement gives the pro plan (Discord premium apps); unset: none.
    sku_pro: int | None = None
    # Sharding: how many shards the bot has in all (unset: the count Discord
    # recommends) and which of them this process runs (empty: all of them).
    shard_count: int | None = Field(default=None, ge=1)
    shard_ids: IdList = Field(default_factory=list)

    _split = field_validator("admin_ids", "guild_ids", "shard_ids", mode="before")(_split_ids)

    @model_validator(mode="after")
    def _shards_in_range(self) -> DiscordSettings:
        # Checked here: discord.py would only refuse them once the rest has started.
        if not self.shard_ids:
            return self
        count = self.shard_count
        if count is None:
            raise ValueError(
                "DISCORD_SHARD_COUNT must be set when DISCORD_SHARD_IDS is "
                "(the same total on every process)"
            )
        outside = sorted({i for i in self.shard_ids if not 0 <= i < count})
        if outside:
            raise ValueError(
                f"DISCORD_SHARD_IDS: {', '.join(map(str, outside))} not between 0 and "
                f"{count - 1} (DISCORD_SHARD_COUNT={count})"
            )
        repeated = sorted({i for i in self.shard_ids if self.shard_ids.count(i) > 1})
        if repeated:
            raise ValueError(f"DISCORD_SHARD_IDS: {', '.join(map(str, repeated))} given twice")
        self.shard_ids.sort()
        return self

    @field_validator("bot_token")
    @classmethod
    def _token_shape(cls, value: SecretStr | None) -> SecretStr | None:
        # Checked here: discord.py would only fail at login, after the rest started.
        if value is None:
            return None
        token = value.get_secret_value().strip()
        if _DISCORD_TOKEN.fullmatch(token) is None:
            raise ValueError(
                "is not a bot token: expected three dot-separated parts of letters, "
                "digits, _ and -, as the Developer Portal's Bot page shows it (Reset Token)"
            )
        return SecretStr(token)


class HttpSettings(BaseSettings):
    model_config = _section("HTTP_")

    host: str = "127.0.0.1"
    port: int = Field(default=8080, ge=0, le=65535)
    # A client must send a request's complete headers within this many seconds of
    # connecting (or of its first byte after an idle keep-alive pause).
    header_timeout: float = Field(default=10.0, gt=0)
    # ...and the body within this many seconds after the headers.
    body_timeout: float = Field(default=30.0, gt=0)
    # An idle keep-alive connection is closed after this many seconds.
    keepalive_timeout: float = Field(default=75.0, gt=0)
    # Open connections at most; never more than a quarter of the process's file limit.
    max_connections: int = Field(default=256, ge=1)


class LimitSettings(BaseSettings):
    """Bounds on what one user can make the service do."""

    model_config = _section("LIMIT_")

    max_input_chars: int = Field(default=16_000, gt=0)
    max_messages_per_conversation: int = Field(default=1_000, gt=0)
    max_revisions_per_message: int = Field(default=50, gt=0)
    max_concurrent_generations: int = Field(default=2, gt=0)
    # How often a streaming answer saves its text so far (a crash loses less).
    heartbeat_seconds: float = Field(default=15.0, gt=0)


class WorkerSettings(BaseSettings):
    """How a process proves it is alive, and how it stops."""

    model_config = _section("WORKER_")

    # Every process beats this often; one silent for `timeout_seconds` is gone and
    # its answers are interrupted by any other.
    heartbeat_seconds: float = Field(default=5.0, gt=0)
    timeout_seconds: float = Field(default=20.0, gt=0)
    # On SIGTERM/SIGINT running answers get this long to finish.
    shutdown_grace: float = Field(
        default=20.0, ge=0, validation_alias=AliasChoices("SHUTDOWN_GRACE")
    )

    @model_validator(mode="after")
    def _timeout_spans_beats(self) -> WorkerSettings:
        # One late beat must not make a live worker look gone.
        if self.timeout_seconds < 2 * self.heartbeat_seconds:
            raise ValueError(
                "WORKER_TIMEOUT_SECONDS must be at least twice WORKER_HEARTBEAT_SECONDS"
            )
        return self


def _split_strings(value: Any) -> Any:
    if isinstance(value, str):
        return [part.strip() for part in value.split(",") if part.strip()]
    return value


StrList = Annotated[list[str], NoDecode]

# YooKassa sends notifications only from these (https://yookassa.ru/developers/using-api/webhooks).
YOOKASSA_IPS = (
    "185.71.76.0/27",
    "185.71.77.0/27",
    "77.75.153.0/25",
    "77.75.156.11/32",
    "77.75.156.35/32",
    "77.75.154.128/25",
    "2a02:5180::/32",
)


class PaymentSettings(BaseSettings):
    """Plans, prices and what the scheduler does with them."""

    model_config = _section("PAYMENTS_")

    # JSON {"pro": {"xtr": 500, "rub": 99000, "inr": 84900}}: integer minor units.
    plans_file: Path | None = None
    # Telegram invoices through a payment provider (currency of the provider); Telegram
    # asks for Stars for digital goods, so this is opt-in.
    telegram_provider_token: SecretStr | None = Field(
        default=None, validation_alias=AliasChoices("TELEGRAM_PAYMENT_PROVIDER_TOKEN")
    )
    telegram_provider_enabled: bool = False
    telegram_provider_currency: str = "RUB"
    # Show YooKassa / Razorpay links in Telegram too (they always serve Discord and the web).
    links_in_telegram: bool = False
    # Who answers /paysupport.
    support_contact: str = "the bot's administrators"
    # Renewals that arrive this late still find the plan in place.
    expiry_grace_hours: float = Field(default=24.0, ge=0)
    remind_days: float = Field(default=3.0, ge=0)
    scheduler_enabled: bool = True


class YooKassaSettings(BaseSettings):
    model_config = _section("YOOKASSA_")

    shop_id: str | None = None
    secret_key: SecretStr | None = None
    api_url: str = "https://api.yookassa.ru/v3"
    return_url: str = "https://t.me"
    # Fiscal receipts (54-FZ): sent with every payment when on.
    receipts: bool = False
    vat_code: int = Field(default=1, ge=1, le=12)
    receipt_email: str | None = None
    # Save the card at the first payment and renew the plan with it before its end
    # (the person cancels with /cancel_subscription).
    autorenew: bool = False
    allowed_ips: StrList = Field(default_factory=lambda: list(YOOKASSA_IPS))
    # X-Forwarded-For is believed only from these addresses (a reverse proxy).
    trusted_proxies: StrList = Field(default_factory=list)
    request_timeout: float = Field(default=15.0, gt=0)

    _split = field_validator("allowed_ips", "trusted_proxies", mode="before")(_split_strings)

    @model_validator(mode="after")
    def _receipt_needs_customer(self) -> YooKassaSettings:
        # YooKassa refuses a receipt without the buyer's email or phone.
        if self.receipts and not self.receipt_email:
            raise ValueError("YOOKASSA_RECEIPT_EMAIL must be set when YOOKASSA_RECEIPTS is on")
        return self

    @property
    def configured(self) -> bool:
        return bool(self.shop_id) and self.secret_key is not None


class RazorpaySettings(BaseSettings):
    model_config = _section("RAZORPAY_")

    key_id: str | None = None
    key_secret: SecretStr | None = None
    webhook_secret: SecretStr | None = None
    # tier:plan_id pairs, comma separated: `pro:plan_Nx1...`
    plan_ids: StrList = Field(default_factory=list)
    api_url: str = "https://api.razorpay.com"
    total_count: int = Field(default=120, ge=1)  # billing cycles a subscription runs
    request_timeout: float = Field(default=15.0, gt=0)

    _split = field_validator("plan_ids", mode="before")(_split_strings)

    @field_validator("plan_ids")
    @classmethod
    def _pairs(cls, value: list[str]) -> list[str]:
        for pair in value:
            tier, sep, plan = pair.partition(":")
            if not sep or not tier.strip() or not plan.strip():
                raise ValueError(f"expected tier:plan_id pairs, got {pair!r}")
        return value

    @property
    def plan_map(self) -> dict[str, str]:
        return {
            tier.strip(): plan.strip()
            for tier, _, plan in (pair.partition(":") for pair in self.plan_ids)
        }

    @property
    def configured(self) -> bool:
        return bool(self.key_id) and self.key_secret is not None


# -- private deployments (ACCESS_*) ----------------------------------------------------

# An allowlist entry: a platform account or a Telegram @username.
_ACCESS_ENTRY = re.compile(r"(telegram|discord):[0-9]{1,20}|@[A-Za-z0-9_]{1,32}")


class AccessSettings(BaseSettings):
    """Who may use the bot. `open`: everyone. `allowlist`: the admins and the
    people on the list. `invite`: those, and whoever used an admin's invite. The
    list here only seeds the one in the database, which admins edit with /admin."""

    model_config = _section("ACCESS_")

    mode: Literal["open", "allowlist", "invite"] = "open"
    allowlist: StrList = Field(default_factory=list)

    _split = field_validator("allowlist", mode="before")(_split_strings)

    @field_validator("mode", mode="before")
    @classmethod
    def _lower(cls, value: Any) -> Any:
        return value.strip().lower() if isinstance(value, str) else value

    @field_validator("allowlist")
    @classmethod
    def _entries(cls, values: list[str]) -> list[str]:
        entries = []
        for value in values:
            entry = value.strip()
            platform, sep, account = entry.partition(":")
            if sep and not entry.startswith("@"):
                entry = f"{platform.strip().lower()}:{account.strip()}"
            if _ACCESS_ENTRY.fullmatch(entry) is None:
                raise ValueError(
                    f"{value!r} is not an entry: expected telegram:ID, discord:ID or @username"
                )
            entries.append(entry.lower() if entry.startswith("@") else entry)
        return entries

    @property
    def private(self) -> bool:
        return self.mode != "open"


class VoiceSettings(BaseSettings):
    """Voice notes: speech to text through an OpenAI-compatible /audio/transcriptions.
    Unset URL and key fall back to the LLM's, except on OpenRouter (no such endpoint).

    `voice_mode` model: a note goes to the conversation's model as audio when that
    model listens (`ModelInfo.audio`); otherwise it is transcribed as in transcribe
    mode, where a transcription server is configured."""

    model_config = _section()

    voice_mode: Literal["transcribe", "model"] = "transcribe"
    stt_base_url: str | None = None
    stt_api_key: SecretStr | None = None
    stt_model: str = "whisper-1"
    stt_timeout: float = Field(default=60.0, gt=0)

    @field_validator("stt_base_url")
    @classmethod
    def _stt_url(cls, value: str | None) -> str | None:
        if value is None:
            return None
        if not value.startswith(("http://", "https://")):
            raise ValueError("must be an http:// or https:// URL")
        return value.rstrip("/")

    def endpoint(self, llm: LLMSettings) -> tuple[str, str | None] | None:
        """(base URL, API key) of the transcription server; None when voice is off."""
        if self.stt_base_url is not None:
            key = self.stt_api_key or (llm.api_key if self.stt_base_url == llm.base_url else None)
            return self.stt_base_url, key.get_secret_value() if key is not None else None
        if llm.is_openrouter:
            return None
        key = self.stt_api_key or llm.api_key
        return llm.base_url, key.get_secret_value() if key is not None else None


class AppSettings(BaseSettings):
    model_config = _section()

    environment: Literal["development", "production", "test"] = "development"
    log_level: Literal["DEBUG", "INFO", "WARNING", "ERROR"] = "INFO"
    # json: one JSON object per line (for a log collector); text: for a terminal.
    log_format: Literal["text", "json"] = "text"


class DocumentSettings(BaseSettings):
    """Documents people send (PDF, DOCX, text): how much is read, and for how long."""

    model_config = _section("DOCUMENT_")

    # Telegram's getFile serves at most 20 MB; larger files are refused unread.
    max_bytes: int = Field(default=20 * 1024 * 1024, gt=0, le=20 * 1024 * 1024)
    max_pages: int = Field(default=2_000, gt=0)
    max_chars: int = Field(default=3_000_000, gt=0)
    # Seconds one extraction may take (checked between pages).
    extract_timeout: float = Field(default=60.0, gt=0)
    # Extractions running at once in one process (each holds a thread).
    concurrency: int = Field(default=2, gt=0)


class Settings:
    """All sections together. Each section validates on first access."""

    def __init__(self, **overrides: BaseSettings) -> None:
        self._overrides = overrides

    def _get(self, name: str, cls: type[BaseSettings]) -> Any:
        return self._overrides.get(name) or cls()

    @cached_property
    def app(self) -> AppSettings:
        return self._get("app", AppSettings)  # type: ignore[no-any-return]

    @cached_property
    def db(self) -> DatabaseSettings:
        return self._get("db", DatabaseSettings)  # type: ignore[no-any-return]

    @cached_property
    def redis(self) -> RedisSettings:
        return self._get("redis", RedisSettings)  # type: ignore[no-any-return]

    @cached_property
    def llm(self) -> LLMSettings:
        return self._get("llm", LLMSettings)  # type: ignore[no-any-return]

    @cached_property
    def telegram(self) -> TelegramSettings:
        return self._get("telegram", TelegramSettings)  # type: ignore[no-any-return]

    @cached_property
    def discord(self) -> DiscordSettings:
        return self._get("discord", DiscordSettings)  # type: ignore[no-any-return]

    @cached_property
    def http(self) -> HttpSettings:
        return self._get("http", HttpSettings)  # type: ignore[no-any-return]

    @cached_property
    def limits(self) -> LimitSettings:
        return self._get("limits", LimitSettings)  # type: ignore[no-any-return]

    @cached_property
    def workers(self) -> WorkerSettings:
        return self._get("workers", WorkerSettings)  # type: ignore[no-any-return]

    @cached_property
    def payments(self) -> PaymentSettings:
        return self._get("payments", PaymentSettings)  # type: ignore[no-any-return]

    @cached_property
    def yookassa(self) -> YooKassaSettings:
        return self._get("yookassa", YooKassaSettings)  # type: ignore[no-any-return]

    @cached_property
    def razorpay(self) -> RazorpaySettings:
        return self._get("razorpay", RazorpaySettings)  # type: ignore[no-any-return]

    @cached_property
    def access(self) -> AccessSettings:
        return self._get("access", AccessSettings)  # type: ignore[no-any-return]

    @cached_property
    def voice(self) -> VoiceSettings:
        return self._get("voice", VoiceSettings)  # type: ignore[no-any-return]

    @cached_property
    def documents(self) -> DocumentSettings:
        return self._get("documents", DocumentSettings)  # type: ignore[no-any-return]


SECTIONS: dict[str, type[BaseSettings]] = {
    "app": AppSettings,
    "db": DatabaseSettings,
    "redis": RedisSettings,
    "llm": LLMSettings,
    "telegram": TelegramSettings,
    "discord": DiscordSettings,
    "http": HttpSettings,
    "limits": LimitSettings,
    "workers": WorkerSettings,
    "payments": PaymentSettings,
    "yookassa": YooKassaSettings,
    "razorpay": RazorpaySettings,
    "access": AccessSettings,
    "voice": VoiceSettings,
    "documents": DocumentSettings,
}


def env_names(cls: type[BaseSettings]) -> list[str]:
    """Every environment variable a section reads (aliases included)."""
    prefix = str(cls.model_config.get("env_prefix") or "")
    names = []
    for field, info in cls.model_fields.items():
        alias = info.validation_alias
        if isinstance(alias, AliasChoices):
            names += [str(choice).upper() for choice in alias.choices]
        else:
            names.append((prefix + field).upper())
    return names


class ConfigError(Exception):
    """A configuration value is missing or malformed; the message names the variable."""


def describe_validation_error(error: ValidationError, cls: type[BaseSettings]) -> str:
    """One clear line per bad variable, naming it as it is spelled in the environment."""
    prefix = str(cls.model_config.get("env_prefix") or "")
    lines = []
    for item in error.errors():
        message = str(item["msg"]).removeprefix("Value error, ")
        if not item["loc"]:  # a check across fields names its variables itself
            lines.append(message)
            continue
        field = str(item["loc"][0])
        info = cls.model_fields.get(field)
        env_name = (prefix + field).upper()
        alias = info.validation_alias if info is not None else None
        if isinstance(alias, AliasChoices):
            env_name = str(alias.choices[0]).upper()
        elif isinstance(alias, str):
            env_name = alias.upper()
        lines.append(f"{env_name}: {message}")
    return "; ".join(lines)


def load_settings() -> Settings:
    """Build and validate all sections, turning validation errors into a ConfigError."""
    settings = Settings()
    for name, cls in SECTIONS.items():
        try:
            getattr(settings, name)
        except ValidationError as exc:
            raise ConfigError(
                f"configuration error: {describe_validation_error(exc, cls)}"
            ) from None
    return settings
