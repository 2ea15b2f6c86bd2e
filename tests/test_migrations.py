"""The migrations and the models describe the same schema, on SQLite and PostgreSQL."""

from __future__ import annotations

from typing import Any

from alembic import command
from alembic.autogenerate import compare_metadata
from alembic.migration import MigrationContext
from sqlalchemy import inspect

import migrations
from core.db.engine import null_pool_engine
from core.db.migrate import alembic_config, current_revision, head_revision
from core.db.models import Base


async def _diff(url: str) -> list[Any]:
    engine = null_pool_engine(url)
    try:
        async with engine.connect() as conn:
            return await conn.run_sync(
                lambda sync: compare_metadata(
                    MigrationContext.configure(sync, opts={"compare_type": True}),
                    Base.metadata,
                )
            )
    finally:
        await engine.dispose()


async def test_autogenerate_finds_no_difference(database_url: str) -> None:
    assert await _diff(database_url) == []
    assert await current_revision(database_url) == head_revision()


def test_the_head_start_up_checks_is_alembics_head() -> None:
    assert head_revision() == migrations.HEAD, "a new migration moves migrations.HEAD"


async def test_partial_unique_index_on_the_active_path(database_url: str) -> None:
    engine = null_pool_engine(database_url)
    try:
        async with engine.connect() as conn:
            indexes = await conn.run_sync(lambda sync: inspect(sync).get_indexes("chat_messages"))
    finally:
        await engine.dispose()
    active = next(i for i in indexes if i["name"] == "uq_chat_messages_active_seq")
    assert active["unique"]
    assert active["column_names"] == ["conversation_id", "sequence_number"]
    where = active.get("dialect_options", {})
    assert any("is_latest" in str(value) for value in where.values())


def test_downgrade_and_upgrade_again(tmp_path: Any) -> None:
    url = f"sqlite+aiosqlite:///{tmp_path / 'roundtrip.db'}"
    config = alembic_config(url)
    command.upgrade(config, "head")
    command.downgrade(config, "base")
    command.upgrade(config, "head")
