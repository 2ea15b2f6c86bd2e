"""A private deployment on Discord under simcord (ACCESS_MODE=invite): a refused
person hears "this bot is private" once a day and never reaches the model, an
allowlisted one is answered, and `/start CODE` with an admin's invite lets a
person in (a one-use invite then is used up for the next)."""

from __future__ import annotations

import re
from typing import Any

import discord
from simcord.results import InteractionResult, ResponseMessage
from sqlalchemy import func, select

from core.admin import allowlist
from core.admin.access import CLI_ACTOR
from core.config import AccessSettings
from core.db.models import AccessRedemption, AuditLog, ChatMessage, Conversation
from core.i18n import t
from tests.discord.conftest import Harness
from tests.fakes.llm_server import Reply

PRIVATE = t("en", "access.private")
CODE = re.compile(r"`/start ([A-Za-z0-9_-]+)`")


def private_mode(bot: Harness) -> None:
    """ACCESS_MODE=invite (read on every check)."""
    bot.services.settings.__dict__["access"] = AccessSettings(mode="invite")


def make_admin(bot: Harness, account: Any) -> None:
    settings = bot.services.settings
    current = settings.discord
    settings.__dict__["discord"] = current.model_copy(
        update={"admin_ids": [*current.admin_ids, account.id]}
    )


def from_bot(history: list[discord.Message]) -> list[str]:
    return [m.content for m in sorted(history, key=lambda m: m.id) if m.author.bot]


def shown(result: InteractionResult) -> ResponseMessage:
    if result.followups:
        return result.followups[-1]
    assert result.response is not None, result
    return result.response


async def count(bot: Harness, model: type[object]) -> int:
    async with bot.services.db.read() as session:
        return int(await session.scalar(select(func.count()).select_from(model)) or 0)


async def test_a_refused_person_hears_once_a_day_and_an_allowlisted_one_is_answered(
    discord_bot: Harness,
) -> None:
    private_mode(discord_bot)
    env = discord_bot.env
    alice, bob = env.create_user("alice"), env.create_user("bob")
    await allowlist.allow(discord_bot.services, CLI_ACTOR, f"discord:{bob.id}")

    for text in ("hi", "hello?", "anyone?"):
        await alice.send_dm(text)
    await discord_bot.quiet()
    assert from_bot(alice.dm_channel.history()) == [PRIVATE]
    # A slash command must be answered: they alone see why.
    for name in ("help", "chat", "usage"):
        options = {"prompt": "hi"} if name == "chat" else {}
        result = await alice.slash(name, **options)
        assert result.ephemeral and shown(result).content == PRIVATE, name
    assert shown(await alice.slash("start")).content == PRIVATE
    assert discord_bot.llm.requests_count == 0
    assert await count(discord_bot, Conversation) == 0
    assert await count(discord_bot, ChatMessage) == 0

    discord_bot.llm.script(Reply(text="Hi Bob."))
    await bob.send_dm("hi")
    await discord_bot.quiet()
    assert from_bot(bob.dm_channel.history()) == ["Hi Bob."]
    assert discord_bot.llm.requests_count == 1


async def test_start_with_an_invite_lets_a_person_in_once(discord_bot: Harness) -> None:
    private_mode(discord_bot)
    env = discord_bot.env
    boss, alice, carol = env.create_user("boss"), env.create_user("alice"), env.create_user("carol")
    make_admin(discord_bot, boss)

    made = await boss.slash("admin invite", uses=1, days=3)
    assert made.ephemeral
    found = CODE.search(shown(made).content)
    assert found is not None, shown(made).content
    code = found.group(1)
    async with discord_bot.services.db.read() as session:
        assert await session.scalar(
            select(func.count()).select_from(AuditLog).where(AuditLog.action == "access_invite")
        )

    wrong = await alice.slash("start", code="NoSuchInviteCode")
    assert shown(wrong).content == t("en", "error.access_invite_unknown")
    welcome = await alice.slash("start", code=code)
    assert welcome.ephemeral
    assert shown(welcome).content.startswith(t("en", "access.welcome"))
    discord_bot.llm.script(Reply(text="Welcome in."))
    await alice.send_dm("hello")
    await discord_bot.quiet()
    assert from_bot(alice.dm_channel.history()) == ["Welcome in."]

    used_up = await carol.slash("start", code=code)
    assert shown(used_up).content == t("en", "error.access_invite_used_up")
    await carol.send_dm("let me in")
    await discord_bot.quiet()
    assert from_bot(carol.dm_channel.history()) == [PRIVATE]
    assert discord_bot.llm.requests_count == 1
    assert await count(discord_bot, AccessRedemption) == 1


async def test_an_admin_edits_the_list_with_slash_commands(discord_bot: Harness) -> None:
    private_mode(discord_bot)
    env = discord_bot.env
    boss, alice = env.create_user("boss"), env.create_user("alice")
    make_admin(discord_bot, boss)

    added = await boss.slash("admin allow", entry=f"<@{alice.id}>")
    assert shown(added).content == t("en", "admin.done.allow", entry=f"discord:{alice.id}")
    discord_bot.llm.script(Reply(text="Yes?"))
    await alice.send_dm("am I in?")
    await discord_bot.quiet()
    assert from_bot(alice.dm_channel.history()) == ["Yes?"]

    listing = await boss.slash("admin allowlist")
    assert f"discord:{alice.id}" in shown(listing).content
    removed = await boss.slash("admin deny", entry=f"discord:{alice.id}")
    assert shown(removed).content == t("en", "admin.done.deny", entry=f"discord:{alice.id}")
    await alice.send_dm("still in?")
    await discord_bot.quiet()
    assert from_bot(alice.dm_channel.history()) == ["Yes?", PRIVATE]
    assert discord_bot.llm.requests_count == 1
