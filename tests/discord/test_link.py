"""/link both ways between Discord and Telegram: one person, one quota."""

from __future__ import annotations

import re

from core.accounts import PlatformProfile
from core.tiers import Tier
from tests.discord.conftest import Harness
from tests.fakes.llm_server import Reply
from tests.support.chat import finish

CODE = re.compile(r"`([A-Z0-9]{4}-[A-Z0-9]{4})`")


async def _used(bot: Harness, user_id: int) -> int:
    report = await bot.services.quotas.report(user_id, Tier.FREE)
    return sum(status.used for status in report)


async def test_a_discord_code_entered_on_telegram_joins_the_accounts(discord_bot: Harness) -> None:
    env, services = discord_bot.env, discord_bot.services
    alice = env.create_user("alice")
    shown = await alice.slash("link")
    assert shown.ephemeral and shown.response is not None
    match = CODE.search(shown.response.content)
    assert match, shown.response.content
    telegram = await services.accounts.upsert(PlatformProfile("telegram", "5550001"))
    result = await services.linking.redeem(telegram.id, "telegram", match.group(1))
    assert set(result.platforms) == {"telegram", "discord"}
    # One quota, counted from both sides.
    discord_bot.llm.script(Reply(text="from Discord"), Reply(text="from Telegram"))
    await alice.send_dm("hello from discord")
    await discord_bot.quiet()
    user = await services.accounts.by_identity("discord", str(alice.id))
    assert user is not None and user.id == result.user_id
    assert await _used(discord_bot, user.id) == 1
    await finish(await services.chat.send(user.id, "hello from telegram", platform="telegram"))
    assert await _used(discord_bot, user.id) == 2
    # /link again lists both accounts and offers to unlink Telegram.
    again = await alice.slash("link")
    assert again.response is not None
    assert "Telegram" in again.response.content
    ids = [c["custom_id"] for row in again.response.components for c in row["components"]]
    assert any(str(i).startswith("oneai:ul:telegram:") for i in ids), ids


async def test_a_telegram_code_entered_on_discord_joins_the_accounts(discord_bot: Harness) -> None:
    env, services = discord_bot.env, discord_bot.services
    telegram = await services.accounts.upsert(PlatformProfile("telegram", "5550002"))
    issued = await services.linking.issue_code(telegram.id, "telegram")
    bob = env.create_user("bob")
    done = await bob.slash("link", code=issued.code.lower().replace("-", " "))
    assert done.response is not None and "Telegram" in done.response.content
    user = await services.accounts.by_identity("discord", str(bob.id))
    assert user is not None and user.id == telegram.id
    wrong = await bob.slash("link", code="AAAA-BBBB")
    assert wrong.response is not None and wrong.ephemeral
