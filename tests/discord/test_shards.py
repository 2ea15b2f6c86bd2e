"""Discord sharded, one shard range per process (DISCORD_SHARD_COUNT, DISCORD_SHARD_IDS):
the real client as `oneai run` builds it, under simcord's sharded gateway, which
routes DMs to shard 0 and a server's events to the shard its id belongs to."""

from __future__ import annotations

import discord
import pytest

from bot.discord.runner import DiscordPlatform
from core.config import DiscordSettings
from core.services import Services
from tests.discord.conftest import EDIT_INTERVAL, Harness
from tests.discord.test_answers import from_bot
from tests.fakes.llm_server import Reply
from tests.support.wait import until

# The shape of a bot token (the platform needs one); simcord logs in with its own.
TOKEN = "A" * 24 + ".Bbbbbb." + "C" * 27
SKU = 1_300_000_000_000_000_001


@pytest.fixture
def shards(request: pytest.FixtureRequest) -> tuple[int, list[int]]:
    """(DISCORD_SHARD_COUNT, DISCORD_SHARD_IDS); tests pick theirs with `indirect`."""
    return getattr(request, "param", (2, [0]))


@pytest.fixture
def platform(services: Services, shards: tuple[int, list[int]]) -> DiscordPlatform:
    count, ids = shards
    services.settings.__dict__["discord"] = DiscordSettings(
        bot_token=TOKEN,
        edit_interval=EDIT_INTERVAL,
        global_edits_per_second=200.0,
        shard_count=count,
        shard_ids=ids,
        sku_pro=SKU,
    )
    return DiscordPlatform(services)


@pytest.fixture
def simcord_bot(platform: DiscordPlatform) -> discord.Client:
    return platform.client


def _command_syncs(bot: Harness) -> list[object]:
    return [r for r in bot.requests("PUT") if str(r.path).endswith("/commands")]


def _entitlement_listings(bot: Harness) -> list[object]:
    return [r for r in bot.requests("GET") if str(r.path).endswith("/entitlements")]


async def test_the_process_with_shard_0_of_2_answers_a_dm(
    discord_bot: Harness, platform: DiscordPlatform
) -> None:
    client = platform.client
    assert (client.shard_count, client.shard_ids) == (2, [0])
    assert sorted(client.shards) == [0]
    alice = discord_bot.env.create_user("alice")
    discord_bot.llm.script(Reply(text="Hello from shard 0."))
    await alice.send_dm("hi bot")
    await discord_bot.quiet()
    assert [m.content for m in from_bot(alice.dm_channel.history())] == ["Hello from shard 0."]
    # The commands and entitlements are the application's: the process that runs
    # shard 0 syncs the one and lists the other.
    assert _command_syncs(discord_bot)
    assert _entitlement_listings(discord_bot)


@pytest.mark.parametrize("shards", [(2, [1])], indirect=True)
async def test_a_process_without_shard_0_gets_no_dms_but_serves_its_servers(
    discord_bot: Harness, platform: DiscordPlatform
) -> None:
    env = discord_bot.env
    assert sorted(platform.client.shards) == [1]
    assert platform.connected
    alice = env.create_user("alice")
    await alice.send_dm("hi bot")
    await discord_bot.quiet()
    assert discord_bot.llm.requests_count == 0
    assert from_bot(alice.dm_channel.history()) == []
    me = env.bot.user
    assert me is not None
    discord_bot.llm.script(Reply(text="Answered on shard 1."))
    answered: dict[int, list[str]] = {}
    for shard_id in (0, 1):
        guild = env.create_guild(f"on shard {shard_id}", shard_id=shard_id)
        channel = guild.create_text_channel("general")
        member = guild.add_member(env.create_user(f"bob{shard_id}"))
        await member.send(channel, f"<@{me.id}> are you there?")
        await discord_bot.quiet()
        answered[shard_id] = [m.content for m in from_bot(channel.history())]
    # Shard 0's server is another process's; shard 1's is this one's.
    assert answered == {0: [], 1: ["Answered on shard 1."]}
    assert discord_bot.llm.requests_count == 1
    assert not _command_syncs(discord_bot)
    assert not _entitlement_listings(discord_bot)


@pytest.mark.parametrize("shards", [(3, [0, 2])], indirect=True)
async def test_readiness_needs_every_shard_of_the_process(
    discord_bot: Harness, platform: DiscordPlatform
) -> None:
    client = platform.client
    assert sorted(client.shards) == [0, 2]
    await until(lambda: platform.connected)
    # One of this process's shards drops: not ready, though the other is still up.
    await client.shards[2].disconnect()
    await until(lambda: not platform.connected)
    assert not client.shards[0].is_closed()
    assert client.is_ready()  # discord.py's first ready stays set: not enough alone
    # It comes back (a new session, its servers again): ready again.
    await client.shards[2].reconnect()
    await until(lambda: platform.connected)
    # Closed to new events while stopping: not ready, whatever the shards say.
    await platform.stop_intake()
    assert not platform.connected
