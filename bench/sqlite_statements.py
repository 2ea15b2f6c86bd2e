"""Benchmark: what one SQLite statement costs through SQLAlchemy, by how it reaches
SQLite, in one run.

Three arms run the same indexed SELECT on the same WAL file: sqlite3 called
directly (the work SQLite itself does), SQLAlchemy's async session on aiosqlite's
worker threads, and the same session on OneAI's inline connection
(core/db/inline_sqlite.py). Printed: microseconds of wall and CPU time per
statement, and each arm's ratio to the inline one.

    python -m bench.sqlite_statements [--statements 3000]

Not a test: figures vary with the machine; compare the ratios.
"""

from __future__ import annotations

import argparse
import asyncio
import os
import sqlite3
import tempfile
import time
from collections.abc import Awaitable, Callable
from pathlib import Path

from sqlalchemy import text
from sqlalchemy.ext.asyncio import AsyncEngine, async_sessionmaker, create_async_engine

from core.db import inline_sqlite

QUERY = "SELECT id, v FROM t WHERE id = :id"
ROWS = 100


def cpu_seconds() -> float:
    times = os.times()
    return times.user + times.system


def prepare(path: Path) -> None:
    with sqlite3.connect(path) as conn:
        conn.execute("PRAGMA journal_mode=WAL")
        conn.execute("CREATE TABLE t (id INTEGER PRIMARY KEY, v TEXT)")
        conn.executemany("INSERT INTO t (v) VALUES (?)", [("x",)] * ROWS)


async def timed(statements: int, one: Callable[[int], Awaitable[None]]) -> tuple[float, float]:
    """(wall µs, CPU µs) per statement."""
    wall, cpu = time.perf_counter(), cpu_seconds()
    for index in range(statements):
        await one(index % ROWS)
    return (
        (time.perf_counter() - wall) / statements * 1e6,
        (cpu_seconds() - cpu) / statements * 1e6,
    )


async def direct(path: Path, statements: int) -> tuple[float, float]:
    conn = sqlite3.connect(path)

    async def one(row: int) -> None:
        conn.execute("SELECT id, v FROM t WHERE id = ?", (row,)).fetchall()

    try:
        return await timed(statements, one)
    finally:
        conn.close()


async def through(engine: AsyncEngine, statements: int) -> tuple[float, float]:
    try:
        async with async_sessionmaker(engine)() as session:

            async def one(row: int) -> None:
                (await session.execute(text(QUERY), {"id": row})).all()

            await one(0)  # connect outside the timing
            return await timed(statements, one)
    finally:
        await engine.dispose()


async def main() -> None:
    parser = argparse.ArgumentParser()
    parser.add_argument("--statements", type=int, default=3000)
    args = parser.parse_args()
    with tempfile.TemporaryDirectory() as workdir:
        path = Path(workdir) / "bench.db"
        prepare(path)
        url = f"sqlite+aiosqlite:///{path}"
        arms = {
            "sqlite3, direct": await direct(path, args.statements),
            "SQLAlchemy + aiosqlite threads": await through(
                create_async_engine(url), args.statements
            ),
            "SQLAlchemy + inline connection": await through(
                create_async_engine(url, async_creator=inline_sqlite.connector(str(path), 5.0)),
                args.statements,
            ),
        }
    inline_wall = arms["SQLAlchemy + inline connection"][0]
    print(f"One indexed SELECT, {args.statements} times, per statement:")
    for name, (wall, cpu) in arms.items():
        print(f"   {name:<32}{wall:8.1f} µs wall {cpu:8.1f} µs CPU   x{wall / inline_wall:.2f}")


if __name__ == "__main__":
    asyncio.run(main())
