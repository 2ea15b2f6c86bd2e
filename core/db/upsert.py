"""INSERT ... ON CONFLICT for whichever dialect the session speaks."""

from __future__ import annotations

import functools
from collections.abc import Sequence
from typing import Any

from sqlalchemy import Table
from sqlalchemy.dialects import postgresql, sqlite
from sqlalchemy.ext.asyncio import AsyncSession
from sqlalchemy.orm import DeclarativeBase

from core.db.direct import Direct


def _dialect(session: AsyncSession) -> str:
    return session.bind.dialect.name if session.bind is not None else "sqlite"


def _insert_for(dialect: str) -> Any:
    return postgresql.insert if dialect == "postgresql" else sqlite.insert


def _dialect_insert(session: AsyncSession) -> Any:
    return _insert_for(_dialect(session))


async def insert_ignore(
    session: AsyncSession,
    table: Table,
    rows: Sequence[dict[str, Any]],
    conflict: Sequence[str],
) -> None:
    """Insert rows, silently skipping those that collide on the `conflict` columns."""
    if not rows:
        return
    stmt = _dialect_insert(session)(table).values(list(rows))
    await session.execute(stmt.on_conflict_do_nothing(index_elements=list(conflict)))


@functools.cache
def _insert_new(dialect: str, table: Table, conflict: tuple[str, ...]) -> Direct:
    # Built once per shape and executed with parameters (see _upsert).
    stmt = _insert_for(dialect)(table).on_conflict_do_nothing(index_elements=list(conflict))
    return Direct(stmt.returning(table.c.id))


async def insert_new(
    session: AsyncSession,
    model: type[DeclarativeBase],
    values: dict[str, Any],
    conflict: Sequence[str],
) -> int | None:
    """Insert one row unless its `conflict` key is taken: its id, or None for a
    row that was there already (a concurrent twin waits, then finds it taken)."""
    table = model.__table__
    assert isinstance(table, Table)
    stmt = _insert_new(_dialect(session), table, tuple(conflict))
    rows = await stmt.rows(session, values)
    inserted: int | None = rows[0][0] if rows else None
    return inserted


@functools.cache
def _upsert(
    dialect: str, table: Table, conflict: tuple[str, ...], update: tuple[str, ...]
) -> Direct:
    # Built once per shape: constructing it cost more than running it.
    stmt = _insert_for(dialect)(table)
    return Direct(
        stmt.on_conflict_do_update(
            index_elements=list(conflict), set_={name: stmt.excluded[name] for name in update}
        )
    )


async def insert_or_update(
    session: AsyncSession,
    table: Table,
    rows: Sequence[dict[str, Any]],
    conflict: Sequence[str],
    update: Sequence[str],
) -> None:
    """Insert rows; one that collides on the `conflict` columns takes the new row's
    `update` columns instead. One statement where delete-then-insert takes two."""
    if not rows:
        return
    stmt = _upsert(_dialect(session), table, tuple(conflict), tuple(update))
    await stmt.many(session, rows)
