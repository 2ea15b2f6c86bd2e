"""Slash commands on Discord: the same core views as Telegram and the terminal,
drawn as ephemeral messages with select menus and buttons, in DMs and servers."""

from __future__ import annotations

from typing import Any

import discord
import pytest

from bot.discord.factory import build_client
from core.config import DiscordSettings
from core.services import Services
from core.views.usage import usage_report
from tests.discord.conftest import EDIT_INTERVAL, Harness
from tests.fakes.llm_server import Reply

COMMANDS = {
    "chat",
    "new",
    "model",
    "history",
    "export",
    "usage",
    "settings",
    "image",
    "plan",
    "link",
    "help",
    "rename",
    "cancel",
}


def custom_ids(components: list[dict[str, Any]]) -> list[str]:
    return [str(c.get("custom_id", "")) for row in components for c in row["components"]]


def select_options(components: list[dict[str, Any]], prefix: str) -> list[dict[str, Any]]:
    for row in components:
        for component in row["components"]:
            if str(component.get("custom_id", "")).startswith(prefix):
                return list(component["options"])
    raise AssertionError(f"no select {prefix!r}")


async def test_every_command_is_synced_and_works_in_dms(discord_bot: Harness) -> None:
    alice = discord_bot.env.create_user("alice")
    assert set(alice.available_commands()) >= COMMANDS
    shown = await alice.slash("help")
    assert shown.ephemeral and shown.response is not None
    assert "/chat" in shown.response.content


async def test_usage_is_the_core_report(discord_bot: Harness) -> None:
    env, services = discord_bot.env, discord_bot.services
    alice = env.create_user("alice")
    discord_bot.llm.script(Reply(text="one"))
    await alice.send_dm("hello")
    await discord_bot.quiet()
    shown = await alice.slash("usage")
    assert shown.response is not None
    user = await services.accounts.by_identity("discord", str(alice.id))
    assert user is not None
    report = await usage_report(services, user.id, "en")
    assert shown.response.content == report.text
    assert "1/" in shown.response.content


async def test_model_menu_switches_and_refuses_locked_models(discord_bot: Harness) -> None:
    env, services = discord_bot.env, discord_bot.services
    alice = env.create_user("alice")
    shown = await alice.slash("model")
    assert shown.response is not None
    ids = custom_ids(shown.response.components)
    assert ids and all(i.startswith("oneai:m:c:") for i in ids)
    options = [
        (select_id, option)
        for select_id in ids
        for option in select_options(shown.response.components, select_id)
    ]
    free = next((i, o) for i, o in options if "🔒" not in o["label"] and not o.get("default"))
    locked = next((i, o) for i, o in options if "🔒" in o["label"])
    picked = await alice.select(shown.response.message, [free[1]["value"]], custom_id=free[0])
    assert picked.response is not None and "✅" in picked.response.content
    user = await services.accounts.by_identity("discord", str(alice.id))
    assert user is not None
    assert services.catalog.preferred(user.default_model).name in free[1]["label"]
    refused = await alice.select(shown.response.message, [locked[1]["value"]], custom_id=locked[0])
    assert refused.response is not None and refused.ephemeral
    after = await services.accounts.by_identity("discord", str(alice.id))
    assert after is not None and after.default_model == user.default_model


async def test_history_resumes_and_exports_a_conversation(discord_bot: Harness) -> None:
    env, services = discord_bot.env, discord_bot.services
    alice = env.create_user("alice")
    discord_bot.llm.script(Reply(text="About cats."), Reply(text="About dogs."))
    await alice.send_dm("cats please")
    await discord_bot.quiet()
    await alice.slash("new")
    await alice.send_dm("dogs please")
    await discord_bot.quiet()
    shown = await alice.slash("history")
    assert shown.response is not None
    options = select_options(shown.response.components, "oneai:h:o:")
    cats = next(o for o in options if "cats" in o["label"])
    resumed = await alice.select(
        shown.response.message, [cats["value"]], custom_id=f"oneai:h:o:{_uid(shown)}"
    )
    assert resumed.response is not None and "cats please" in resumed.response.content
    user = await services.accounts.by_identity("discord", str(alice.id))
    assert user is not None and user.current_conversation_id is not None
    assert user.current_conversation_id.hex == cats["value"]
    exported = await alice.slash("export")
    assert exported.response is not None
    (attachment,) = exported.response.attachments
    assert attachment.filename.endswith(".md")
    content = (await attachment.read()).decode()
    assert "cats please" in content and "About cats." in content


def _uid(shown: Any) -> str:
    """Our user id, as the components carry it."""
    first = custom_ids(shown.response.components)[0]
    return first.split(":")[3]


async def test_settings_change_the_language(discord_bot: Harness) -> None:
    env = discord_bot.env
    alice = env.create_user("alice")
    shown = await alice.slash("settings")
    assert shown.response is not None
    russian = next(i for i in custom_ids(shown.response.components) if i.endswith(":ru"))
    chosen = await alice.click(shown.response.message, custom_id=russian)
    assert chosen.response is not None
    again = await alice.slash("usage")
    assert again.response is not None and "Тариф" in again.response.content


async def test_new_starts_a_fresh_conversation(discord_bot: Harness) -> None:
    env = discord_bot.env
    alice = env.create_user("alice")
    discord_bot.llm.script(Reply(text="first"), Reply(text="second"))
    await alice.send_dm("one")
    await discord_bot.quiet()
    await alice.slash("new")
    await alice.send_dm("two")
    await discord_bot.quiet()
    second = discord_bot.llm.requests[1].body["messages"]
    assert [m["content"] for m in second if m["role"] == "user"] == ["two"]


SKU = 1_300_000_000_000_000_002


@pytest.fixture
def simcord_bot(services: Services) -> discord.Client:
    services.settings.__dict__["discord"] = DiscordSettings(
        edit_interval=EDIT_INTERVAL, global_edits_per_second=200.0, sku_pro=SKU
    )
    return build_client(services)


async def test_plan_offers_the_premium_button(discord_bot: Harness) -> None:
    env = discord_bot.env
    env.create_sku("OneAI Pro", id=SKU)
    guild = env.create_guild()
    channel = guild.create_text_channel("general")
    alice = guild.add_member(env.create_user("alice"))
    shown = await alice.slash(channel, "plan")
    assert shown.ephemeral and shown.response is not None
    buttons = [c for row in shown.response.components for c in row["components"]]
    assert any(str(b.get("sku_id")) == str(SKU) for b in buttons), buttons
