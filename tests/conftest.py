"""Shared fixtures: a migrated database per test, on SQLite by default or on
PostgreSQL when TEST_DATABASE_URL points at one (CI runs the suite both ways)."""

from __future__ import annotations

import asyncio
import os
import shutil
import uuid
from collections.abc import AsyncIterator, Iterator
from pathlib import Path
from typing import Any

import pytest
from sqlalchemy import text
from sqlalchemy.engine import make_url

import bot  # noqa: F401  -- first: aiogram is imported as the bot imports it (lazy models)
from core.config import DatabaseSettings, LimitSettings, LLMSettings, Settings
from core.db.engine import Database, null_pool_engine
from core.db.migrate import upgrade_head
from core.db.models import Base
from core.llm.client import LLMClient
from core.services import Services
from tests.fakes.llm_server import FakeLLM, Reply

PG_ADMIN_DB = "test"


def _test_url() -> str | None:
    return os.environ.get("TEST_DATABASE_URL") or None


def _is_pg(url: str | None) -> bool:
    return bool(url) and str(url).startswith("postgresql")


async def _pg_admin(url: str, sql: str) -> None:
    admin = make_url(url).set(database=PG_ADMIN_DB)
    engine = null_pool_engine(admin.render_as_string(hide_password=False))
    async with engine.connect() as conn:
        await conn.execution_options(isolation_level="AUTOCOMMIT")
        await conn.execute(text(sql))
    await engine.dispose()


@pytest.fixture(scope="session")
def database_url(tmp_path_factory: pytest.TempPathFactory) -> Iterator[str]:
    """A migrated database for the session: a template SQLite file, or a fresh
    PostgreSQL database created for this run and dropped after it."""
    base = _test_url()
    if _is_pg(base):
        assert base is not None
        name = f"oneai_test_{uuid.uuid4().hex[:10]}"
        asyncio.run(_pg_admin(base, f'CREATE DATABASE "{name}"'))
        url = make_url(base).set(database=name).render_as_string(hide_password=False)
        upgrade_head(url)
        yield url
        asyncio.run(_pg_admin(base, f'DROP DATABASE IF EXISTS "{name}" WITH (FORCE)'))
    else:
        path = tmp_path_factory.mktemp("db") / "template.db"
        url = f"sqlite+aiosqlite:///{path}"
        upgrade_head(url)
        yield url


@pytest.fixture
def is_postgres(database_url: str) -> bool:
    return _is_pg(database_url)


@pytest.fixture
async def db(database_url: str, tmp_path: Path) -> AsyncIterator[Database]:
    """An empty, migrated database for one test."""
    if _is_pg(database_url):
        database = Database(database_url, pool_size=20)
        tables = ", ".join(t.name for t in Base.metadata.sorted_tables)
        async with database.engine.begin() as conn:
            await conn.execute(text(f"TRUNCATE {tables} RESTART IDENTITY CASCADE"))
        # The alembic bookkeeping table is not in the metadata and stays.
    else:
        template = Path(make_url(database_url).database or "")
        target = tmp_path / "test.db"
        shutil.copyfile(template, target)
        database = Database(f"sqlite+aiosqlite:///{target}", pool_size=20)
    try:
        yield database
    finally:
        await database.dispose()


@pytest.fixture
def redis_url() -> str | None:
    return os.environ.get("TEST_REDIS_URL") or None


@pytest.fixture
async def fake_llm() -> AsyncIterator[FakeLLM]:
    """An OpenAI-compatible server on 127.0.0.1 that answers instantly by default."""
    async with FakeLLM(default=Reply(text=None)) as server:
        yield server


def make_settings(database_url: str, llm_url: str, **limits: Any) -> Settings:
    return Settings(
        db=DatabaseSettings(database_url=database_url),
        llm=LLMSettings(base_url=llm_url, catalog_refresh_hours=0),
        limits=LimitSettings(**limits),
    )


@pytest.fixture
async def services(db: Database, fake_llm: FakeLLM) -> AsyncIterator[Services]:
    """The real core services on the test database, talking HTTP to the fake LLM."""
    settings = make_settings(db.url, fake_llm.base_url)
    llm = LLMClient(
        fake_llm.base_url, "test-key", max_retries=0, first_token_timeout=5, idle_timeout=5
    )
    built = Services.build(settings, llm=llm, db=db)
    try:
        yield built
    finally:
        await llm.aclose()
