"""SQLite statements on the loop's thread (core/db/inline_sqlite.py): another
process's write lock is waited for without blocking the loop, up to the busy timeout."""

from __future__ import annotations

import asyncio
import itertools
import sqlite3
import threading
import time
from collections.abc import AsyncIterator, Callable
from contextlib import asynccontextmanager
from dataclasses import dataclass
from pathlib import Path

import pytest
from sqlalchemy import text
from sqlalchemy.exc import OperationalError

from core.db.engine import Database


@pytest.fixture
def path(tmp_path: Path) -> str:
    file = tmp_path / "inline.db"
    with sqlite3.connect(file) as conn:
        conn.execute("PRAGMA journal_mode=WAL")
        conn.execute("CREATE TABLE t (id INTEGER PRIMARY KEY, v TEXT)")
    return str(file)


def hold_write_lock(path: str, seconds: float, taken: threading.Event) -> threading.Thread:
    """Another writer (its own connection, on a thread of its own) holds SQLite's
    write lock for `seconds`, as a second process would."""

    def run() -> None:
        conn = sqlite3.connect(path, isolation_level=None)
        conn.execute("BEGIN IMMEDIATE")
        conn.execute("INSERT INTO t (v) VALUES ('other')")
        taken.set()
        time.sleep(seconds)
        conn.execute("COMMIT")
        conn.close()

    thread = threading.Thread(target=run)
    thread.start()
    return thread


@asynccontextmanager
async def loop_turns() -> AsyncIterator[Callable[[], int]]:
    """The turns another task gets on the loop while the block runs (read by calling
    what the block is given)."""
    turns = 0
    running = True

    async def other_task() -> None:
        nonlocal turns
        while running:
            turns += 1
            await asyncio.sleep(0)

    other = asyncio.create_task(other_task())
    try:
        yield lambda: turns
    finally:
        running = False
        await other


async def ticks_while(work: asyncio.Task[object]) -> list[float]:
    """Loop-time gaps between 10 ms ticks while `work` runs: a blocked loop
    shows as one long gap."""
    loop = asyncio.get_running_loop()
    stamps = [loop.time()]
    while not work.done():
        await asyncio.sleep(0.01)
        stamps.append(loop.time())
    return [b - a for a, b in itertools.pairwise(stamps)]


async def test_statements_run_and_commit(path: str) -> None:
    db = Database(f"sqlite+aiosqlite:///{path}")
    try:
        async with db.write() as session:
            await session.execute(text("INSERT INTO t (v) VALUES ('a'), ('b')"))
        async with db.read() as session:
            rows = (await session.execute(text("SELECT v FROM t ORDER BY id"))).scalars().all()
        assert rows == ["a", "b"]
        with pytest.raises(OperationalError):  # errors surface as SQLAlchemy's
            async with db.read() as session:
                await session.execute(text("SELECT nope FROM t"))
        # A failed write transaction is rolled back.
        with pytest.raises(RuntimeError):
            async with db.write() as session:
                await session.execute(text("INSERT INTO t (v) VALUES ('c')"))
                raise RuntimeError("abort")
        async with db.read() as session:
            assert (await session.execute(text("SELECT count(*) FROM t"))).scalar() == 2
    finally:
        await db.dispose()


async def test_a_long_transaction_lets_other_tasks_run_between_statements(path: str) -> None:
    """Statements yield to the loop, so a transaction of many of them does not hold
    it end to end (an answer waiting to be posted would wait for all of them)."""
    db = Database(f"sqlite+aiosqlite:///{path}")
    try:
        async with loop_turns() as turns:
            await asyncio.sleep(0)
            before = turns()
            async with db.write() as session:
                for index in range(50):
                    await session.execute(text("INSERT INTO t (v) VALUES (:v)"), {"v": str(index)})
            assert turns() - before >= 50
    finally:
        await db.dispose()


@dataclass
class Contended:
    elapsed: float  # seconds the write took, from its start to its end
    longest_gap: float  # the longest the loop went without running a 10 ms ticker
    error: BaseException | None  # what the write raised


async def write_while_locked(db: Database, path: str, hold: float) -> Contended:
    """Our write, started while another writer holds the lock for `hold` s."""
    taken = threading.Event()
    other = hold_write_lock(path, hold, taken)
    try:
        await asyncio.to_thread(taken.wait)

        async def write() -> None:
            async with db.write() as session:
                await session.execute(text("INSERT INTO t (v) VALUES ('ours')"))

        started = time.monotonic()
        work = asyncio.create_task(write())
        gaps = await ticks_while(work)
        elapsed = time.monotonic() - started
        error = work.exception()
        return Contended(elapsed, max(gaps), error)
    finally:
        await asyncio.to_thread(other.join)


async def test_a_write_waits_for_another_writer_without_blocking_the_loop(path: str) -> None:
    db = Database(f"sqlite+aiosqlite:///{path}", busy_timeout=5.0)
    try:
        contended = await write_while_locked(db, path, hold=0.5)
        assert contended.error is None
        assert contended.elapsed >= 0.4  # it did wait for the lock
        assert contended.longest_gap < 0.2  # and the loop kept running meanwhile
        async with db.read() as session:
            rows = (await session.execute(text("SELECT v FROM t ORDER BY id"))).scalars().all()
        assert rows == ["other", "ours"]
    finally:
        await db.dispose()


async def test_a_write_gives_up_after_the_busy_timeout(path: str) -> None:
    db = Database(f"sqlite+aiosqlite:///{path}", busy_timeout=0.3)
    try:
        contended = await write_while_locked(db, path, hold=1.5)
    finally:
        await db.dispose()
    assert isinstance(contended.error, OperationalError)
    assert "database is locked" in str(contended.error)
    assert 0.3 <= contended.elapsed < 1.2
    assert contended.longest_gap < 0.2
    # The other writer's row is there, ours is not.
    with sqlite3.connect(path) as conn:
        assert [v for (v,) in conn.execute("SELECT v FROM t")] == ["other"]


async def test_a_session_closes_without_yielding_and_a_cancelled_one_returns_its_connection(
    path: str,
) -> None:
    """On inline SQLite a session is closed where its block ends, not in a shielded
    task of its own: the close never waits, so no cancellation can cut it short and
    the connection is back in the pool before anything else runs."""
    db = Database(f"sqlite+aiosqlite:///{path}")
    pool = db.engine.sync_engine.pool
    try:
        async with loop_turns() as turns:
            async with db.read() as session:
                await session.execute(text("SELECT v FROM t"))
                assert pool.checkedout() == 1  # type: ignore[attr-defined]
                before = turns()
            assert (turns(), pool.checkedout()) == (before, 0)  # type: ignore[attr-defined]

        entered = asyncio.Event()

        async def writer() -> None:
            async with db.write() as session:
                await session.execute(text("INSERT INTO t (v) VALUES ('cut')"))
                entered.set()
                await asyncio.sleep(10)

        task = asyncio.create_task(writer())
        await entered.wait()
        task.cancel()
        with pytest.raises(asyncio.CancelledError):
            await task
        assert pool.checkedout() == 0  # type: ignore[attr-defined]
        async with db.read() as session:
            assert (await session.execute(text("SELECT count(*) FROM t"))).scalar() == 0
        async with db.write() as session:  # the write lock was let go too
            await session.execute(text("INSERT INTO t (v) VALUES ('after')"))
    finally:
        await db.dispose()
