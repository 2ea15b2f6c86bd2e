"""Discord premium: an entitlement to DISCORD_SKU_PRO gives the pro plan once,
however often Discord delivers it; revoking it ends the plan."""

from __future__ import annotations

import discord
import pytest
from sqlalchemy import func, select

from bot.discord.factory import build_client
from core.config import DiscordSettings
from core.db.models import OutboxMessage, SubscriptionHistory
from core.services import Services
from tests.discord.conftest import EDIT_INTERVAL, Harness

SKU = 1_300_000_000_000_000_001


@pytest.fixture
def simcord_bot(services: Services) -> discord.Client:
    services.settings.__dict__["discord"] = DiscordSettings(
        edit_interval=EDIT_INTERVAL, global_edits_per_second=200.0, sku_pro=SKU
    )
    return build_client(services)


async def _tier(bot: Harness, account: int) -> str:
    user = await bot.services.accounts.by_identity("discord", str(account))
    assert user is not None
    return user.tier


async def test_an_entitlement_delivered_twice_grants_the_plan_once(discord_bot: Harness) -> None:
    env = discord_bot.env
    sku = env.create_sku("OneAI Pro", id=SKU)
    alice = env.create_user("alice")
    entitlement = await env.grant_entitlement(sku, user=alice)
    await entitlement.replay_create()
    await discord_bot.quiet()
    assert await _tier(discord_bot, alice.id) == "pro"
    async with discord_bot.services.db.read() as session:
        history = await session.scalar(select(func.count()).select_from(SubscriptionHistory))
        notices = await session.scalar(select(func.count()).select_from(OutboxMessage))
    assert history == 1
    assert notices == 1
    # Deleted (refunded): the plan ends at once.
    await entitlement.revoke()
    await discord_bot.quiet()
    assert await _tier(discord_bot, alice.id) == "free"


async def test_an_entitlement_for_another_sku_changes_nothing(discord_bot: Harness) -> None:
    env = discord_bot.env
    other = env.create_sku("Something else")
    alice = env.create_user("alice")
    await env.grant_entitlement(other, user=alice)
    await discord_bot.quiet()
    user = await discord_bot.services.accounts.by_identity("discord", str(alice.id))
    assert user is None or user.tier == "free"
