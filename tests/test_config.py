"""Configuration: names, parsing, and that every variable is documented."""

from __future__ import annotations

from pathlib import Path

import pytest
from pydantic import ValidationError

from core.config import (
    SECTIONS,
    ConfigError,
    DatabaseSettings,
    LLMSettings,
    TelegramSettings,
    YooKassaSettings,
    env_names,
    load_settings,
)
from core.services import RedisUnavailable, check_redis
from payments.plans import PlanCatalog, PlanConfigError

ROOT = Path(__file__).resolve().parent.parent


def test_every_variable_is_in_env_example_and_readme() -> None:
    example = (ROOT / ".env.example").read_text()
    readme = (ROOT / "README.md").read_text()
    for cls in SECTIONS.values():
        for name in env_names(cls):
            assert name in example, f"{name} missing from .env.example"
            assert f"`{name}`" in readme, f"{name} missing from the README's table"


def test_defaults_are_the_embedded_setup(monkeypatch: pytest.MonkeyPatch, tmp_path: Path) -> None:
    monkeypatch.chdir(tmp_path)
    for name in ("DATABASE_URL", "REDIS_URL", "LLM_BASE_URL", "TELEGRAM_API_URL"):
        monkeypatch.delenv(name, raising=False)
    settings = load_settings()
    assert settings.db.database_url == "sqlite+aiosqlite:///./oneai.db"
    assert settings.redis.redis_url is None
    assert settings.llm.base_url == "https://openrouter.ai/api/v1"
    assert settings.telegram.api_url == "https://api.telegram.org"
    assert (settings.http.host, settings.http.port) == ("127.0.0.1", 8080)


def test_lists_are_comma_separated(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("TELEGRAM_ADMIN_IDS", "1, 2,3")
    assert TelegramSettings().admin_ids == [1, 2, 3]
    monkeypatch.setenv("TELEGRAM_ADMIN_IDS", "")
    assert TelegramSettings().admin_ids == []


def test_openrouter_key_alias_and_secret(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.delenv("LLM_API_KEY", raising=False)
    monkeypatch.setenv("OPENROUTER_API_KEY", "sk-or-secret")
    settings = LLMSettings()
    assert settings.api_key is not None
    assert settings.api_key.get_secret_value() == "sk-or-secret"
    assert "sk-or-secret" not in repr(settings)


def test_empty_token_means_unset(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("TELEGRAM_BOT_TOKEN", "")
    assert TelegramSettings().bot_token is None


@pytest.mark.parametrize(
    ("token", "secret"),
    [
        ("abc:AAsecretAfterLetters", "AAsecretAfterLetters"),
        ("4242:", "4242:"),
        ("4242:AA secret with spaces", "AA secret with spaces"),
        ("4242AAsecretWithoutColon", "AAsecretWithoutColon"),
    ],
    ids=["letters-before-colon", "no-secret", "spaces", "no-colon"],
)
def test_malformed_bot_token_is_named_not_shown(
    monkeypatch: pytest.MonkeyPatch, token: str, secret: str
) -> None:
    monkeypatch.setenv("TELEGRAM_BOT_TOKEN", token)
    with pytest.raises(ConfigError) as info:
        load_settings()
    message = str(info.value)
    assert message.startswith("configuration error: TELEGRAM_BOT_TOKEN: ")
    assert "numeric id, a colon, then the secret part" in message
    assert secret not in message


def test_malformed_discord_token_is_named_not_shown(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("DISCORD_BOT_TOKEN", "only-one-part-secretsecretsecret")
    with pytest.raises(ConfigError) as info:
        load_settings()
    message = str(info.value)
    assert message.startswith("configuration error: DISCORD_BOT_TOKEN: ")
    assert "secretsecretsecret" not in message


def test_bot_token_is_trimmed(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("TELEGRAM_BOT_TOKEN", " 123456789:AA_secret-part \n")
    token = TelegramSettings().bot_token
    assert token is not None and token.get_secret_value() == "123456789:AA_secret-part"


@pytest.mark.parametrize(
    ("variable", "value"),
    [
        ("DATABASE_URL", "postgresql+asyncpg://ann:pw-secret@db:five432/oneai"),
        ("DATABASE_URL", "postgresql+asyncpg://ann:pw-secret@db:70000/oneai"),
        ("REDIS_URL", "redis://:pw-secret@cache:sixthousand/0"),
        ("REDIS_URL", "redis://:pw-secret@[::1/0"),
    ],
)
def test_malformed_urls_are_named_without_their_password(
    monkeypatch: pytest.MonkeyPatch, variable: str, value: str
) -> None:
    monkeypatch.setenv(variable, value)
    with pytest.raises(ConfigError) as info:
        load_settings()
    assert str(info.value).startswith(f"configuration error: {variable}: ")
    assert "pw-secret" not in str(info.value)


def test_database_urls_are_normalized(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("DATABASE_URL", "postgres://u:p@db/oneai")
    assert DatabaseSettings().database_url == "postgresql+asyncpg://u:p@db/oneai"
    monkeypatch.setenv("DATABASE_URL", "sqlite:///data/x.db")
    assert DatabaseSettings().database_url == "sqlite+aiosqlite:///data/x.db"


def test_malformed_value_names_the_variable(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("LLM_BASE_URL", "openrouter.ai")
    with pytest.raises(ConfigError) as info:
        load_settings()
    assert str(info.value).startswith("configuration error: LLM_BASE_URL:")
    monkeypatch.delenv("LLM_BASE_URL")
    monkeypatch.setenv("DEFAULT_MODEL", "")
    monkeypatch.setenv("LIMIT_MAX_INPUT_CHARS", "-5")
    with pytest.raises(ConfigError) as info:
        load_settings()
    assert "LIMIT_MAX_INPUT_CHARS" in str(info.value)


async def test_unreachable_redis_fails_clearly() -> None:
    with pytest.raises(RedisUnavailable) as info:
        await check_redis("redis://127.0.0.1:1/0")
    assert info.value.user_message.startswith("REDIS_URL is set but Redis does not answer")


async def test_reachable_redis_passes(redis_url: str | None) -> None:
    if redis_url is None:
        pytest.skip("TEST_REDIS_URL not set (the PostgreSQL + Redis run sets it)")
    await check_redis(redis_url)


def test_webhook_mode_needs_a_secret(monkeypatch: pytest.MonkeyPatch) -> None:
    with pytest.raises(ValidationError, match="TELEGRAM_WEBHOOK_SECRET must be set"):
        TelegramSettings(webhook_url="https://bot.example.com")
    TelegramSettings(webhook_url="https://bot.example.com", webhook_secret="s3cret")
    monkeypatch.setenv("TELEGRAM_WEBHOOK_URL", "https://bot.example.com")
    monkeypatch.delenv("TELEGRAM_WEBHOOK_SECRET", raising=False)
    with pytest.raises(ConfigError) as info:
        load_settings()
    # A check across fields names its variables itself: no field prefix in front.
    assert str(info.value).startswith("configuration error: TELEGRAM_WEBHOOK_SECRET must be set")


def test_receipts_need_a_buyer_email() -> None:
    with pytest.raises(ValidationError, match="YOOKASSA_RECEIPT_EMAIL must be set"):
        YooKassaSettings(receipts=True)
    YooKassaSettings(receipts=True, receipt_email="buyer@example.com")


def test_plans_are_integers_and_enterprise_is_not_sold() -> None:
    catalog = PlanCatalog.load()
    pro = catalog.get("pro")
    assert pro is not None and pro.prices == {"XTR": 500, "RUB": 99000, "INR": 84900}
    for raw, message in [
        ({"enterprise": {"xtr": 1}}, "granted"),
        ({"free": {"xtr": 1}}, "not for sale"),
        ({"pro": {"xtr": 9.99}}, "positive integer"),
        ({"pro": {"xtr": True}}, "positive integer"),
        ({"pro": {"usd": 999}}, "unknown currency"),
        ({"gold": {"xtr": 1}}, "unknown tier"),
    ]:
        with pytest.raises(PlanConfigError, match=message):
            PlanCatalog.parse(raw)
