"""Discord traffic as the metrics and the log context see it."""

from __future__ import annotations

import logging
from typing import Any

import discord
from discord.http import Route

from bot.discord.observe import instrument
from core import logs
from core.metrics import REGISTRY


def value(name: str, **labels: str) -> float:
    return REGISTRY.get_sample_value(name, labels) or 0.0


async def test_events_set_the_log_context_and_calls_are_counted() -> None:
    client = discord.Client(intents=discord.Intents.none())
    seen: dict[str, Any] = {}

    def parse(_data: dict[str, Any]) -> None:
        seen.update(
            platform=logs.PLATFORM.get(), update=logs.UPDATE_ID.get(), user=logs.USER_ID.get()
        )

    async def request(route: Route, **_kwargs: Any) -> dict[str, Any]:
        return {}

    client._connection.parsers["INTERACTION_CREATE"] = parse
    client.http.request = request  # type: ignore[method-assign]
    instrument(client)
    interactions = value("oneai_updates_total", platform="discord", kind="interaction")
    client._connection.parsers["INTERACTION_CREATE"]({"id": "9", "member": {"user": {"id": "77"}}})
    assert seen == {"platform": "discord", "update": "9", "user": 77}
    assert logs.PLATFORM.get() is None  # only while the event is handled
    assert value("oneai_updates_total", platform="discord", kind="interaction") == interactions + 1

    labels = {"platform": "discord", "method": "POST /channels/{channel_id}/messages"}
    calls = value("oneai_platform_calls_total", **labels, status="ok")
    await client.http.request(Route("POST", "/channels/{channel_id}/messages", channel_id=1))
    assert value("oneai_platform_calls_total", **labels, status="ok") == calls + 1


def test_the_429s_discord_py_waits_out_are_counted() -> None:
    instrument(discord.Client(intents=discord.Intents.none()))
    limited = value("oneai_platform_rate_limited_total", platform="discord")
    waited = value("oneai_platform_retry_after_seconds_total", platform="discord")
    logging.getLogger("discord.http").warning(
        "We are being rate limited. %s %s responded with 429. Retrying in %.2f seconds.",
        "PATCH",
        "https://discord.com/api/v10/channels/1/messages/2",
        1.5,
    )
    assert value("oneai_platform_rate_limited_total", platform="discord") == limited + 1
    assert value("oneai_platform_retry_after_seconds_total", platform="discord") == waited + 1.5
