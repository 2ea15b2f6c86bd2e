"""What goes wrong when a process first reaches its database, said in one line.

Drivers report a missing database, a refused login, a closed port or a file that is
not SQLite in their own ways (asyncpg, sqlite3, socket errors, wrapped by SQLAlchemy).
`describe` turns each into a line that names DATABASE_URL and what to check, without
the password the URL may carry.
"""

from __future__ import annotations

import logging
import os
import socket
import sqlite3
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path

from sqlalchemy.engine import URL, make_url

from core.config import ConfigError

VARIABLE = "DATABASE_URL"

log = logging.getLogger(__name__)


class DatabaseUnavailable(ConfigError):
    """The database DATABASE_URL names cannot be used; the message says why."""


def sqlite_path(url: str) -> Path | None:
    """The file of a SQLite URL; None for PostgreSQL and in-memory databases."""
    parsed = make_url(url)
    if parsed.get_backend_name() != "sqlite" or parsed.database in (None, "", ":memory:"):
        return None
    return Path(parsed.database)


def sqlite_directory_error(directory: Path, error: OSError) -> DatabaseUnavailable:
    return DatabaseUnavailable(
        f"{VARIABLE}: cannot create the directory {directory} for the SQLite database: "
        f"{error.strerror or error}"
    )


def _chain(error: BaseException) -> Iterator[BaseException]:
    """The error, the driver error SQLAlchemy wrapped, and what caused each."""
    seen: set[int] = set()
    pending: list[BaseException | None] = [error]
    while pending:
        current = pending.pop(0)
        if current is None or id(current) in seen:
            continue
        seen.add(id(current))
        yield current
        pending += [getattr(current, "orig", None), current.__cause__, current.__context__]


def describe(error: BaseException, url: str) -> str | None:
    """One line for an error met while connecting to or migrating the database at `url`;
    None when the error is not about reaching it (a bug keeps its traceback)."""
    parsed = make_url(url)
    for cause in _chain(error):
        line = (
            _sqlite(cause, parsed)
            if parsed.get_backend_name() == "sqlite"
            else _postgres(cause, parsed)
        )
        if line is not None:
            return _without_password(f"{VARIABLE}: {line}", parsed)
    return None


@contextmanager
def reaching(url: str) -> Iterator[None]:
    """Turns a failure to reach or open the database at `url` into DatabaseUnavailable
    (one line naming DATABASE_URL); other errors pass unchanged."""
    try:
        yield
    except DatabaseUnavailable:
        raise
    except Exception as exc:
        line = describe(exc, url)
        if line is None:
            raise
        log.debug("database at start-up", exc_info=True)  # the whole story, for DEBUG
        raise DatabaseUnavailable(line) from None


def _without_password(line: str, url: URL) -> str:
    # No message below quotes the URL; this holds if a driver's own text ever does.
    return line.replace(url.password, "***") if url.password else line


# PostgreSQL's own error codes (SQLSTATE), whichever driver carries them. Only these
# are the operator's to fix; any other code (a migration's SQL) is a bug.
_NO_DATABASE = "3D000"
_LOGIN_REFUSED = ("28000", "28P01")  # no such role / not allowed; wrong password
_OPERATOR_CODES = (
    "08",  # connection exception
    "53",  # insufficient resources: too many connections, disk full
    "57P",  # the server is shutting down or starting up
    "42501",  # insufficient privilege: the role may not create the tables
)


def _postgres(error: BaseException, url: URL) -> str | None:
    where = f"{url.host or 'localhost'}:{url.port or 5432}"
    sqlstate = getattr(error, "sqlstate", None)
    if sqlstate == _NO_DATABASE:
        return f"{error} on {where}: create it, or fix the name"
    if sqlstate in _LOGIN_REFUSED:
        return f"PostgreSQL at {where} refused the login: {error}"
    if isinstance(sqlstate, str) and sqlstate.startswith(_OPERATOR_CODES):
        return f"PostgreSQL at {where}: {error}"
    if isinstance(error, socket.gaierror):
        return f"the host {url.host!r} does not resolve ({error.strerror or error})"
    if isinstance(error, ConnectionRefusedError):
        return f"nothing listens at {where} (connection refused): is PostgreSQL running there?"
    if isinstance(error, TimeoutError):
        return f"PostgreSQL at {where} did not answer in time"
    if isinstance(error, OSError):
        return f"cannot connect to PostgreSQL at {where}: {error.strerror or error}"
    if type(error).__module__.startswith("asyncpg") and "InterfaceError" in type(error).__name__:
        return f"cannot talk to PostgreSQL at {where}: {error}"
    return None


# The file or the disk, not a statement: the operator's to fix.
_SQLITE_OPERATOR_CODES = (
    sqlite3.SQLITE_IOERR,
    sqlite3.SQLITE_CORRUPT,
    sqlite3.SQLITE_FULL,
    sqlite3.SQLITE_PERM,
    sqlite3.SQLITE_AUTH,
)


def _sqlite(error: BaseException, url: URL) -> str | None:
    path = Path(url.database or ":memory:")
    if isinstance(error, sqlite3.Error):
        code = (getattr(error, "sqlite_errorcode", None) or 0) & 0xFF
        if code == sqlite3.SQLITE_NOTADB:
            return f"{path} is not a SQLite database (some other file is in its place)"
        if code == sqlite3.SQLITE_CANTOPEN:
            return _cannot_open(path)
        if code == sqlite3.SQLITE_READONLY:
            return f"{path} is read-only: SQLite must write to it and to its directory"
        if code in (sqlite3.SQLITE_BUSY, sqlite3.SQLITE_LOCKED):
            return f"{path} is locked by another process"
        if code in _SQLITE_OPERATOR_CODES:
            return f"SQLite cannot use {path}: {error}"
        return None  # a statement's own error: a bug
    if isinstance(error, OSError):
        return f"cannot use the SQLite database {path}: {error.strerror or error}"
    return None


def _cannot_open(path: Path) -> str:
    directory = path.parent
    if path.is_dir():
        return f"{path} is a directory, not a SQLite database file"
    if not directory.is_dir():
        return f"the directory {directory} of the SQLite database does not exist"
    if not os.access(directory, os.W_OK | os.X_OK) or (
        path.exists() and not os.access(path, os.R_OK | os.W_OK)
    ):
        return f"SQLite cannot open or create {path}: {directory} is not writable"
    return f"SQLite cannot open or create {path}: check that {directory} is a writable directory"
