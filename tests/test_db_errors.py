"""core/db/errors.py on real driver errors: what is the operator's to fix becomes one line
naming DATABASE_URL; a statement's own error (a bug) is left alone, traceback and all."""

from __future__ import annotations

import sqlite3
from pathlib import Path

import pytest

from core.db.engine import null_pool_engine
from core.db.errors import describe
from tests.fakes.postgres_server import RefusingPostgres

PASSWORD = "pw-that-must-not-show"


def test_sqlite_file_problems_are_described_and_statement_errors_are_not(
    tmp_path: Path,
) -> None:
    notes = tmp_path / "notes.txt"
    notes.write_text("not a database\n" * 100)
    with pytest.raises(sqlite3.DatabaseError) as not_a_database:
        sqlite3.connect(notes).execute("PRAGMA schema_version")
    line = describe(not_a_database.value, f"sqlite+aiosqlite:///{notes}")
    assert line == (
        f"DATABASE_URL: {notes} is not a SQLite database (some other file is in its place)"
    )

    good = tmp_path / "good.db"
    with pytest.raises(sqlite3.OperationalError) as typo:
        sqlite3.connect(good).execute("SELEC 1")
    assert describe(typo.value, f"sqlite+aiosqlite:///{good}") is None


async def _connect_error(url: str) -> BaseException:
    """What connecting to `url` raises, however SQLAlchemy wraps the driver's error
    (describe() looks inside)."""
    engine = null_pool_engine(url)
    try:
        with pytest.raises(Exception) as info:
            async with engine.connect():
                pass
    finally:
        await engine.dispose()
    return info.value


@pytest.mark.parametrize(
    ("sqlstate", "message", "expected"),
    [
        ("28P01", 'password authentication failed for user "ann"', "refused the login"),
        ("53300", "sorry, too many clients already", "sorry, too many clients already"),
        ("57P03", "the database system is starting up", "starting up"),
        ("42601", 'syntax error at or near "SELEC"', None),
    ],
    ids=["wrong-password", "too-many-clients", "starting-up", "syntax-error"],
)
async def test_postgres_errors_by_sqlstate(
    sqlstate: str, message: str, expected: str | None
) -> None:
    async with RefusingPostgres(sqlstate=sqlstate, message=message) as server:
        url = f"postgresql+asyncpg://ann:{PASSWORD}@127.0.0.1:{server.port}/oneai"
        line = describe(await _connect_error(url), url)
    if expected is None:
        assert line is None
    else:
        assert line is not None
        assert line.startswith(f"DATABASE_URL: PostgreSQL at 127.0.0.1:{server.port}")
        assert expected in line and PASSWORD not in line


async def test_a_password_a_server_echoes_is_not_repeated() -> None:
    async with RefusingPostgres(message=f"no, {PASSWORD} is not it") as server:
        url = f"postgresql+asyncpg://ann:{PASSWORD}@127.0.0.1:{server.port}/oneai"
        line = describe(await _connect_error(url), url)
    assert line is not None and PASSWORD not in line and "no, *** is not it" in line
