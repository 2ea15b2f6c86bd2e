"""SQLite on the event loop's own thread, behind SQLAlchemy's aiosqlite dialect.

A statement on a local WAL database takes a few microseconds. aiosqlite runs each
call (cursor, execute, fetch, close, commit) on a worker thread and wakes the loop
for the answer: ~90 µs per hop, several hops per statement, which made the hand-off
cost a hundred times the query. This connection runs the calls where they are
awaited instead, yielding to the loop once before each statement.

What must not block the loop is waiting for another process's write lock, so
SQLite's own busy handler (a sleeping loop) is off: a statement refused as busy is
retried after an asyncio sleep until `busy_timeout` has passed, then the error is
raised as SQLite would have raised it. Writers of this process never meet here;
`Database` queues them first.

The object offers what the dialect's adapter calls on an aiosqlite connection
(see sqlalchemy/dialects/sqlite/aiosqlite.py), nothing more.
"""

from __future__ import annotations

import asyncio
import sqlite3
from collections.abc import Callable, Iterable, Sequence
from types import TracebackType
from typing import Any, TypeVar

T = TypeVar("T")

# Only "another connection holds the lock" passes with time; SQLITE_LOCKED (a
# conflict inside one connection) would not, so it is raised at once.
_BUSY = sqlite3.SQLITE_BUSY
_FIRST_PAUSE = 0.001  # seconds; doubled per refusal up to _MAX_PAUSE
_MAX_PAUSE = 0.05


def _is_busy(error: sqlite3.OperationalError) -> bool:
    code = getattr(error, "sqlite_errorcode", None)
    return code is not None and code & 0xFF == _BUSY


async def _patiently(patience: float, call: Callable[..., T], *args: Any) -> T:
    """`call(*args)`, retried without blocking while SQLite says the database is busy."""
    loop = asyncio.get_running_loop()
    deadline: float | None = None
    pause = _FIRST_PAUSE
    while True:
        try:
            return call(*args)
        except sqlite3.OperationalError as error:
            if not _is_busy(error):
                raise
            now = loop.time()
            deadline = now + patience if deadline is None else deadline
            if now >= deadline:
                raise
        await asyncio.sleep(pause)
        pause = min(pause * 2, _MAX_PAUSE)


class InlineCursor:
    def __init__(self, connection: InlineConnection) -> None:
        self._connection = connection
        self._cursor = connection._conn.cursor()

    async def __aenter__(self) -> InlineCursor:
        return self

    async def __aexit__(
        self,
        _type: type[BaseException] | None,
        _value: BaseException | None,
        _traceback: TracebackType | None,
    ) -> None:
        await self.close()

    @property
    def description(self) -> Any:
        return self._cursor.description

    @property
    def rowcount(self) -> int:
        return self._cursor.rowcount

    @property
    def lastrowid(self) -> int | None:
        return self._cursor.lastrowid

    @property
    def arraysize(self) -> int:
        return self._cursor.arraysize

    @arraysize.setter
    def arraysize(self, value: int) -> None:
        self._cursor.arraysize = value

    async def execute(self, sql: str, parameters: Any = ()) -> InlineCursor:
        # Let whatever else is ready run first, as a hand-off to a thread would:
        # a transaction of many statements must not hold the loop end to end
        # while an answer waits to be posted.
        await asyncio.sleep(0)
        await _patiently(self._connection.busy_timeout, self._cursor.execute, sql, parameters)
        return self

    async def executemany(self, sql: str, parameters: Iterable[Any]) -> InlineCursor:
        rows = list(parameters)  # a generator could not be replayed after a refusal
        await asyncio.sleep(0)
        await _patiently(self._connection.busy_timeout, self._cursor.executemany, sql, rows)
        return self

    async def fetchone(self) -> Any:
        return self._cursor.fetchone()

    async def fetchmany(self, size: int | None = None) -> Sequence[Any]:
        return self._cursor.fetchmany(self._cursor.arraysize if size is None else size)

    async def fetchall(self) -> Sequence[Any]:
        return self._cursor.fetchall()

    async def nextset(self) -> None:
        return None

    async def setinputsizes(self, *_sizes: Any) -> None:
        return None

    async def close(self) -> None:
        self._cursor.close()


class _RunNow:
    """Stands in for aiosqlite's queue to its worker thread: the dialect sets the
    isolation level by putting (future, function) on it."""

    def put_nowait(self, item: tuple[asyncio.Future[Any] | None, Callable[[], Any]]) -> None:
        future, function = item
        try:
            result = function()
        except Exception as error:
            if future is not None:
                future.set_exception(error)
            return
        if future is not None:
            future.set_result(result)


class InlineConnection:
    def __init__(self, connection: sqlite3.Connection, busy_timeout: float) -> None:
        # `_conn`, `_connection` and `_tx` are the names the dialect reads.
        self._conn = connection
        self._connection: sqlite3.Connection | None = connection
        self._tx = _RunNow()
        self.busy_timeout = busy_timeout

    @property
    def isolation_level(self) -> str | None:
        return self._conn.isolation_level

    def cursor(self) -> InlineCursor:
        return InlineCursor(self)

    async def commit(self) -> None:
        await _patiently(self.busy_timeout, self._conn.commit)

    async def rollback(self) -> None:
        self._conn.rollback()

    async def create_function(self, *args: Any, **kwargs: Any) -> None:
        self._conn.create_function(*args, **kwargs)

    async def close(self) -> None:
        self.stop()

    def stop(self) -> None:
        """Close now (also how the pool terminates a connection it gave up on)."""
        if self._connection is not None:
            self._connection = None
            self._conn.close()


def begin_now(connection: Any, statement: str) -> bool:
    """Run BEGIN on an InlineConnection at once; False if SQLite is busy (another
    process writes), for the caller to wait its turn the patient way."""
    try:
        connection._conn.execute(statement)
    except sqlite3.OperationalError as error:
        if _is_busy(error):
            return False
        raise
    return True


def connector(path: str, busy_timeout: float) -> Callable[[], Any]:
    """An `async_creator` for `create_async_engine`: connections to `path`."""

    async def connect() -> InlineConnection:
        # check_same_thread off: the pool may close a connection from the thread
        # that collects it. Busy waiting is ours (see the module docstring).
        raw = sqlite3.connect(path, timeout=0, check_same_thread=False, isolation_level=None)
        return InlineConnection(raw, busy_timeout)

    return connect
