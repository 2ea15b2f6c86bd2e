"""INSERT ... ON CONFLICT DO NOTHING for whichever dialect the session speaks."""

from __future__ import annotations

from collections.abc import Sequence
from typing import Any

from sqlalchemy import Table
from sqlalchemy.dialects import postgresql, sqlite
from sqlalchemy.ext.asyncio import AsyncSession


async def insert_ignore(
    session: AsyncSession,
    table: Table,
    rows: Sequence[dict[str, Any]],
    conflict: Sequence[str],
) -> None:
    """Insert rows, silently skipping those that collide on the `conflict` columns."""
    if not rows:
        return
    dialect = session.bind.dialect.name if session.bind is not None else "sqlite"
    if dialect == "postgresql":
        pg_stmt = postgresql.insert(table).values(list(rows))
        await session.execute(pg_stmt.on_conflict_do_nothing(index_elements=list(conflict)))
    else:
        lite_stmt = sqlite.insert(table).values(list(rows))
        await session.execute(lite_stmt.on_conflict_do_nothing(index_elements=list(conflict)))
