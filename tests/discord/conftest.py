"""The real discord.py client, built by `build_client`, against simcord's
in-memory Discord; the core services on the test database and the fake LLM over
real HTTP."""

from __future__ import annotations

import asyncio
from collections.abc import AsyncIterator, Callable
from dataclasses import dataclass
from typing import Any

import discord
import httpcore._backends.anyio as anyio_backend
import pytest
import simcord
from simcord.env import Env

from bot.discord.factory import build_client
from core.config import DiscordSettings
from core.services import Services
from tests.fakes.llm_server import FakeLLM
from tests.support.wait import until

EDIT_INTERVAL = 0.2
SETTLE_TIMEOUT = 30


@dataclass
class Harness:
    env: Env
    services: Services
    llm: FakeLLM

    def requests(self, method: str, path: str = "") -> list[Any]:
        return [r for r in self.env.http_requests if r.method == method and path in str(r.path)]

    async def quiet(self, within: float = 15.0, still: float = 0.6) -> None:
        """Until the bot's answers are done and the REST log stopped growing."""
        client: Any = self.env.bot
        seen = [-1, 0.0]
        loop = asyncio.get_running_loop()

        def calm() -> bool:
            count = len(self.env.http_requests)
            now = loop.time()
            if count != seen[0]:
                seen[0], seen[1] = count, now
                return False
            return client.answers.flow.idle() and now - seen[1] >= still

        await until(calm, within)


def _declare_llm_reads(env: Env, monkeypatch: pytest.MonkeyPatch) -> None:
    """The LLM stream is a socket simcord does not know: declared as an external
    wait, so the bot's own timers (edit pacing) keep running beside it."""
    original: Callable[..., Any] = anyio_backend.AnyIOStream.read

    async def read(self: Any, max_bytes: int, timeout: float | None = None) -> bytes:  # noqa: ASYNC109
        try:
            return await env.external_wait(  # type: ignore[no-any-return]
                original(self, max_bytes, timeout), reason="LLM stream"
            )
        except simcord.SetupError:
            return await original(self, max_bytes, timeout)  # type: ignore[no-any-return]

    monkeypatch.setattr(anyio_backend.AnyIOStream, "read", read)


@pytest.fixture
def simcord_bot(services: Services) -> discord.Client:
    services.settings.__dict__["discord"] = DiscordSettings(
        edit_interval=EDIT_INTERVAL, global_edits_per_second=200.0
    )
    return build_client(services)


@pytest.fixture
async def simcord_env(simcord_bot: discord.Client) -> AsyncIterator[Env]:
    """simcord's own fixture (its plugin selects the clock in the test's context),
    with room for answers that stream for a while."""
    # simcord has no GET /gateway/bot: without DISCORD_SHARD_COUNT it stands in for
    # the count Discord recommends to a small bot, 1.
    shard_count = None if simcord_bot.shard_count is not None else 1
    env = Env(simcord_bot, settle_timeout=SETTLE_TIMEOUT, shard_count=shard_count)
    await env.start()
    try:
        yield env
    finally:
        await env.shutdown()
        if env.check_errors:
            env._raise_errors_since(env._errors_acknowledged)


@pytest.fixture
async def discord_bot(
    simcord_env: Env, services: Services, fake_llm: FakeLLM, monkeypatch: pytest.MonkeyPatch
) -> Harness:
    _declare_llm_reads(simcord_env, monkeypatch)
    return Harness(simcord_env, services, fake_llm)
