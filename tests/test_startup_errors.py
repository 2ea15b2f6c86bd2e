"""Start-up problems an operator can cause, as the operator meets them: the real `oneai`
command in a process. Each one stops it with exit code 2 and exactly one line on stderr
that names the variable to fix, without a traceback and without a secret."""

from __future__ import annotations

import asyncio
import json
import os
import socket
import sys
import uuid
from collections.abc import AsyncIterator, Iterator
from dataclasses import dataclass
from pathlib import Path

import pytest
from sqlalchemy import text
from sqlalchemy.engine import URL, make_url

from core.db.engine import null_pool_engine
from tests.fakes.postgres_server import RefusingPostgres
from tests.fakes.telegram_server import FakeTelegram
from tests.support.process import clean_env, free_port

# Commands that start up on the database, with the arguments each needs.
COMMANDS: dict[str, tuple[str, ...]] = {
    "run": ("run",),
    "migrate": ("migrate",),
    "chat": ("chat",),
    "grant": ("grant", "1", "pro", "30"),
}

PASSWORD = "pw-that-must-not-show"  # in every database URL below
PG_DEFAULT = "postgresql+asyncpg://postgres@127.0.0.1:5432/test"


@dataclass
class Outcome:
    code: int
    out: str
    err: str

    def stops_naming(self, variable: str, *secrets: str) -> str:
        """Asserts the one-line stop and returns that line."""
        assert self.code == 2, (self.code, self.err)
        lines = self.err.splitlines()
        assert len(lines) == 1 and lines[0].strip(), self.err
        assert variable in lines[0], lines[0]
        assert "Traceback" not in self.err + self.out
        for secret in secrets:
            assert secret not in self.err + self.out, secret
        return lines[0]


async def oneai(*args: str, cwd: Path, env: dict[str, str], stdin: bytes = b"") -> Outcome:
    process = await asyncio.create_subprocess_exec(
        sys.executable,
        "-m",
        "bot",
        *args,
        cwd=cwd,
        env=clean_env(**env),
        stdin=asyncio.subprocess.PIPE,
        stdout=asyncio.subprocess.PIPE,
        stderr=asyncio.subprocess.PIPE,
    )
    out, err = await asyncio.wait_for(process.communicate(stdin), 60)
    assert process.returncode is not None
    return Outcome(process.returncode, out.decode(), err.decode())


@pytest.fixture
async def tg() -> AsyncIterator[FakeTelegram]:
    async with FakeTelegram() as fake:
        yield fake


@pytest.fixture
def env(tmp_path: Path, tg: FakeTelegram) -> dict[str, str]:
    """A configuration that starts every command: the fake Bot API, a free HTTP port, a
    SQLite file, no network for the model list. Each test breaks one thing in it."""
    return {
        "DATABASE_URL": f"sqlite+aiosqlite:///{tmp_path / 'oneai.db'}",
        "TELEGRAM_BOT_TOKEN": tg.token,
        "TELEGRAM_API_URL": tg.url,
        "HTTP_PORT": str(free_port()),
        "LLM_BASE_URL": f"http://127.0.0.1:{free_port()}/v1",
        "LLM_MODELS": "test-model",  # a server's models named: none asked for at start
        "MODEL_CATALOG_REFRESH_HOURS": "0",
        "MODEL_CATALOG_CACHE_FILE": str(tmp_path / "models-cache.json"),
    }


def _pg_base() -> URL:
    configured = os.environ.get("TEST_DATABASE_URL") or ""
    return make_url(configured if configured.startswith("postgresql") else PG_DEFAULT)


@pytest.fixture
def pg() -> URL:
    """The PostgreSQL server the suite runs next to; skipped only where there is none."""
    base = _pg_base()
    try:
        socket.create_connection((base.host or "127.0.0.1", base.port or 5432), timeout=2).close()
    except OSError:
        pytest.skip(f"no PostgreSQL at {base.host}:{base.port}")
    return base


def _url(url: URL) -> str:
    return url.render_as_string(hide_password=False)


# -- TELEGRAM_BOT_TOKEN ------------------------------------------------------------------


@pytest.mark.parametrize("command", COMMANDS)
async def test_malformed_token_stops_every_command(
    command: str, env: dict[str, str], tmp_path: Path
) -> None:
    token = "12345-AAmalformedSecretPart"
    result = await oneai(*COMMANDS[command], cwd=tmp_path, env={**env, "TELEGRAM_BOT_TOKEN": token})
    line = result.stops_naming("TELEGRAM_BOT_TOKEN", token, "AAmalformedSecretPart")
    assert "colon" in line  # says what shape is expected


async def test_token_refused_by_telegram(
    tg: FakeTelegram, env: dict[str, str], tmp_path: Path
) -> None:
    wrong = f"{tg.bot_id}:AAWrongSecretTelegramNeverIssued_0123"
    result = await oneai("run", cwd=tmp_path, env={**env, "TELEGRAM_BOT_TOKEN": wrong})
    line = result.stops_naming("TELEGRAM_BOT_TOKEN", wrong, wrong.split(":")[1])
    assert line == "oneai: TELEGRAM_BOT_TOKEN was refused by Telegram (Unauthorized)"
    assert [call.method for call in tg.calls] == ["getMe"]  # nothing else was started


async def test_telegram_api_that_does_not_answer(
    tg: FakeTelegram, env: dict[str, str], tmp_path: Path
) -> None:
    closed = f"http://127.0.0.1:{free_port()}"
    result = await oneai("run", cwd=tmp_path, env={**env, "TELEGRAM_API_URL": closed})
    line = result.stops_naming("TELEGRAM_API_URL", tg.token.split(":")[1])
    assert closed in line


# -- DATABASE_URL: PostgreSQL ------------------------------------------------------------


@pytest.mark.parametrize("command", COMMANDS)
async def test_postgres_database_that_does_not_exist(
    command: str, pg: URL, env: dict[str, str], tmp_path: Path
) -> None:
    name = f"oneai_missing_{uuid.uuid4().hex[:8]}"
    url = _url(pg.set(database=name, password=PASSWORD))
    result = await oneai(*COMMANDS[command], cwd=tmp_path, env={**env, "DATABASE_URL": url})
    line = result.stops_naming("DATABASE_URL", PASSWORD)
    assert f'database "{name}" does not exist' in line


async def test_postgres_role_that_does_not_exist(
    pg: URL, env: dict[str, str], tmp_path: Path
) -> None:
    role = f"oneai_nobody_{uuid.uuid4().hex[:8]}"
    url = _url(pg.set(username=role, password=PASSWORD))
    result = await oneai("migrate", cwd=tmp_path, env={**env, "DATABASE_URL": url})
    line = result.stops_naming("DATABASE_URL", PASSWORD)
    assert f'role "{role}" does not exist' in line


@pytest.fixture
def empty_pg_database(pg: URL) -> Iterator[URL]:
    name = f"oneai_empty_{uuid.uuid4().hex[:8]}"

    async def admin_sql(sql: str) -> None:
        engine = null_pool_engine(_url(pg))
        try:
            async with engine.connect() as conn:
                await conn.execution_options(isolation_level="AUTOCOMMIT")
                await conn.execute(text(sql))
        finally:
            await engine.dispose()

    asyncio.run(admin_sql(f'CREATE DATABASE "{name}"'))
    try:
        yield pg.set(database=name)
    finally:
        asyncio.run(admin_sql(f'DROP DATABASE IF EXISTS "{name}" WITH (FORCE)'))


async def test_postgres_database_not_migrated_yet(
    empty_pg_database: URL, env: dict[str, str], tmp_path: Path
) -> None:
    url = _url(empty_pg_database.set(password=PASSWORD))
    result = await oneai("chat", cwd=tmp_path, env={**env, "DATABASE_URL": url}, stdin=b"hi\n")
    line = result.stops_naming("DATABASE_URL", PASSWORD)
    assert "oneai migrate" in line


async def test_postgres_wrong_password(env: dict[str, str], tmp_path: Path) -> None:
    async with RefusingPostgres() as server:
        url = f"postgresql+asyncpg://ann:{PASSWORD}@127.0.0.1:{server.port}/oneai"
        result = await oneai(
            "grant", "1", "pro", "30", cwd=tmp_path, env={**env, "DATABASE_URL": url}
        )
    line = result.stops_naming("DATABASE_URL", PASSWORD)
    assert 'password authentication failed for user "ann"' in line
    assert server.passwords == [PASSWORD]  # the password did reach the server


async def test_postgres_port_with_nothing_listening(env: dict[str, str], tmp_path: Path) -> None:
    port = free_port()
    url = f"postgresql+asyncpg://postgres:{PASSWORD}@127.0.0.1:{port}/oneai"
    result = await oneai("chat", cwd=tmp_path, env={**env, "DATABASE_URL": url}, stdin=b"hi\n")
    line = result.stops_naming("DATABASE_URL", PASSWORD)
    assert f"127.0.0.1:{port}" in line and "refused" in line


async def test_postgres_host_that_does_not_resolve(env: dict[str, str], tmp_path: Path) -> None:
    url = f"postgresql+asyncpg://postgres:{PASSWORD}@no-such-host.invalid:5432/oneai"
    result = await oneai("migrate", cwd=tmp_path, env={**env, "DATABASE_URL": url})
    line = result.stops_naming("DATABASE_URL", PASSWORD)
    assert "no-such-host.invalid" in line


@pytest.mark.parametrize(
    "url",
    [
        f"postgresql+asyncpg://postgres:{PASSWORD}@127.0.0.1:five432/oneai",
        f"postgresql+asyncpg://postgres:{PASSWORD}@127.0.0.1:99999/oneai",
        f"postgresql+asyncpg://postgres:{PASSWORD}@[::1/oneai",
    ],
    ids=["port-not-a-number", "port-out-of-range", "broken-ipv6-host"],
)
async def test_malformed_database_url(url: str, env: dict[str, str], tmp_path: Path) -> None:
    result = await oneai("run", cwd=tmp_path, env={**env, "DATABASE_URL": url})
    result.stops_naming("DATABASE_URL", PASSWORD)


# -- DATABASE_URL: SQLite ----------------------------------------------------------------


async def test_sqlite_directory_that_cannot_be_created(env: dict[str, str], tmp_path: Path) -> None:
    (tmp_path / "a-file").write_text("in the way of the directory\n")
    path = tmp_path / "a-file" / "data" / "oneai.db"
    result = await oneai("migrate", cwd=tmp_path, env={**env, "DATABASE_URL": f"sqlite:///{path}"})
    line = result.stops_naming("DATABASE_URL")
    assert str(tmp_path / "a-file" / "data") in line


async def test_sqlite_directory_is_created_when_it_can_be(
    env: dict[str, str], tmp_path: Path
) -> None:
    path = tmp_path / "new" / "dir" / "oneai.db"
    result = await oneai("migrate", cwd=tmp_path, env={**env, "DATABASE_URL": f"sqlite:///{path}"})
    assert result.code == 0, result.err
    assert path.is_file()


@pytest.mark.parametrize("command", ["chat", "migrate"])
async def test_sqlite_file_that_is_not_a_database(
    command: str, env: dict[str, str], tmp_path: Path
) -> None:
    path = tmp_path / "notes.txt"
    path.write_text("these are my notes, not a database\n" * 100)
    url = f"sqlite+aiosqlite:///{path}"
    result = await oneai(*COMMANDS[command], cwd=tmp_path, env={**env, "DATABASE_URL": url})
    line = result.stops_naming("DATABASE_URL")
    assert str(path) in line and "not a SQLite database" in line
    assert path.read_text().startswith("these are my notes")  # left as it was


def _read_only_directory(tmp_path: Path) -> Path:
    directory = tmp_path / "read-only"
    directory.mkdir()
    directory.chmod(0o555)
    if not os.access(directory, os.W_OK):
        return directory
    # Permissions do not bind root; procfs takes no new files from anyone.
    return Path("/proc")


async def test_sqlite_in_a_read_only_location(env: dict[str, str], tmp_path: Path) -> None:
    directory = _read_only_directory(tmp_path)
    path = directory / f"oneai-{uuid.uuid4().hex[:8]}.db"
    url = f"sqlite+aiosqlite:///{path}"
    try:
        result = await oneai(
            "grant", "1", "pro", "30", cwd=tmp_path, env={**env, "DATABASE_URL": url}
        )
    finally:
        (tmp_path / "read-only").chmod(0o755)
    line = result.stops_naming("DATABASE_URL")
    assert str(path) in line


# -- REDIS_URL, HTTP_PORT, files -----------------------------------------------------------


async def test_redis_that_does_not_answer(env: dict[str, str], tmp_path: Path) -> None:
    url = f"redis://:{PASSWORD}@127.0.0.1:{free_port()}/0"
    result = await oneai("run", cwd=tmp_path, env={**env, "REDIS_URL": url})
    result.stops_naming("REDIS_URL", PASSWORD)


async def test_malformed_redis_url(env: dict[str, str], tmp_path: Path) -> None:
    url = f"redis://:{PASSWORD}@127.0.0.1:sixthousand/0"
    result = await oneai("run", cwd=tmp_path, env={**env, "REDIS_URL": url})
    result.stops_naming("REDIS_URL", PASSWORD)


async def test_http_port_already_in_use(env: dict[str, str], tmp_path: Path) -> None:
    with socket.socket() as taken:
        taken.bind(("127.0.0.1", 0))
        taken.listen()
        port = taken.getsockname()[1]
        result = await oneai("run", cwd=tmp_path, env={**env, "HTTP_PORT": str(port)})
    line = result.stops_naming("HTTP_PORT")
    assert f"127.0.0.1:{port}" in line and "in use" in line


@pytest.mark.parametrize("command", ["chat", "run"])
async def test_malformed_model_catalog_file(
    command: str, env: dict[str, str], tmp_path: Path
) -> None:
    path = tmp_path / "models.json"
    path.write_text('{"models": [{"id": "acme/rocket", }]}')
    result = await oneai(
        *COMMANDS[command],
        cwd=tmp_path,
        env={**env, "MODEL_CATALOG_FILE": str(path)},
        stdin=b"hi\n",
    )
    line = result.stops_naming("MODEL_CATALOG_FILE")
    assert "invalid JSON" in line


async def test_malformed_plans_file(env: dict[str, str], tmp_path: Path) -> None:
    path = tmp_path / "plans.json"
    path.write_text(json.dumps({"pro": {"xtr": 9.99}}))
    result = await oneai("run", cwd=tmp_path, env={**env, "PAYMENTS_PLANS_FILE": str(path)})
    line = result.stops_naming("PAYMENTS_PLANS_FILE")
    assert "positive integer" in line


@pytest.mark.parametrize("command", ["chat", "run"])
async def test_malformed_chat_modes_file(command: str, env: dict[str, str], tmp_path: Path) -> None:
    path = tmp_path / "modes.json"
    path.write_text(json.dumps({"modes": [{"id": "pirate", "name": "Pirate"}]}))
    result = await oneai(
        *COMMANDS[command], cwd=tmp_path, env={**env, "CHAT_MODES_FILE": str(path)}, stdin=b"hi\n"
    )
    line = result.stops_naming("CHAT_MODES_FILE")
    assert f"chat modes file {path}: new mode 'pirate' is missing emoji, prompt" in line
