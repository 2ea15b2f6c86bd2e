"""/healthz, /readyz and /metrics over HTTP, on the application `oneai run` serves."""

from __future__ import annotations

import json
from collections.abc import AsyncIterator, Awaitable, Callable
from dataclasses import dataclass

import aiohttp
import pytest
from aiohttp import web
from prometheus_client.parser import text_string_to_metric_families

from bot.http import PLATFORMS_KEY, build_app
from bot.http_server import serve_http
from core.config import DatabaseSettings, HttpSettings, LLMSettings, RedisSettings, Settings
from core.services import Services
from tests.support.process import free_port


@dataclass
class FakePlatform:
    name: str
    connected: bool


Get = Callable[[web.Application, str], Awaitable[tuple[int, str, str]]]


@pytest.fixture
async def get() -> AsyncIterator[Get]:
    """GET a path of an application served as `oneai run` serves it."""
    runners: list[web.AppRunner] = []

    async def fetch(app: web.Application, path: str) -> tuple[int, str, str]:
        runner = web.AppRunner(app)
        runners.append(runner)
        port = free_port()
        await serve_http(runner, HttpSettings(host="127.0.0.1", port=port))
        async with (
            aiohttp.ClientSession() as http,
            http.get(f"http://127.0.0.1:{port}{path}") as response,
        ):
            return response.status, response.headers["Content-Type"], await response.text()

    yield fetch
    for runner in runners:
        await runner.cleanup()


async def test_healthz_answers_without_touching_anything(services: Services, get: Get) -> None:
    app = build_app(services)
    await services.db.engine.dispose()  # even with no database connection at hand
    status, _, body = await get(app, "/healthz")
    assert (status, json.loads(body)) == (200, {"status": "ok"})


async def test_readyz_names_a_platform_that_is_not_connected(services: Services, get: Get) -> None:
    app = build_app(services)
    telegram = FakePlatform("telegram", connected=False)
    app[PLATFORMS_KEY].extend([telegram, FakePlatform("discord", connected=True)])
    status, _, body = await get(app, "/readyz")
    assert (status, json.loads(body)) == (503, {"status": "fail", "failing": ["telegram"]})
    # /health says the same, naming nothing.
    app = build_app(services)
    app[PLATFORMS_KEY].append(telegram)
    status, _, body = await get(app, "/health")
    assert (status, json.loads(body)) == (503, {"status": "fail"})
    telegram.connected = True
    app = build_app(services)
    app[PLATFORMS_KEY].append(telegram)
    status, _, body = await get(app, "/readyz")
    assert (status, json.loads(body)) == (200, {"status": "ok"})


async def test_readyz_names_redis_when_it_does_not_answer(
    services: Services, get: Get, caplog: pytest.LogCaptureFixture
) -> None:
    settings = Settings(
        db=DatabaseSettings(database_url=services.db.url),
        llm=LLMSettings(base_url="http://127.0.0.1:9", catalog_refresh_hours=0),
        redis=RedisSettings(redis_url=f"redis://:pass-word-1@127.0.0.1:{free_port()}/0"),
    )
    services.settings = settings
    status, _, body = await get(build_app(services), "/readyz")
    assert (status, json.loads(body)) == (503, {"status": "fail", "failing": ["redis"]})
    assert any("redis" in r.getMessage() for r in caplog.records if r.name == "bot.http")


def _samples(text: str) -> dict[tuple[str, tuple[tuple[str, str], ...]], float]:
    return {
        (s.name, tuple(sorted(s.labels.items()))): s.value
        for family in text_string_to_metric_families(text)
        for s in family.samples
    }


async def test_metrics_in_prometheus_format_for_several_apps(services: Services, get: Get) -> None:
    status, content_type, _ = await get(build_app(services), "/metrics")
    assert status == 200
    assert content_type.startswith("text/plain; version=")
    # A second application in the same process registers nothing twice.
    status, _, text = await get(build_app(services), "/metrics")
    assert status == 200
    samples = _samples(text)
    assert samples[("oneai_outbox_backlog", ())] == 0
    assert samples[("oneai_generations_running", ())] == 0
    assert samples[("oneai_http_connections_open", ())] == 1
    assert ("oneai_start_time_seconds", ()) in samples
    for family in (
        "oneai_updates",
        "oneai_answers",
        "oneai_answer_first_token_seconds",
        "oneai_answer_final_seconds",
        "oneai_llm_tokens",
        "oneai_llm_errors",
        "oneai_platform_calls",
        "oneai_platform_rate_limited",
        "oneai_platform_retry_after_seconds",
        "oneai_quota_refusals",
        "oneai_payments",
        "oneai_webhook_events",
        "oneai_active_streams",
        "oneai_scheduler_job_runs",
    ):
        assert f"# TYPE {family}" in text, family
