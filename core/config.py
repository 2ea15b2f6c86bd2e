"""Configuration: one pydantic-settings class per section, read from the environment and `.env`.

Every variable here is listed in `.env.example` and in the README's table.
"""

from __future__ import annotations

from functools import cached_property
from pathlib import Path
from typing import Annotated, Any, Literal

from pydantic import AliasChoices, Field, SecretStr, ValidationError, field_validator
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

    @field_validator("base_url")
    @classmethod
    def _http_url(cls, value: str) -> str:
        if not value.startswith(("http://", "https://")):
            raise ValueError("must be an http:// or https:// URL")
        return value.rstrip("/")


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

    @field_validator("api_url", "webhook_url")
    @classmethod
    def _url(cls, value: str | None) -> str | None:
        if value is None:
            return None
        if not value.startswith(("http://", "https://")):
            raise ValueError("must be an http:// or https:// URL")
        return value.rstrip("/")


class DiscordSettings(BaseSettings):
    model_config = _section("DISCORD_")

    bot_token: SecretStr | None = None
    admin_ids: IdList = Field(default_factory=list)

    _split = field_validator("admin_ids", mode="before")(_split_ids)


class HttpSettings(BaseSettings):
    model_config = _section("HTTP_")

    host: str = "127.0.0.1"
    port: int = Field(default=8080, ge=0, le=65535)


class LimitSettings(BaseSettings):
    """Bounds on what one user can make the service do."""

    model_config = _section("LIMIT_")

    max_input_chars: int = Field(default=16_000, gt=0)
    max_messages_per_conversation: int = Field(default=1_000, gt=0)
    max_revisions_per_message: int = Field(default=50, gt=0)
    max_concurrent_generations: int = Field(default=2, gt=0)
    # A streaming row whose heartbeat is older than this belongs to a dead worker.
    stale_stream_seconds: float = Field(default=120.0, gt=0)
    heartbeat_seconds: float = Field(default=15.0, gt=0)


class AppSettings(BaseSettings):
    model_config = _section()

    environment: Literal["development", "production", "test"] = "development"
    log_level: Literal["DEBUG", "INFO", "WARNING", "ERROR"] = "INFO"


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


SECTIONS: dict[str, type[BaseSettings]] = {
    "app": AppSettings,
    "db": DatabaseSettings,
    "redis": RedisSettings,
    "llm": LLMSettings,
    "telegram": TelegramSettings,
    "discord": DiscordSettings,
    "http": HttpSettings,
    "limits": LimitSettings,
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
        field = str(item["loc"][0]) if item["loc"] else ""
        info = cls.model_fields.get(field)
        env_name = (prefix + field).upper()
        alias = info.validation_alias if info is not None else None
        if isinstance(alias, AliasChoices):
            env_name = str(alias.choices[0]).upper()
        elif isinstance(alias, str):
            env_name = alias.upper()
        message = str(item["msg"]).removeprefix("Value error, ")
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
