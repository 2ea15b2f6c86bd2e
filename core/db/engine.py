"""Engine and sessions for SQLite (embedded default) and PostgreSQL.

Two kinds of transaction: `read()` and `write()`. On SQLite a write transaction
starts with BEGIN IMMEDIATE, so it takes the single writer lock up front and waits
for it under the busy timeout, instead of failing with "database is locked" when a
deferred transaction tries to upgrade from reading to writing. SQLite statements run
on the event loop's thread (core/db/inline_sqlite.py).
"""

from __future__ import annotations

import asyncio
from collections.abc import AsyncIterator
from contextlib import asynccontextmanager
from pathlib import Path
from typing import Any

from sqlalchemy import event
from sqlalchemy.engine import make_url
from sqlalchemy.ext.asyncio import (
    AsyncEngine,
    AsyncSession,
    async_sessionmaker,
    create_async_engine,
)
from sqlalchemy.pool import NullPool

from core.db import inline_sqlite


class Database:
    def __init__(
        self, url: str, *, echo: bool = False, busy_timeout: float = 30.0, pool_size: int = 10
    ) -> None:
        self.url = url
        parsed = make_url(url)
        self.is_sqlite = parsed.get_backend_name() == "sqlite"
        kwargs: dict[str, Any] = {"echo": echo}
        if self.is_sqlite:
            database = parsed.database or ":memory:"
            if database != ":memory:":
                Path(database).parent.mkdir(parents=True, exist_ok=True)
            # Statements run on the loop's thread, not on aiosqlite's workers.
            kwargs["async_creator"] = inline_sqlite.connector(database, busy_timeout)
            kwargs["pool_size"] = pool_size
            kwargs["max_overflow"] = 20
        else:
            kwargs["pool_size"] = pool_size
            kwargs["max_overflow"] = 20
            kwargs["pool_pre_ping"] = True
        self.engine: AsyncEngine = create_async_engine(url, **kwargs)
        if self.is_sqlite:
            _configure_sqlite(self.engine)
        self._write_engine = self.engine.execution_options(oneai_write=True)
        self._reader = async_sessionmaker(self.engine, expire_on_commit=False)
        self._writer = async_sessionmaker(self._write_engine, expire_on_commit=False)
        # SQLite has one writer. Queueing this process's writers here, instead of
        # letting them all BEGIN IMMEDIATE, spares them the busy retries and their
        # sleeps (1, 2, 4 ... ms); the busy timeout still covers other processes.
        self._write_lock = asyncio.Lock() if self.is_sqlite else None

    @asynccontextmanager
    async def read(self) -> AsyncIterator[AsyncSession]:
        """A session for queries. Commits nothing."""
        if not self.is_sqlite:
            async with self._reader() as session:
                yield session
            return
        session = self._reader()
        try:
            yield session
        finally:
            await _close_inline(session)

    @asynccontextmanager
    async def write(self) -> AsyncIterator[AsyncSession]:
        """A transaction that commits on success and rolls back on error."""
        if self._write_lock is None:
            async with self._writer() as session, session.begin():
                yield session
            return
        async with self._write_lock:
            session = self._writer()
            try:
                async with session.begin():
                    yield session
            finally:
                await _close_inline(session)

    async def dispose(self) -> None:
        await self.engine.dispose()


async def _close_inline(session: AsyncSession) -> None:
    """Close a session on inline SQLite. `AsyncSession.__aexit__` closes in a task
    of its own under a shield, so that a cancellation cannot cut the close short
    while it waits on the network; an inline connection never waits (its rollback
    and pool return run where they are called), so the close completes as it is."""
    await session.close()


def _configure_sqlite(engine: AsyncEngine) -> None:
    sync_engine = engine.sync_engine

    @event.listens_for(sync_engine, "connect")
    def _on_connect(dbapi_connection: Any, _record: Any) -> None:
        # Take over transaction control from the driver so BEGIN is ours to emit.
        dbapi_connection.isolation_level = None
        cursor = dbapi_connection.cursor()
        cursor.execute("PRAGMA journal_mode=WAL")
        cursor.execute("PRAGMA synchronous=NORMAL")
        cursor.execute("PRAGMA foreign_keys=ON")
        cursor.close()

    @event.listens_for(sync_engine, "begin")
    def _on_begin(conn: Any) -> None:
        begin = "BEGIN IMMEDIATE" if conn.get_execution_options().get("oneai_write") else "BEGIN"
        # Straight to SQLite: a statement through the engine costs a hundred times
        # what BEGIN does. Only a lock held by another process needs the patient way.
        if not inline_sqlite.begin_now(conn.connection.driver_connection, begin):
            conn.exec_driver_sql(begin)


def null_pool_engine(url: str) -> AsyncEngine:
    """An engine without pooling, for one-off tools (migrations)."""
    return create_async_engine(url, poolclass=NullPool)
