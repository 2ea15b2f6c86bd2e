"""The Docker image and the Compose file, checked without a Docker engine: hadolint, the
Compose schema, and the Dockerfile's own build and start commands run on this machine
against the fakes, from a directory outside the source tree."""

from __future__ import annotations

import asyncio
import fnmatch
import json
import os
import shlex
import shutil
import subprocess
import sys
import uuid
from collections.abc import AsyncIterator, Iterator
from dataclasses import dataclass, field
from pathlib import Path, PurePosixPath
from typing import Any

import pytest
from ruamel.yaml import YAML
from sqlalchemy import text
from sqlalchemy.engine import make_url

from core.db.engine import null_pool_engine
from tests.fakes.llm_server import FakeLLM, Reply
from tests.fakes.telegram_server import FakeTelegram
from tests.support.bot_process import BotProcess
from tests.support.process import ROOT, clean_env, free_port

DOCKERFILE = ROOT / "Dockerfile"
COMPOSE = ROOT / "docker-compose.yml"
ENTRYPOINT = ROOT / "docker" / "entrypoint.sh"


def _tool(name: str) -> str:
    """A console script of this environment (the dev extras install it)."""
    path = Path(sys.executable).parent / name
    found = str(path) if path.exists() else shutil.which(name)
    assert found, f"{name} is not installed: pip install -e '.[dev]'"
    return found


# --- the Dockerfile, read the way the builder reads it ---------------------------------


@dataclass
class Stage:
    name: str
    instructions: list[tuple[str, str]] = field(default_factory=list)

    def args(self, keyword: str) -> list[str]:
        return [rest for kw, rest in self.instructions if kw == keyword]

    def env(self) -> dict[str, str]:
        values: dict[str, str] = {}
        for rest in self.args("ENV"):
            for pair in shlex.split(rest):
                key, _, value = pair.partition("=")
                values[key] = value
        return values


def dockerfile_stages() -> dict[str, Stage]:
    lines: list[str] = []
    pending = ""
    for raw in DOCKERFILE.read_text().splitlines():
        stripped = raw.strip()
        if not stripped or stripped.startswith("#"):
            continue
        if stripped.endswith("\\"):
            pending += stripped[:-1] + " "
            continue
        lines.append(pending + stripped)
        pending = ""
    stages: dict[str, Stage] = {}
    current: Stage | None = None
    for line in lines:
        keyword, _, rest = line.partition(" ")
        keyword = keyword.upper()
        if keyword == "FROM":
            words = rest.split()
            current = Stage(words[-1] if len(words) >= 3 and words[-2].upper() == "AS" else "")
            stages[current.name] = current
        elif current is not None:
            current.instructions.append((keyword, rest.strip()))
    return stages


def _ignore_patterns() -> list[tuple[bool, str]]:
    rules = []
    for raw in (ROOT / ".dockerignore").read_text().splitlines():
        line = raw.strip()
        if line and not line.startswith("#"):
            negated = line.startswith("!")
            rules.append((negated, line.lstrip("!").rstrip("/")))
    return rules


def _matches(pattern: str, path: PurePosixPath) -> bool:
    # A pattern matches a path or any directory above it; `**/` matches no directory too.
    candidates = [pattern, pattern.removeprefix("**/")]
    prefixes = [path, *[p for p in path.parents if str(p) != "."]]
    return any(fnmatch.fnmatchcase(str(p), c) for p in prefixes for c in candidates)


def in_build_context(path: str) -> bool:
    """Whether `path` (relative to the project) is sent to the builder (.dockerignore:
    the last matching rule wins)."""
    included = True
    for negated, pattern in _ignore_patterns():
        if _matches(pattern, PurePosixPath(path)):
            included = negated
    return included


def copy_like_the_builder(stage: Stage, workdir: Path) -> None:
    """Do the stage's COPY lines into `workdir`, with only what .dockerignore lets in."""
    for rest in stage.args("COPY"):
        assert not rest.startswith("--"), f"unexpected COPY flags: {rest}"
        *sources, dest = rest.split()
        for source in sources:
            src = ROOT / source
            files = [src] if src.is_file() else sorted(p for p in src.rglob("*") if p.is_file())
            for file in files:
                relative = file.relative_to(ROOT).as_posix()
                if not in_build_context(relative):
                    continue
                target = workdir / dest if src.is_file() else workdir / dest / file.relative_to(src)
                if src.is_file() and dest.endswith("/"):
                    target = workdir / dest / src.name
                target.parent.mkdir(parents=True, exist_ok=True)
                shutil.copy2(file, target)


def healthcheck_command() -> list[str]:
    rest = dockerfile_stages()["runtime"].args("HEALTHCHECK")[0]
    command = json.loads(rest[rest.index("CMD") + len("CMD") :].strip())
    assert isinstance(command, list)
    return [str(word) for word in command]


def _process_env(**values: str) -> dict[str, str]:
    """This environment without the project's variables or anything that would import
    the source tree or this virtualenv."""
    prefixes = ("TELEGRAM_", "DISCORD_", "LLM_", "DATABASE_", "REDIS_", "HTTP_", "MODEL_")
    env = {
        k: v
        for k, v in os.environ.items()
        if not k.startswith(prefixes) and k not in {"PYTHONPATH", "VIRTUAL_ENV", "PYTHONHOME"}
    }
    env.update(values)
    return env


# --- lint -------------------------------------------------------------------------------


def test_hadolint_finds_nothing() -> None:
    result = subprocess.run(
        [_tool("hadolint"), "--no-color", str(DOCKERFILE)],
        capture_output=True,
        text=True,
        check=False,
    )
    assert result.returncode == 0 and not result.stdout.strip(), result.stdout + result.stderr


def test_compose_file_matches_the_compose_schema() -> None:
    result = subprocess.run(
        [_tool("check-jsonschema"), "--builtin-schema", "vendor.compose-spec", str(COMPOSE)],
        capture_output=True,
        text=True,
        check=False,
    )
    assert result.returncode == 0, result.stdout + result.stderr


def test_compose_wires_the_bot_to_healthy_postgres_and_redis() -> None:
    """What the schema cannot say: the references resolve, and the bot waits for
    PostgreSQL and Redis to answer."""
    compose: dict[str, Any] = YAML(typ="safe").load(COMPOSE.read_text())
    services = compose["services"]
    volumes = compose.get("volumes") or {}
    for name, service in services.items():
        assert "healthcheck" in service or name == "bot", f"{name} has no healthcheck"
        for mount in service.get("volumes", []):
            assert mount.split(":")[0] in volumes, f"{name}: volume {mount} is not declared"
    bot = services["bot"]
    assert bot["env_file"] == ".env"
    assert bot["depends_on"] == {
        "postgres": {"condition": "service_healthy"},
        "redis": {"condition": "service_healthy"},
    }
    env = bot["environment"]
    assert make_url(env["DATABASE_URL"]).host == "postgres"
    assert env["DATABASE_URL"].startswith("postgresql+asyncpg://")
    assert env["REDIS_URL"].startswith("redis://redis:")
    assert env["HTTP_HOST"] == "0.0.0.0"
    # The secrets come from .env only.
    assert not {"TELEGRAM_BOT_TOKEN", "LLM_API_KEY"} & set(env)


def test_build_context_holds_the_package_and_nothing_secret() -> None:
    for kept in ("pyproject.toml", "README.md", "bot/cli.py", "migrations/env.py"):
        assert in_build_context(kept), kept
    for left_out in (
        ".env",
        ".git/config",
        ".venv/bin/python",
        "oneai.db",
        "core/oneai.db",
        "tests/conftest.py",
        "core/__pycache__/config.cpython-311.pyc",
        ".oneai-models-cache.json",
        "oneai-chat.log",
    ):
        assert not in_build_context(left_out), left_out
    stages = dockerfile_stages()
    assert set(stages) == {"build", "runtime"}
    runtime = stages["runtime"]
    assert runtime.args("USER") and not runtime.args("USER")[0].startswith(("root", "0"))
    assert "/healthz" in " ".join(healthcheck_command())


# --- the image's commands, run here -------------------------------------------------------


@pytest.fixture
async def empty_database(tmp_path: Path) -> AsyncIterator[str]:
    """A database no migration has touched: a new PostgreSQL database when
    TEST_DATABASE_URL names a server, else a SQLite path in the container's /data."""
    base = os.environ.get("TEST_DATABASE_URL") or ""
    if not base.startswith("postgresql"):
        yield f"sqlite+aiosqlite:///{tmp_path / 'data' / 'oneai.db'}"
        return
    name = f"oneai_docker_{uuid.uuid4().hex[:10]}"
    admin = null_pool_engine(
        make_url(base).set(database="test").render_as_string(hide_password=False)
    )
    async with admin.connect() as conn:
        await conn.execution_options(isolation_level="AUTOCOMMIT")
        await conn.execute(text(f'CREATE DATABASE "{name}"'))
    try:
        yield make_url(base).set(database=name).render_as_string(hide_password=False)
    finally:
        async with admin.connect() as conn:
            await conn.execution_options(isolation_level="AUTOCOMMIT")
            await conn.execute(text(f'DROP DATABASE IF EXISTS "{name}" WITH (FORCE)'))
        await admin.dispose()


async def test_containers_starting_together_migrate_once(empty_database: str) -> None:
    """Each replica runs `oneai migrate` at start; on one PostgreSQL they take turns."""
    if not empty_database.startswith("postgresql"):
        pytest.skip("one SQLite file is never shared by several containers")
    processes = [
        await asyncio.create_subprocess_exec(
            sys.executable,
            "-m",
            "bot",
            "migrate",
            env=clean_env(DATABASE_URL=empty_database),
            stdout=asyncio.subprocess.PIPE,
            stderr=asyncio.subprocess.STDOUT,
        )
        for _ in range(3)
    ]
    results = await asyncio.gather(*(p.communicate() for p in processes))
    for process, (output, _) in zip(processes, results, strict=True):
        assert process.returncode == 0, output.decode(errors="replace")


@pytest.fixture(scope="module")
def image_venv(tmp_path_factory: pytest.TempPathFactory) -> Iterator[Path]:
    """The build stage run here: its COPY lines into a fresh directory, then its RUN
    lines with the virtualenv placed in a temporary directory instead of /opt/oneai."""
    stage = dockerfile_stages()["build"]
    root = tmp_path_factory.mktemp("image")
    src = root / "src"
    src.mkdir()
    copy_like_the_builder(stage, src)
    # `python` in the Dockerfile is the image's Python 3.11: here, this one.
    bindir = root / "bin"
    bindir.mkdir()
    (bindir / "python").symlink_to(sys.executable)
    venv = root / "opt-oneai"
    env = _process_env(**{**stage.env(), "VIRTUAL_ENV": str(venv)})
    env["PATH"] = f"{bindir}{os.pathsep}{os.environ.get('PATH', '')}"
    for command in stage.args("RUN"):
        result = subprocess.run(
            ["/bin/sh", "-c", command],
            cwd=src,
            env=env,
            capture_output=True,
            text=True,
            check=False,
        )
        assert result.returncode == 0, f"{command}\n{result.stdout}\n{result.stderr}"
    # The runtime stage gets /opt/oneai and nothing of /src.
    shutil.rmtree(src)
    yield venv


async def _forget_seen_updates(url: str) -> None:
    from core.redis_client import connect

    redis = connect(url)
    try:
        keys = [key async for key in redis.scan_iter(match="oneai:seen:*")]
        if keys:
            await redis.delete(*keys)
    finally:
        await redis.aclose()


async def test_image_migrates_then_answers_from_the_installed_package(
    image_venv: Path, empty_database: str, tmp_path: Path
) -> None:
    data = tmp_path / "data"  # the container's WORKDIR and volume
    data.mkdir(exist_ok=True)
    runtime = dockerfile_stages()["runtime"].env()
    port = free_port()
    # The image's environment, with its absolute paths moved to this machine's.
    env = _process_env(
        **{
            **runtime,
            "VIRTUAL_ENV": str(image_venv),
            "PATH": f"{image_venv / 'bin'}{os.pathsep}{os.environ.get('PATH', '')}",
            "DATABASE_URL": empty_database,
            "MODEL_CATALOG_CACHE_FILE": str(data / "models-cache.json"),
            "MODEL_CATALOG_REFRESH_HOURS": "0",
            "HTTP_HOST": "127.0.0.1",
            "HTTP_PORT": str(port),
        }
    )
    if os.environ.get("TEST_REDIS_URL"):
        env["REDIS_URL"] = os.environ["TEST_REDIS_URL"]
        # Every fake Bot API numbers its updates from the same id for the same bot
        # id: what earlier tests' bots saw must not make this one's look repeated.
        await _forget_seen_updates(os.environ["TEST_REDIS_URL"])
    # Nothing of the source tree is importable: the package comes from the venv.
    probe = await asyncio.to_thread(
        subprocess.run,
        [str(image_venv / "bin" / "python"), "-c", "import bot, migrations; print(bot.__file__)"],
        cwd=data,
        env=env,
        capture_output=True,
        text=True,
        check=True,
    )
    assert Path(probe.stdout.strip()).is_relative_to(image_venv), probe.stdout

    async with FakeTelegram() as tg, FakeLLM(default=Reply(text=None)) as llm:
        tg.user(42, first_name="Op")
        env.update(TELEGRAM_BOT_TOKEN=tg.token, TELEGRAM_API_URL=tg.url, LLM_BASE_URL=llm.base_url)
        entrypoint_args = json.loads(dockerfile_stages()["runtime"].args("CMD")[0])
        process = await asyncio.create_subprocess_exec(
            "/bin/sh",
            str(ENTRYPOINT),
            *entrypoint_args,
            cwd=data,
            env=env,
            stdout=asyncio.subprocess.PIPE,
            stderr=asyncio.subprocess.STDOUT,
        )
        bot = BotProcess(process, port)
        try:
            try:
                await tg.wait_for(lambda: tg.waiting_pollers > 0, timeout=60)
                tg.send_text(42, "Hello from the image")
                await tg.wait_for(
                    lambda: any(
                        m.text == "Echo: Hello from the image"
                        for m in tg.messages(42, from_bot=True)
                    ),
                    timeout=30,
                )
            except TimeoutError:
                raise AssertionError(f"no answer; the bot said:\n{bot.output}") from None
            health = await asyncio.to_thread(
                subprocess.run,
                healthcheck_command(),
                cwd=data,
                env=env,
                capture_output=True,
                text=True,
                check=False,
            )
            bot.terminate()
            assert await bot.wait() == 0, bot.output
        finally:
            if process.returncode is None:
                process.kill()
                await process.wait()
    assert "database is up to date" in bot.output, bot.output
    assert "Traceback" not in bot.output, bot.output
    assert health.returncode == 0, health.stderr
