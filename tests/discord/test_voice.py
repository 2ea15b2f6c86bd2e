"""Voice messages on Discord under simcord: an attachment with IS_VOICE_MESSAGE,
`duration_secs` and `waveform`, fetched from simcord's CDN, transcribed by the fake
STT server over HTTP, shown with ✏️ and answered; the modal edit of its transcript."""

from __future__ import annotations

import base64
from typing import Any

import discord
from sqlalchemy import select

from core.db.models import ChatMessage, UsageQuota
from tests.discord.conftest import Harness
from tests.discord.test_answers import buttons
from tests.fakes.llm_server import Reply, Transcription

VOICE_FLAG = 1 << 13  # MessageFlags.IS_VOICE_MESSAGE
OGG = b"OggS\x00discord-voice"


def from_bot(history: list[discord.Message]) -> list[discord.Message]:
    return sorted((m for m in history if m.author.bot), key=lambda m: m.id)


async def send_voice(bot: Harness, user: Any, duration: float) -> discord.Message:
    """`user` records a voice message in their DM with the bot."""
    channel = user.dm_channel
    [payload] = bot.env.backend.store_attachments(channel.id, [("voice-message.ogg", OGG)])
    payload["duration_secs"] = duration
    payload["waveform"] = base64.b64encode(bytes(range(0, 256, 4))).decode()
    payload["content_type"] = "audio/ogg"
    return await user.send_dm("", attachments=[payload], flags=VOICE_FLAG)  # type: ignore[no-any-return]


async def voice_used(bot: Harness) -> dict[str, int]:
    async with bot.services.db.read() as session:
        rows = (await session.scalars(select(UsageQuota))).all()
    return {row.quota_key: row.used_count for row in rows}


async def prompts(bot: Harness) -> list[ChatMessage]:
    async with bot.services.db.read() as session:
        query = select(ChatMessage).where(ChatMessage.role == "user")
        return list((await session.scalars(query.order_by(ChatMessage.created_at))).all())


async def test_a_voice_message_is_transcribed_and_answered(discord_bot: Harness) -> None:
    alice = discord_bot.env.create_user("alice")
    discord_bot.llm.script_transcriptions(Transcription("How tall is Everest?"))
    discord_bot.llm.script(Reply(text="About 8849 m."))
    note = await send_voice(discord_bot, alice, 5.2)
    await discord_bot.quiet()

    [stt] = discord_bot.llm.transcriptions
    assert (stt.filename, stt.model, stt.data) == ("voice-message.ogg", "whisper-1", OGG)
    shown, answer = from_bot(alice.dm_channel.history())
    assert shown.content == "🎤 *How tall is Everest?*"
    assert shown.reference is not None and shown.reference.message_id == note.id
    assert buttons(shown) == ["oneai:v:e"]
    assert answer.content == "About 8849 m."
    assert discord_bot.llm.requests[-1].body["messages"][-1] == {
        "role": "user",
        "content": "How tall is Everest?",
    }
    assert (await voice_used(discord_bot))["voice_seconds"] == 6
    assert (await voice_used(discord_bot))["small_messages"] == 1

    # ✏️ opens the transcript, prefilled; the corrected text gets a new answer.
    opened = await alice.click(shown, custom_id="oneai:v:e")
    modal = opened.modal
    assert modal is not None
    assert "How tall is Everest?" in str(modal)
    discord_bot.llm.script(Reply(text="About 8611 m."))
    [field] = _text_inputs(modal)
    await alice.submit_modal(opened, {field: "How tall is K2?"})
    await discord_bot.quiet()
    first, edited = await prompts(discord_bot)
    assert edited.content == "How tall is K2?" and edited.revision_type == "user_edit"
    assert edited.original_message_id == first.id
    assert from_bot(alice.dm_channel.history())[-1].content == "About 8611 m."
    assert discord_bot.llm.requests[-1].body["messages"] == [
        {"role": "user", "content": "How tall is K2?"}
    ]
    updated = next(m for m in alice.dm_channel.history() if m.id == shown.id)
    assert updated.content == "🎤 *How tall is K2?*"
    assert len(discord_bot.llm.transcriptions) == 1


async def test_a_voice_message_over_the_plan_limit_costs_nothing(discord_bot: Harness) -> None:
    alice = discord_bot.env.create_user("alice")
    await send_voice(discord_bot, alice, 75.0)
    await discord_bot.quiet()
    [refusal] = from_bot(alice.dm_channel.history())
    assert refusal.content.startswith(
        "This voice note is 75 s long; your plan takes notes of up to 60 s."
    )
    assert discord_bot.llm.transcriptions == [] and discord_bot.llm.requests_count == 0
    assert set((await voice_used(discord_bot)).values()) <= {0}


def _text_inputs(modal: dict[str, Any]) -> list[str]:
    """The custom ids of a modal's text inputs."""
    found: list[str] = []

    def walk(node: Any) -> None:
        if isinstance(node, dict):
            if node.get("type") == 4 and "custom_id" in node:
                found.append(str(node["custom_id"]))
            for value in node.values():
                walk(value)
        elif isinstance(node, list):
            for value in node:
                walk(value)

    walk(modal)
    return found


async def test_an_audio_file_is_counted_by_its_size(discord_bot: Harness) -> None:
    """An audio attachment that is not a voice message states no length: it counts
    16 kB a second."""
    alice = discord_bot.env.create_user("alice")
    discord_bot.llm.script_transcriptions(Transcription("from a file"))
    channel = alice.dm_channel
    mp3 = b"ID3" + b"\x00" * 40_000
    [payload] = discord_bot.env.backend.store_attachments(channel.id, [("memo.mp3", mp3)])
    await alice.send_dm("", attachments=[payload])
    await discord_bot.quiet()
    [stt] = discord_bot.llm.transcriptions
    assert (stt.filename, stt.content_type) == ("memo.mp3", "audio/mpeg")
    shown, _answer = from_bot(alice.dm_channel.history())
    assert shown.content == "🎤 *from a file*"
    assert (await voice_used(discord_bot))["voice_seconds"] == 3
