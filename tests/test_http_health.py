"""/health over HTTP: up or down, and nothing else for whoever asks; the reason
goes to the log."""

from __future__ import annotations

import logging
from collections.abc import AsyncIterator, Awaitable, Callable
from pathlib import Path

import aiohttp
import pytest
from aiohttp import web

from bot.http import build_app
from bot.http_server import serve_http
from core.config import HttpSettings
from core.db.engine import Database
from core.llm.client import LLMClient
from core.services import Services
from tests.conftest import make_settings
from tests.fakes.llm_server import FakeLLM
from tests.support.process import free_port

Get = Callable[[Services, str], Awaitable[tuple[int, str]]]


@pytest.fixture
async def get() -> AsyncIterator[Get]:
    """GET a path of `oneai run`'s HTTP server for these services."""
    runners: list[web.AppRunner] = []

    async def fetch(services: Services, path: str) -> tuple[int, str]:
        runner = web.AppRunner(build_app(services))
        runners.append(runner)
        port = free_port()
        await serve_http(runner, HttpSettings(host="127.0.0.1", port=port))
        async with (
            aiohttp.ClientSession() as http,
            http.get(f"http://127.0.0.1:{port}{path}") as response,
        ):
            return response.status, await response.text()

    yield fetch
    for runner in runners:
        await runner.cleanup()


async def test_health_says_ok_and_nothing_else(services: Services, get: Get) -> None:
    status, body = await get(services, "/health")
    assert (status, body) == (200, '{"status": "ok"}')
    # /metrics still answers, with the server's connections.
    status, metrics = await get(services, "/metrics")
    assert status == 200
    assert "oneai_generations_running 0" in metrics
    assert "oneai_http_connections_open 1" in metrics


@pytest.mark.parametrize("where", ["postgres-closed-port", "sqlite-path-is-a-directory"])
async def test_health_without_the_database_says_fail_and_logs_why(
    fake_llm: FakeLLM,
    get: Get,
    tmp_path: Path,
    caplog: pytest.LogCaptureFixture,
    where: str,
) -> None:
    if where == "postgres-closed-port":
        url = f"postgresql+asyncpg://oneai:secret@127.0.0.1:{free_port()}/oneai"
    else:
        url = f"sqlite+aiosqlite:///{tmp_path}"
    db = Database(url)
    llm = LLMClient(fake_llm.base_url, "test-key", max_retries=0)
    services = Services.build(make_settings(url, fake_llm.base_url), llm=llm, db=db)
    try:
        with caplog.at_level(logging.WARNING, logger="bot.http"):
            status, body = await get(services, "/health")
    finally:
        await services.close()
    assert (status, body) == (503, '{"status": "fail"}')
    (record,) = [r for r in caplog.records if r.name == "bot.http"]
    assert record.levelno == logging.WARNING
    assert "database" in record.getMessage()
    assert ("refused" if where.startswith("postgres") else "unable to open") in (
        record.getMessage().lower()
    )
