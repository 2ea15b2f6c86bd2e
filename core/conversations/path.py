"""A conversation's active path as one JSON value, read with the user's locked row.

Joined to the lock query as rows, every path row would carry the user's and the
conversation's columns again and be loaded as an ORM object: at twenty messages that
cost more than the rest of the plan. As one aggregate in the same statement the
database builds the list and `json.loads` (the JSON type's result processor) reads
it, so a message at the end of a conversation stays one statement for the lock, the
count of streaming answers, the conversation and its path.
"""

from __future__ import annotations

import json
import uuid
from collections.abc import Sequence
from datetime import UTC, datetime
from operator import itemgetter
from typing import Any, NamedTuple, Protocol

from sqlalchemy import JSON, ColumnElement, ScalarSelect, select
from sqlalchemy.ext.compiler import compiles
from sqlalchemy.sql.compiler import SQLCompiler
from sqlalchemy.sql.functions import FunctionElement

from core.db.models import ChatMessage, Conversation


class PathEntry(Protocol):
    """What planning a turn reads of a message on the path: the idle check, the
    parent, the history and its documents. Both `ChatMessage` and `PathMessage`."""

    @property
    def id(self) -> uuid.UUID: ...
    @property
    def role(self) -> str: ...
    @property
    def content(self) -> str: ...
    @property
    def sequence_number(self) -> int: ...
    @property
    def status(self) -> str: ...
    @property
    def worker_id(self) -> str | None: ...
    @property
    def heartbeat_at(self) -> datetime | None: ...
    @property
    def meta(self) -> dict[str, Any]: ...
    @property
    def attachment_id(self) -> uuid.UUID | None: ...


class PathMessage(NamedTuple):
    """A path message as the aggregate gives it (read only: never written back)."""

    id: uuid.UUID
    role: str
    content: str
    sequence_number: int
    status: str
    worker_id: str | None
    heartbeat_at: datetime | None
    meta: dict[str, Any]
    attachment_id: uuid.UUID | None


# The aggregate's columns, in PathMessage's order.
_COLUMNS = (
    ChatMessage.id,
    ChatMessage.role,
    ChatMessage.content,
    ChatMessage.sequence_number,
    ChatMessage.status,
    ChatMessage.worker_id,
    ChatMessage.heartbeat_at,
    ChatMessage.meta,
    ChatMessage.attachment_id,
)


class _rows_as_json(FunctionElement[Any]):
    """One JSON array holding a JSON array of the given columns per row."""

    type = JSON()
    inherit_cache = True
    name = "rows_as_json"


@compiles(_rows_as_json)
def _sqlite_rows(element: _rows_as_json, compiler: SQLCompiler, **kw: Any) -> str:
    columns = [compiler.process(column, **kw) for column in element.clauses]
    # A JSON column is text in SQLite and comes as a string (`read_path` parses it
    # as the column's own type would, NaN and all, where json() would refuse it).
    return f"json_group_array(json_array({', '.join(columns)}))"


@compiles(_rows_as_json, "postgresql")
def _postgresql_rows(element: _rows_as_json, compiler: SQLCompiler, **kw: Any) -> str:
    columns = [compiler.process(column, **kw) for column in element.clauses]
    return f"json_agg(json_build_array({', '.join(columns)}))"


def active_path_json() -> ScalarSelect[Any]:
    """The current conversation's active path, for a query that selects
    `Conversation`: a JSON list (None or empty without a conversation)."""
    found: ColumnElement[Any] = _rows_as_json(*_COLUMNS)
    return (
        select(found)
        .where(ChatMessage.conversation_id == Conversation.id, ChatMessage.is_latest.is_(True))
        .correlate(Conversation)
        .scalar_subquery()
    )


def _uuid(value: str | None) -> uuid.UUID | None:
    # SQLite stores the 32 hex digits, PostgreSQL's JSON has the dashed form.
    return uuid.UUID(value) if value is not None else None


def _utc(value: str | None) -> datetime | None:
    # SQLite's naive "YYYY-MM-DD HH:MM:SS.ffffff" (stored as UTC) or PostgreSQL's ISO
    # with its offset: the same aware UTC datetime `UTCDateTime` reads.
    if value is None:
        return None
    moment = datetime.fromisoformat(value)
    return moment.replace(tzinfo=UTC) if moment.tzinfo is None else moment.astimezone(UTC)


def _meta(value: Any) -> dict[str, Any]:
    if isinstance(value, str):  # SQLite: the column's text
        value = json.loads(value)
    return value if isinstance(value, dict) else {}


def read_path(value: Sequence[Sequence[Any]] | None) -> list[PathMessage]:
    """The aggregate's rows in path order (an aggregate keeps no order of its own)."""
    if not value:
        return []
    return [
        PathMessage(
            uuid.UUID(row[0]),
            row[1],
            row[2],
            row[3],
            row[4],
            row[5],
            _utc(row[6]),
            _meta(row[7]),
            _uuid(row[8]),
        )
        for row in sorted(value, key=itemgetter(3))
    ]
