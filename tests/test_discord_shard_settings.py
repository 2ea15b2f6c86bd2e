"""Discord shards: DISCORD_SHARD_COUNT and DISCORD_SHARD_IDS parsed and checked before
anything starts, handed to discord.py only when set, and named at start-up."""

from __future__ import annotations

from pathlib import Path

import pytest
from pydantic import ValidationError

from bot.discord.client import OneAIBot, shard_options
from bot.discord.factory import build_client
from bot.startup import summary
from core.config import ConfigError, DiscordSettings, Settings, TelegramSettings, load_settings
from core.services import Services
from tests.test_startup_errors import oneai

# The shape of a bot token; nothing here logs in.
TOKEN = "A" * 24 + ".Bbbbbb." + "C" * 27


def test_unset_means_discords_count_and_every_shard(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.delenv("DISCORD_SHARD_COUNT", raising=False)
    monkeypatch.delenv("DISCORD_SHARD_IDS", raising=False)
    settings = DiscordSettings()
    assert (settings.shard_count, settings.shard_ids) == (None, [])
    assert shard_options(settings) == {}


def test_ids_are_comma_separated_and_in_order(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("DISCORD_SHARD_COUNT", "8")
    monkeypatch.setenv("DISCORD_SHARD_IDS", "5, 4,6")
    settings = DiscordSettings()
    assert (settings.shard_count, settings.shard_ids) == (8, [4, 5, 6])
    assert shard_options(settings) == {"shard_count": 8, "shard_ids": [4, 5, 6]}
    # A count alone: this process runs all of them.
    monkeypatch.setenv("DISCORD_SHARD_IDS", "")
    assert shard_options(DiscordSettings()) == {"shard_count": 8}


@pytest.mark.parametrize(
    ("env", "expected"),
    [
        (
            {"DISCORD_SHARD_IDS": "0,1"},
            "configuration error: DISCORD_SHARD_COUNT must be set when DISCORD_SHARD_IDS is",
        ),
        (
            {"DISCORD_SHARD_COUNT": "2", "DISCORD_SHARD_IDS": "0,2,5"},
            "configuration error: DISCORD_SHARD_IDS: 2, 5 not between 0 and 1 "
            "(DISCORD_SHARD_COUNT=2)",
        ),
        (
            {"DISCORD_SHARD_COUNT": "4", "DISCORD_SHARD_IDS": "1,3,1"},
            "configuration error: DISCORD_SHARD_IDS: 1 given twice",
        ),
        (
            {"DISCORD_SHARD_COUNT": "0"},
            "configuration error: DISCORD_SHARD_COUNT: Input should be greater than or equal to 1",
        ),
        (
            {"DISCORD_SHARD_COUNT": "2", "DISCORD_SHARD_IDS": "first"},
            "configuration error: DISCORD_SHARD_IDS: Input should be a valid integer",
        ),
    ],
    ids=["ids-without-count", "out-of-range", "twice", "zero-count", "not-a-number"],
)
def test_bad_shard_settings_name_the_variable(
    monkeypatch: pytest.MonkeyPatch, env: dict[str, str], expected: str
) -> None:
    for name in ("DISCORD_SHARD_COUNT", "DISCORD_SHARD_IDS"):
        monkeypatch.delenv(name, raising=False)
    for name, value in env.items():
        monkeypatch.setenv(name, value)
    with pytest.raises(ConfigError) as info:
        load_settings()
    assert str(info.value).startswith(expected), str(info.value)


def test_the_same_checks_in_code() -> None:
    with pytest.raises(ValidationError, match="DISCORD_SHARD_COUNT must be set"):
        DiscordSettings(shard_ids=[0])
    with pytest.raises(ValidationError, match="3 not between 0 and 2"):
        DiscordSettings(shard_count=3, shard_ids=[3])
    assert DiscordSettings(shard_count=3, shard_ids=[2]).shard_ids == [2]


async def test_the_client_carries_the_shards_and_closes_before_it_started(
    services: Services,
) -> None:
    services.settings.__dict__["discord"] = DiscordSettings(shard_count=4, shard_ids=[3, 1])
    client = build_client(services)
    assert isinstance(client, OneAIBot)
    assert (client.shard_count, client.shard_ids) == (4, [1, 3])
    assert client.own_shard_ids() == [1, 3]
    assert not client.runs_shard_zero
    assert not client.shards_connected()  # nothing connected yet
    await client.close()

    services.settings.__dict__["discord"] = DiscordSettings()
    client = build_client(services)
    assert isinstance(client, OneAIBot)
    # Discord's recommended count is asked at connect; then every shard runs here.
    assert client.shard_count is None
    assert client.shard_ids is None
    assert client.own_shard_ids() == []
    assert client.runs_shard_zero
    await client.close()


@pytest.mark.parametrize(
    ("count", "ids", "line"),
    [
        (None, [], "platforms: discord"),
        (4, [], "platforms: discord (shards 0-3 of 4)"),
        (4, [0, 1], "platforms: discord (shards 0-1 of 4)"),
        (6, [2, 3, 5], "platforms: discord (shards 2-3, 5 of 6, no DMs)"),
    ],
)
def test_the_start_up_summary_names_this_process_shards(
    monkeypatch: pytest.MonkeyPatch, count: int | None, ids: list[int], line: str
) -> None:
    monkeypatch.delenv("TELEGRAM_BOT_TOKEN", raising=False)
    settings = Settings(
        telegram=TelegramSettings(),
        discord=DiscordSettings(bot_token=TOKEN, shard_count=count, shard_ids=ids),
    )
    assert summary(settings)[0] == line


async def test_run_with_a_shard_outside_the_count_stops_with_one_line(tmp_path: Path) -> None:
    outcome = await oneai(
        "run",
        cwd=tmp_path,
        env={
            "DATABASE_URL": f"sqlite+aiosqlite:///{tmp_path / 'oneai.db'}",
            "DISCORD_BOT_TOKEN": TOKEN,
            "DISCORD_SHARD_COUNT": "2",
            "DISCORD_SHARD_IDS": "1,2",
        },
    )
    line = outcome.stops_naming("DISCORD_SHARD_IDS", TOKEN)
    assert "2 not between 0 and 1 (DISCORD_SHARD_COUNT=2)" in line
