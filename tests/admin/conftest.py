"""Services with admins configured (Telegram 111, Discord 222), on the test database
and the fake LLM."""

from __future__ import annotations

from collections.abc import AsyncIterator, Awaitable, Callable
from pathlib import Path

import pytest

from core.accounts import PlatformProfile
from core.config import (
    DatabaseSettings,
    DiscordSettings,
    LimitSettings,
    LLMSettings,
    RedisSettings,
    Settings,
    TelegramSettings,
)
from core.db.engine import Database
from core.llm.client import LLMClient
from core.services import Services
from tests.fakes.llm_server import FakeLLM

TELEGRAM_ADMIN = 111
DISCORD_ADMIN = 222

Build = Callable[..., Awaitable[Services]]


def admin_settings(
    database_url: str, llm_url: str, cache_file: Path, redis_url: str | None = None
) -> Settings:
    return Settings(
        db=DatabaseSettings(database_url=database_url),
        # The catalog's two are known by their variable names only.
        llm=LLMSettings.model_validate(
            {
                "base_url": llm_url,
                "MODEL_CATALOG_REFRESH_HOURS": 0,
                "MODEL_CATALOG_CACHE_FILE": cache_file,
            }
        ),
        limits=LimitSettings(),
        telegram=TelegramSettings(admin_ids=[TELEGRAM_ADMIN]),
        discord=DiscordSettings(admin_ids=[DISCORD_ADMIN]),
        redis=RedisSettings(redis_url=redis_url),
    )


@pytest.fixture
async def build(db: Database, fake_llm: FakeLLM, tmp_path: Path) -> AsyncIterator[Build]:
    """Makes Services on the test database: one per process being simulated (they
    share the database, as processes do). Closed at the end."""
    made: list[tuple[Services, LLMClient]] = []

    async def make(*, redis_url: str | None = None, own_db: bool = False) -> Services:
        settings = admin_settings(db.url, fake_llm.base_url, tmp_path / "models.json", redis_url)
        llm = LLMClient(
            fake_llm.base_url, "test-key", max_retries=0, first_token_timeout=5, idle_timeout=5
        )
        database = Database(db.url, pool_size=5) if own_db else db
        services = Services.build(settings, llm=llm, db=database)
        made.append((services, llm))
        return services

    yield make
    for services, llm in made:
        await llm.aclose()
        if services.db is not db:
            await services.db.dispose()


@pytest.fixture
async def services(build: Build) -> Services:
    """The core services, with TELEGRAM_ADMIN_IDS=111 and DISCORD_ADMIN_IDS=222."""
    return await build()


async def person(services: Services, platform: str, account: int | str, **profile: str) -> int:
    """The user behind a platform account, created on first contact."""
    user = await services.accounts.upsert(PlatformProfile(platform, str(account), **profile))
    return user.id
