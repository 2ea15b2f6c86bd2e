"""Run alembic migrations from code (`oneai migrate`, `oneai run` on start-up).

A database already at `migrations.HEAD` is checked with one query and no alembic:
alembic and what it imports (mako, its DDL modules) take ~9 MB that a running
bot would keep for nothing."""

from __future__ import annotations

import asyncio
import contextlib
import sqlite3
from pathlib import Path
from typing import TYPE_CHECKING

from sqlalchemy import Connection, inspect, text

import migrations
from core.db.errors import DatabaseUnavailable, reaching, sqlite_directory_error, sqlite_path

if TYPE_CHECKING:
    from alembic.config import Config

MIGRATIONS_DIR = Path(migrations.__file__).parent


def alembic_config(url: str) -> Config:
    from alembic.config import Config

    cfg = Config()
    cfg.set_main_option("script_location", str(MIGRATIONS_DIR))
    cfg.set_main_option("sqlalchemy.url", url.replace("%", "%%"))
    return cfg


def upgrade_head(url: str) -> None:
    from alembic import command

    command.upgrade(alembic_config(url), "head")


def check_sqlite(url: str) -> None:
    """Create the SQLite file's directory, and open the file once with the plain driver.
    A file that cannot be opened, or is not a database, then fails here, before alembic:
    aiosqlite's thread outlives a failed connect and prints a traceback of its own."""
    path = sqlite_path(url)
    if path is None:
        return
    try:
        path.parent.mkdir(parents=True, exist_ok=True)
    except OSError as exc:
        raise sqlite_directory_error(path.parent, exc) from None
    with reaching(url), contextlib.closing(sqlite3.connect(path)) as conn:
        conn.execute("PRAGMA schema_version").fetchone()


async def upgrade_head_async(url: str) -> None:
    check_sqlite(url)
    await _upgrade_checked(url)


async def _upgrade_checked(url: str) -> None:
    """`upgrade_head` for a URL `check_sqlite` has passed."""
    with reaching(url):
        # alembic's env.py runs its own event loop; keep it off ours.
        await asyncio.to_thread(upgrade_head, url)


def _stored_revision(conn: Connection) -> str | None:
    """What alembic's `get_current_revision` reads, without alembic."""
    if not inspect(conn).has_table("alembic_version"):
        return None
    rows = conn.execute(text("SELECT version_num FROM alembic_version")).scalars().all()
    return ",".join(sorted(rows)) or None


async def current_revision(url: str) -> str | None:
    from core.db.engine import null_pool_engine

    engine = null_pool_engine(url)
    try:
        async with engine.connect() as conn:
            return await conn.run_sync(_stored_revision)
    finally:
        await engine.dispose()


def head_revision() -> str | None:
    from alembic.script import ScriptDirectory

    return ScriptDirectory.from_config(alembic_config("sqlite://")).get_current_head()


class DatabaseNotMigrated(DatabaseUnavailable):
    pass


async def prepare_database(url: str) -> None:
    """The embedded SQLite file migrates itself; a shared PostgreSQL is migrated on
    purpose (`oneai migrate`), once, not by every process that starts."""
    if url.startswith("sqlite"):
        check_sqlite(url)
        with reaching(url):
            current = await current_revision(url)
        if current != migrations.HEAD:
            await _upgrade_checked(url)
        return
    with reaching(url):
        current = await current_revision(url)
    head = migrations.HEAD
    if current != head:
        raise DatabaseNotMigrated(
            f"DATABASE_URL: the database is at revision {current or 'none'}, the code "
            f"needs {head}: run `oneai migrate` first"
        )
