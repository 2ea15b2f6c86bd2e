"""Count the SQL statements an operation sends."""

from __future__ import annotations

from collections.abc import Iterator
from contextlib import contextmanager
from typing import Any

from sqlalchemy import event

from core.db.engine import Database


class QueryLog:
    def __init__(self) -> None:
        self.statements: list[str] = []

    @property
    def count(self) -> int:
        # BEGIN/COMMIT emitted by the driver are not queries.
        return len(
            [s for s in self.statements if not s.strip().upper().startswith(("BEGIN", "PRAGMA"))]
        )


@contextmanager
def count_queries(db: Database) -> Iterator[QueryLog]:
    log = QueryLog()

    def _before(_conn: Any, _cursor: Any, statement: str, *_args: Any) -> None:
        log.statements.append(statement)

    event.listen(db.engine.sync_engine, "before_cursor_execute", _before)
    try:
        yield log
    finally:
        event.remove(db.engine.sync_engine, "before_cursor_execute", _before)


@contextmanager
def write_transactions(db: Database) -> Iterator[list[int]]:
    """One entry per write transaction (`Database.write()`) begun in the block."""
    begun: list[int] = []

    def on_begin(conn: Any) -> None:
        if conn.get_execution_options().get("oneai_write"):
            begun.append(1)

    event.listen(db.engine.sync_engine, "begin", on_begin)
    try:
        yield begun
    finally:
        event.remove(db.engine.sync_engine, "begin", on_begin)
