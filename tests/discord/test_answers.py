"""Answers on Discord end to end: the real discord.py client (built by
`build_client`) under simcord, the fake LLM over HTTP, the real database."""

from __future__ import annotations

from typing import Any

import discord
from simcord.backend.models.message import MessageSticker
from sqlalchemy import select, update

from bot.discord.factory import build_client
from core.accounts import PlatformProfile
from core.conversations.links import PlatformMessage
from core.db.models import ChatMessage, UsageQuota
from core.services import Services
from tests.discord.conftest import Harness
from tests.fakes.llm_server import Reply
from tests.support.wait import until


def buttons(message: discord.Message) -> list[str]:
    return [
        str(child.custom_id)
        for row in message.components
        if isinstance(row, discord.ActionRow)
        for child in row.children
        if isinstance(child, discord.Button) and child.custom_id
    ]


def button(message: discord.Message, prefix: str) -> str:
    for custom_id in buttons(message):
        if custom_id.startswith(prefix):
            return custom_id
    raise AssertionError(f"no button {prefix!r} under {message.content[:40]!r}")


def from_bot(history: list[discord.Message]) -> list[discord.Message]:
    """The bot's messages, oldest first."""
    return sorted((m for m in history if m.author.bot), key=lambda m: m.id)


async def rows(bot: Harness) -> list[ChatMessage]:
    async with bot.services.db.read() as session:
        return list(
            (await session.scalars(select(ChatMessage).order_by(ChatMessage.created_at))).all()
        )


async def test_a_dm_streams_and_ends_with_regenerate(discord_bot: Harness) -> None:
    env = discord_bot.env
    alice = env.create_user("alice")
    words = [f"word{i} " for i in range(30)]
    discord_bot.llm.script(Reply(chunks=words, chunk_delay=0.05))
    await alice.send_dm("hi bot")
    await discord_bot.quiet()
    (answer,) = from_bot(alice.dm_channel.history())
    assert answer.content == "".join(words).strip() or answer.content == "".join(words)
    assert button(answer, "oneai:r:")
    assert not [b for b in buttons(answer) if b.startswith("oneai:s:")]
    # Shown at the first token, then edited while it streamed (paced, not per token).
    posts = discord_bot.requests("POST", f"/channels/{alice.dm_channel.id}/messages")
    edits = discord_bot.requests("PATCH", f"/channels/{alice.dm_channel.id}/messages/")
    assert len(posts) == 1
    assert posts[0].json["content"] == "word0 "
    assert 3 <= len(edits) < len(words) // 2
    # discord.py keeps no cache of the messages it saw: each edit event the bot's own
    # edits bring would otherwise scan it.
    assert list(env.bot.cached_messages) == []


async def test_the_bots_own_posts_and_edits_reach_no_listener(discord_bot: Harness) -> None:
    """A person's message reaches the listeners; the bot's own answer (a post, then
    edits) does not: no task is started for events that are no one's prompt."""
    env = discord_bot.env
    bot: Any = env.bot
    seen: list[tuple[str, int]] = []

    async def on_message(message: discord.Message) -> None:
        seen.append(("message", message.author.id))

    async def on_raw_message_edit(payload: discord.RawMessageUpdateEvent) -> None:
        seen.append(("edit", int((payload.data.get("author") or {}).get("id", 0))))

    bot.add_listener(on_message)
    bot.add_listener(on_raw_message_edit)
    alice = env.create_user("alice")
    discord_bot.llm.script(Reply(chunks=[f"w{i} " for i in range(20)], chunk_delay=0.05))
    await alice.send_dm("hi bot")
    await discord_bot.quiet()
    (answer,) = from_bot(alice.dm_channel.history())
    assert len(discord_bot.requests("PATCH", f"/channels/{alice.dm_channel.id}/messages/")) >= 2
    assert seen == [("message", alice.id)]
    # Editing the prompt still asks again (the edit handler is reached).
    discord_bot.llm.script(Reply(text="again"))
    prompt = next(m for m in alice.dm_channel.history() if not m.author.bot)
    await alice.edit(prompt, "hi bot, again")
    await discord_bot.quiet()
    assert ("edit", alice.id) in seen
    assert answer.id in {m.id for m in from_bot(alice.dm_channel.history())}


async def test_chat_in_a_server_channel_opens_a_thread_that_continues(
    discord_bot: Harness,
) -> None:
    env = discord_bot.env
    guild = env.create_guild()
    channel = guild.create_text_channel("general")
    alice = guild.add_member(env.create_user("alice"))
    cats = [f"{word} " for word in ["Cats", "are", "small", "carnivores", "that", "people", "keep"]]
    discord_bot.llm.script(Reply(chunks=[*cats, "."], chunk_delay=0.1), Reply(text="Dogs bark."))
    result = await alice.slash(channel, "chat", prompt="Tell me about cats")
    assert result.acknowledged
    await discord_bot.quiet()
    (thread,) = channel.threads
    assert thread.name == "Tell me about cats"
    (answer,) = from_bot(thread.history())
    assert answer.content == "Cats are small carnivores that people keep ."
    # It streamed into the thread: the first words, then edits.
    assert len(discord_bot.requests("PATCH", f"/channels/{thread.id}/messages/")) >= 2
    # Every message in the thread continues that conversation, no mention needed.
    await alice.send(thread, "and dogs?")
    await discord_bot.quiet()
    answers = from_bot(thread.history())
    assert [m.content for m in answers] == [answer.content, "Dogs bark."]
    second = discord_bot.llm.requests[1].body["messages"]
    assert [m["content"] for m in second if m["role"] != "system"] == [
        "Tell me about cats",
        "Cats are small carnivores that people keep .",
        "and dogs?",
    ]


async def test_in_a_server_only_mentions_are_answered(discord_bot: Harness) -> None:
    env = discord_bot.env
    guild = env.create_guild()
    channel = guild.create_text_channel("general")
    alice = guild.add_member(env.create_user("alice"))
    await alice.send(channel, "just talking among people")
    await discord_bot.quiet()
    assert discord_bot.llm.requests_count == 0
    me = env.bot.user
    assert me is not None
    discord_bot.llm.script(Reply(text="You called?"))
    await alice.send(channel, f"<@{me.id}> are you there?")
    await discord_bot.quiet()
    assert [m.content for m in from_bot(channel.history())] == ["You called?"]
    sent = discord_bot.llm.requests[0].body["messages"][-1]["content"]
    assert sent == "are you there?"


async def test_a_5000_character_answer_spans_three_messages_with_nothing_lost(
    discord_bot: Harness,
) -> None:
    env = discord_bot.env
    alice = env.create_user("alice")
    text = "\n".join(f"Line {i:04d}: " + "lorem ipsum dolor sit amet " * 2 for i in range(75))
    assert 4900 < len(text) < 5100
    discord_bot.llm.script(Reply(text=text, chunk_delay=0.002))
    await alice.send_dm("a long one please")
    await discord_bot.quiet()
    answers = from_bot(alice.dm_channel.history())
    assert len(answers) == 3
    assert all(len(m.content) <= 2000 for m in answers)
    assert "".join(m.content for m in answers).split() == text.split()
    # Only the last message carries the buttons.
    assert buttons(answers[-1]) and not buttons(answers[0]) and not buttons(answers[1])


async def test_code_blocks_are_closed_and_reopened_across_messages(discord_bot: Harness) -> None:
    env = discord_bot.env
    alice = env.create_user("alice")
    code = "\n".join(f"print('line {i}')  # a comment to make it longer" for i in range(80))
    text = f"Here you go:\n```python\n{code}\n```\nDone."
    discord_bot.llm.script(Reply(text=text))
    await alice.send_dm("some code")
    await discord_bot.quiet()
    answers = from_bot(alice.dm_channel.history())
    assert len(answers) >= 2
    for message in answers:
        assert message.content.count("```") % 2 == 0, message.content[-80:]
    assert answers[1].content.startswith("```python\n")


async def test_regenerate_then_page_back_restores_the_first_version(discord_bot: Harness) -> None:
    env = discord_bot.env
    alice = env.create_user("alice")
    discord_bot.llm.script(Reply(text="First version."), Reply(text="Second version."))
    await alice.send_dm("question")
    await discord_bot.quiet()
    (answer,) = from_bot(alice.dm_channel.history())
    await alice.click(answer, custom_id=button(answer, "oneai:r:"))
    await discord_bot.quiet()
    (answer,) = from_bot(alice.dm_channel.history())
    assert answer.content == "Second version."
    labels = [c.label for row in answer.components for c in row.children]  # type: ignore[union-attr]
    assert "2/2" in labels
    await alice.click(answer, custom_id=button(answer, "oneai:p:"))
    await discord_bot.quiet()
    (answer,) = from_bot(alice.dm_channel.history())
    assert answer.content == "First version."
    latest = [r for r in await rows(discord_bot) if r.role == "assistant" and r.is_latest]
    assert [r.content for r in latest] == ["First version."]


async def test_editing_a_prompt_makes_a_revision_and_a_new_answer(discord_bot: Harness) -> None:
    env = discord_bot.env
    alice = env.create_user("alice")
    discord_bot.llm.script(Reply(text="About Paris."), Reply(text="About Rome."))
    prompt = await alice.send_dm("tell me about Paris")
    await discord_bot.quiet()
    await alice.edit(prompt, "tell me about Rome")
    await discord_bot.quiet()
    assert discord_bot.llm.requests_count == 2
    assert discord_bot.llm.requests[1].body["messages"][-1]["content"] == "tell me about Rome"
    edits = [r for r in await rows(discord_bot) if r.revision_type == "user_edit"]
    assert [r.content for r in edits] == ["tell me about Rome"]
    # Deleting the prompt afterwards harms nothing.
    await alice.delete(prompt)
    await discord_bot.quiet()
    assert discord_bot.llm.requests_count == 2


async def test_a_button_pressed_by_someone_else_changes_nothing(discord_bot: Harness) -> None:
    env = discord_bot.env
    guild = env.create_guild()
    channel = guild.create_text_channel("general")
    alice = guild.add_member(env.create_user("alice"))
    bob = guild.add_member(env.create_user("bob"))
    discord_bot.llm.script(Reply(text="Alice's answer."))
    await alice.slash(channel, "chat", prompt="mine")
    await discord_bot.quiet()
    (thread,) = channel.threads
    (answer,) = from_bot(thread.history())
    result = await bob.click(answer, custom_id=button(answer, "oneai:r:"))
    await discord_bot.quiet()
    assert result.ephemeral
    assert result.response is not None and "not for you" in result.response.content
    assert discord_bot.llm.requests_count == 1
    (after,) = from_bot(thread.history())
    assert after.content == "Alice's answer."


async def test_an_exhausted_quota_is_told_and_costs_no_llm_call(discord_bot: Harness) -> None:
    env = discord_bot.env
    alice = env.create_user("alice")
    discord_bot.llm.script(Reply(text="one"))
    await alice.send_dm("one")
    await discord_bot.quiet()
    async with discord_bot.services.db.write() as session:
        await session.execute(update(UsageQuota).values(quota_limit=1))
    await alice.send_dm("two")
    await discord_bot.quiet()
    replies = from_bot(alice.dm_channel.history())
    assert "reset" in replies[-1].content
    assert discord_bot.llm.requests_count == 1


async def test_429s_on_edits_are_waited_out_and_the_final_edit_lands(
    discord_bot: Harness,
) -> None:
    env = discord_bot.env
    alice = env.create_user("alice")
    words = [f"w{i} " for i in range(40)]
    discord_bot.llm.script(Reply(chunks=words, chunk_delay=0.03))
    env.inject_error(
        "PATCH", "/channels/*/messages/*", status=429, message="Too many requests", times=4
    )
    await alice.send_dm("go")
    await discord_bot.quiet()
    (answer,) = from_bot(alice.dm_channel.history())
    assert answer.content.split() == "".join(words).split()
    assert button(answer, "oneai:r:")
    assert not env.backend.faults  # all four 429s were met


async def test_buttons_work_after_a_restart(discord_bot: Harness) -> None:
    env = discord_bot.env
    alice = env.create_user("alice")
    discord_bot.llm.script(Reply(text="Before the restart."), Reply(text="After the restart."))
    await alice.send_dm("hello")
    await discord_bot.quiet()
    await env.restart_bot(build_client(discord_bot.services))
    (answer,) = from_bot(alice.dm_channel.history())
    await alice.click(answer, custom_id=button(answer, "oneai:r:"))
    await discord_bot.quiet()
    (answer,) = from_bot(alice.dm_channel.history())
    assert answer.content == "After the restart."


async def test_an_answer_cut_by_a_dead_worker_is_told_below_its_prompt(
    discord_bot: Harness,
) -> None:
    """Another process died before its answer showed: a sweep ends it, the outbox
    tells the person below their prompt, and its 🔄 brings the answer."""
    env = discord_bot.env
    services = discord_bot.services
    guild = env.create_guild()
    channel = guild.create_text_channel("general")
    alice = guild.add_member(env.create_user("alice"))
    prompt = await alice.send(channel, "a message the dead process took")
    await discord_bot.quiet()
    assert discord_bot.llm.requests_count == 0  # no mention: not for this process
    user = await services.accounts.upsert(PlatformProfile("discord", str(alice.id)))
    dead = Services.build(services.settings, llm=services.llm, db=services.db)
    await dead.chat.send(
        user.id,
        "a message the dead process took",
        new_conversation=True,
        platform="discord",
        prompt_link=PlatformMessage("discord", str(channel.id), str(prompt.id)),
    )
    # The sweep writes a notice; the bot's outbox sender tells the person.
    assert await services.liveness.sweep(confirm=False) == 1
    await env.advance_time(5)
    await until(lambda: bool(from_bot(channel.history())))
    (notice,) = from_bot(channel.history())
    assert "cut off" in notice.content
    assert notice.reference is not None and notice.reference.message_id == prompt.id
    discord_bot.llm.script(Reply(text="Here it is after all."))
    await alice.click(notice, custom_id=button(notice, "oneai:r:"))
    await discord_bot.quiet()
    (notice,) = from_bot(channel.history())
    assert notice.content == "Here it is after all."


async def test_bad_input_gets_a_polite_reply_and_costs_nothing(discord_bot: Harness) -> None:
    env = discord_bot.env
    alice = env.create_user("alice")
    dm = alice.dm_channel
    # A file the model cannot read.
    files = env.backend.store_attachments(dm.id, [("notes.zip", b"PK\x03\x04")])
    await alice.send_dm("", attachments=files)
    # A sticker and no text.
    await alice.send_dm("", stickers=[MessageSticker(1, "wave", 1, 0)])
    await discord_bot.quiet()
    replies = [m.content for m in from_bot(dm.history())]
    assert len(replies) == 2, replies
    # The file is read as a document (core/documents): a broken zip has no text.
    assert replies[0].startswith("That document is damaged or empty")
    assert replies[1].startswith("I can read text, photos, documents and voice notes only")
    assert discord_bot.llm.requests_count == 0
    assert await rows(discord_bot) == []


async def test_chat_in_a_dm_answers_in_place(discord_bot: Harness) -> None:
    env = discord_bot.env
    alice = env.create_user("alice")
    discord_bot.llm.script(Reply(text="Right here."))
    result = await alice.slash("chat", prompt="where?")
    assert result.response is not None and "where?" in result.response.content
    await discord_bot.quiet()
    answers = [m.content for m in from_bot(alice.dm_channel.history())]
    assert answers[-1] == "Right here."


async def test_a_flood_of_messages_gets_one_note_and_no_more(discord_bot: Harness) -> None:
    env = discord_bot.env
    alice = env.create_user("alice")
    client: Any = env.bot
    client.flood.limit = 3
    discord_bot.llm.script(Reply(text="first"))
    for index in range(8):
        await alice.send_dm(f"message {index}")
    await discord_bot.quiet()
    replies = [m.content for m in from_bot(alice.dm_channel.history())]
    assert sum("too fast" in r for r in replies) == 1, replies
    # Three got through; the other five never reached the model.
    assert discord_bot.llm.requests_count == 3


async def test_a_banned_person_gets_one_note_an_hour_and_no_answer(discord_bot: Harness) -> None:
    env, services = discord_bot.env, discord_bot.services
    alice = env.create_user("alice")
    user = await services.accounts.upsert(PlatformProfile("discord", str(alice.id)))
    await services.accounts.set_banned(user.id, True, "spam")
    for text in ("one", "two", "three"):
        await alice.send_dm(text)
    await discord_bot.quiet()
    replies = [m.content for m in from_bot(alice.dm_channel.history())]
    assert replies == ["Your access to this service has been suspended."]
    assert discord_bot.llm.requests_count == 0
