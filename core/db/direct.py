"""The statements every answer runs, straight on inline SQLite's connection.

An answer's plan and settle write the same few statements each time: the quota
unit, the prompt and answer rows, the links, the answer's end. On SQLite each takes
a few microseconds, and SQLAlchemy's execution around it (cache key, execution
context, cursor result, the async adapter's greenlet hops) over a hundred. A
`Direct` statement is compiled by SQLAlchemy once per set of parameter names, with
the bind and result processing of its columns' types, and then runs as the
compiled SQL on the session's own sqlite3 connection, inside its transaction,
yielding to the loop and waiting out another process's lock as every inline
statement does. The engine's cursor events fire as for any statement (statement
counters and `RecentAccounts` see it); a database error comes as SQLAlchemy's.

A column left out of the parameters gets its Python-side default (or onupdate)
here, as SQLAlchemy would give it, when that is a constant or a function of no
arguments (what the models declare). A statement that needs anything else (a
parameter expanded at execution, a default of another kind) goes through the
session, as everything does on PostgreSQL, where the round trip, not the
bookkeeping, is the cost.
"""

from __future__ import annotations

from collections.abc import Callable, Iterable, Mapping, Sequence
from dataclasses import dataclass
from typing import Any, cast

from sqlalchemy.engine import Connection, Dialect
from sqlalchemy.exc import DBAPIError
from sqlalchemy.ext.asyncio import AsyncConnection, AsyncSession
from sqlalchemy.sql.compiler import SQLCompiler
from sqlalchemy.sql.expression import UpdateBase

from core.db.inline_sqlite import InlineConnection

Processor = Callable[[Any], Any] | None
# How one positional parameter gets its value from a call's parameters.
_Slot = Callable[[Mapping[str, Any]], Any]


@dataclass(frozen=True)
class _Plan:
    sql: str
    slots: tuple[_Slot, ...]  # one per positional parameter, in order
    results: tuple[Processor, ...]  # one per RETURNING column

    def args(self, params: Mapping[str, Any]) -> tuple[Any, ...]:
        return tuple([slot(params) for slot in self.slots])

    def row(self, raw: Sequence[Any]) -> tuple[Any, ...]:
        return tuple(
            value if process is None else process(value)
            for process, value in zip(self.results, raw, strict=True)
        )


def _plan(statement: UpdateBase, dialect: Dialect, keys: frozenset[str]) -> _Plan | None:
    """Where each parameter of the compiled statement comes from, decided once: the
    call's value of that name, a Python-side default, or a value the statement holds
    (processed here once). What `construct_params` and the bind processors would do
    at every call, without looking each name up again."""
    compiled = statement.compile(dialect=dialect, column_keys=sorted(keys))
    assert isinstance(compiled, SQLCompiler)
    if compiled.literal_execute_params or compiled.post_compile_params:
        return None
    if compiled.positiontup is None or compiled.escaped_bind_names:
        return None
    defaults: dict[str, Callable[[], Any]] = {}
    for column, default in (
        *((c, c.default) for c in compiled.insert_prefetch),
        *((c, c.onupdate) for c in compiled.update_prefetch),
    ):
        made = _made(default)
        if made is None:
            return None
        defaults[column.key] = made
    slots = []
    for name in compiled.positiontup:
        bind = compiled.binds[name]
        process = bind.type.dialect_impl(dialect).bind_processor(dialect)
        if bind.key in keys or name in keys:  # as construct_params looks them up
            slot = _from_call(bind.key if bind.key in keys else name, process)
        elif name in defaults:
            slot = _from_default(defaults[name], process)
        elif bind.callable is None and not bind.required:
            slot = _constant(bind.value if process is None else process(bind.value))
        else:  # a value to be found at each call some other way: the session does it
            return None
        slots.append(slot)
    results = tuple(
        column.type.dialect_impl(dialect).result_processor(dialect, None)
        for column in statement.exported_columns
    )
    return _Plan(compiled.string, tuple(slots), results)


def _from_call(key: str, process: Processor) -> _Slot:
    if process is None:
        return lambda params: params[key]
    return lambda params: process(params[key])


def _constant(value: Any) -> _Slot:
    return lambda _params: value


def _from_default(make: Callable[[], Any], process: Processor) -> _Slot:
    if process is None:
        return lambda _params: make()
    return lambda _params: process(make())


def _made(default: Any) -> Callable[[], Any] | None:
    """A column's Python-side default as a call, for a constant or a function of no
    arguments (what the models declare); None for anything else."""
    if getattr(default, "is_scalar", False):
        value = default.arg
        return lambda: value
    if getattr(default, "is_callable", False):
        function = default.arg  # SQLAlchemy's wrapper takes the execution context
        return lambda: function(None)
    return None


class Direct:
    """An INSERT or UPDATE (with or without RETURNING) built once at import."""

    def __init__(self, statement: UpdateBase) -> None:
        self.statement = statement
        self._plans: dict[tuple[str, frozenset[str]], _Plan | None] = {}

    async def rows(self, session: AsyncSession, params: Mapping[str, Any]) -> list[tuple[Any, ...]]:
        """Run once with `params`: the RETURNING rows, as tuples."""
        connection = await _connection(session)
        inline = _inline(connection)
        plan = self._plan_for(connection, params.keys()) if inline is not None else None
        if plan is None or inline is None:
            result = await session.execute(self.statement, dict(params))
            return [tuple(row) for row in result] if self.statement.exported_columns else []
        args = plan.args(params)
        return await _run(connection, inline, plan, args, many=False)

    async def many(self, session: AsyncSession, rows: Sequence[Mapping[str, Any]]) -> None:
        """Run once per row (the same parameter names in each), as executemany."""
        if not rows:
            return
        connection = await _connection(session)
        inline = _inline(connection)
        plan = self._plan_for(connection, rows[0].keys()) if inline is not None else None
        if plan is None or inline is None:
            await session.execute(self.statement, [dict(row) for row in rows])
            return
        await _run(connection, inline, plan, [plan.args(row) for row in rows], many=True)

    def _plan_for(self, connection: AsyncConnection, keys: Iterable[str]) -> _Plan | None:
        # Only inline SQLite asks for one: elsewhere the session runs the statement.
        dialect = connection.dialect
        shape = (dialect.name, frozenset(keys))
        if shape not in self._plans:
            self._plans[shape] = _plan(self.statement, dialect, shape[1])
        return self._plans[shape]


async def _connection(session: AsyncSession) -> AsyncConnection:
    """The session's connection, its pending objects written first: a row added
    before may be one this statement refers to. (The session's execute flushes only
    for ORM statements; this runs Core ones, on either path.) Asked of the session
    once per transaction: each ask is a hop through SQLAlchemy's greenlet."""
    if session.autoflush and (session.new or session.dirty or session.deleted):
        await session.flush()
    transaction = session.sync_session.get_transaction()
    known = session.info.get(_CONNECTION)
    if known is not None and transaction is not None and known[0] is transaction:
        return cast(AsyncConnection, known[1])
    connection = await session.connection()
    session.info[_CONNECTION] = (session.sync_session.get_transaction(), connection)
    return connection


_CONNECTION = "oneai_direct_connection"  # (transaction, its connection) in session.info


def _inline(connection: AsyncConnection) -> InlineConnection | None:
    """The session's inline SQLite connection; None on any other driver."""
    if connection.dialect.name != "sqlite":
        return None
    driver = _sync(connection).connection.driver_connection
    return driver if isinstance(driver, InlineConnection) else None


def _sync(connection: AsyncConnection) -> Connection:
    sync = connection.sync_connection
    assert sync is not None  # a session's connection is started
    return sync


async def _run(
    connection: AsyncConnection,
    inline: InlineConnection,
    plan: _Plan,
    args: Any,
    *,
    many: bool,
) -> list[tuple[Any, ...]]:
    sync = _sync(connection)
    cursor = inline.cursor()
    sync.dispatch.before_cursor_execute(sync, cursor, plan.sql, args, None, many)
    try:
        if many:
            await cursor.executemany(plan.sql, args)
            raw: Sequence[Any] = ()
        else:
            await cursor.execute(plan.sql, args)
            raw = await cursor.fetchall() if plan.results else ()
    except connection.dialect.loaded_dbapi.Error as error:
        raise DBAPIError.instance(
            plan.sql, args, error, connection.dialect.loaded_dbapi.Error
        ) from error
    finally:
        await cursor.close()
    sync.dispatch.after_cursor_execute(sync, cursor, plan.sql, args, None, many)
    return [plan.row(row) for row in raw]
