"""/mode on Discord: a select menu of the chat modes that only its opener may use; the
mode picked sets the system prompt of the next answer's request."""

from __future__ import annotations

from typing import Any

from core.modes import ModeCatalog
from tests.discord.conftest import Harness
from tests.discord.test_commands import custom_ids, select_options
from tests.fakes.llm_server import Reply

SHIPPED = ModeCatalog.load()


def system_of(body: dict[str, Any]) -> str | None:
    first = body["messages"][0]
    return str(first["content"]) if first["role"] == "system" else None


async def test_mode_picks_a_mode_and_the_next_answer_carries_its_prompt(
    discord_bot: Harness,
) -> None:
    env, services = discord_bot.env, discord_bot.services
    alice = env.create_user("alice")
    discord_bot.llm.script(Reply(text="Hello!"), Reply(text="Hello, world!"))
    await alice.send_dm("hello")
    await discord_bot.quiet()
    assert system_of(discord_bot.llm.requests[0].body) is None
    user = await services.accounts.by_identity("discord", str(alice.id))
    assert user is not None and user.current_conversation_id is not None
    shown = await alice.slash("mode")
    assert shown.ephemeral and shown.response is not None
    assert shown.response.content.startswith("Current mode: 🤖 Assistant")
    (select_id,) = custom_ids(shown.response.components)
    assert select_id == f"oneai:md:{user.id}:{user.current_conversation_id.hex}"
    options = select_options(shown.response.components, select_id)
    assert [o["value"] for o in options] == [mode.id for mode in SHIPPED.all()]
    assert [o["label"] for o in options if o.get("default")] == ["🤖 Assistant"]
    picked = await alice.select(shown.response.message, ["translator"], custom_id=select_id)
    assert picked.response is not None
    assert picked.response.content.startswith("✅ Mode: 🌐 Translator\n\nCurrent mode: 🌐")
    marked = select_options(picked.response.components, select_id)
    assert [o["label"] for o in marked if o.get("default")] == ["🌐 Translator"]
    await alice.send_dm("Bonjour tout le monde")
    await discord_bot.quiet()
    body = discord_bot.llm.requests[-1].body
    assert body["messages"][0] == {
        "role": "system",
        "content": SHIPPED.require("translator").prompt,
    }
    assert [m["content"] for m in body["messages"][1:]] == [
        "hello",
        "Hello!",
        "Bonjour tout le monde",
    ]


async def test_in_a_thread_mode_changes_that_threads_conversation(
    discord_bot: Harness,
) -> None:
    env, services = discord_bot.env, discord_bot.services
    guild = env.create_guild()
    channel = guild.create_text_channel("general")
    alice = guild.add_member(env.create_user("alice"))
    bob = guild.add_member(env.create_user("bob"))
    discord_bot.llm.script(Reply(text="A list."), Reply(text="Reversed."))
    await alice.slash(channel, "chat", prompt="lists in Python")
    await discord_bot.quiet()
    (thread,) = channel.threads
    shown = await alice.slash(thread, "mode")
    assert shown.response is not None
    (select_id,) = custom_ids(shown.response.components)
    user = await services.accounts.by_identity("discord", str(alice.id))
    assert user is not None
    conversation = await services.conversations.current(user.id)
    assert conversation is not None
    assert select_id == f"oneai:md:{user.id}:{conversation.id.hex}"
    # The menu is ephemeral: only Alice sees it (and its select answers only her).
    # Bob's own /mode in Alice's thread is about his conversations, not hers.
    his = await bob.slash(thread, "mode")
    assert his.response is not None
    assert custom_ids(his.response.components)[0].endswith(":-")

    picked = await alice.select(shown.response.message, ["coder"], custom_id=select_id)
    assert picked.response is not None
    assert picked.response.content.startswith("✅ Mode: 👨‍💻 Coder\n🤖 Model: Qwen3 Coder")
    await alice.send(thread, "now reverse it")
    await discord_bot.quiet()
    body = discord_bot.llm.requests[-1].body
    assert system_of(body) == SHIPPED.require("coder").prompt
    assert body["model"] == "qwen/qwen3-coder"
    assert discord_bot.llm.requests_count == 2
