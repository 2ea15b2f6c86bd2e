"""VOICE_MODE=model under simcord: a voice message fetched from simcord's CDN goes
to a model that listens as an `input_audio` part (the fake LLM over HTTP records
it); a model that does not listen falls back to transcription, or to a polite
reply when no transcription server is configured."""

from __future__ import annotations

import base64
from collections.abc import AsyncIterator
from typing import Any

import pytest
from pydantic import SecretStr
from sqlalchemy import select

from core.config import DatabaseSettings, LimitSettings, LLMSettings, Settings, VoiceSettings
from core.db.engine import Database
from core.db.models import Attachment, ChatMessage
from core.llm.client import LLMClient
from core.services import Services
from tests.discord.conftest import Harness
from tests.discord.test_answers import button
from tests.discord.test_voice import OGG, from_bot, send_voice, voice_used
from tests.fakes.llm_server import FakeLLM, Reply, Transcription

LISTENS = "google/gemini-2.5-flash"
DEAF = "openai/gpt-4o-mini"
STT_KEY = "stt-secret"


@pytest.fixture
async def services(
    db: Database, fake_llm: FakeLLM, request: pytest.FixtureRequest
) -> AsyncIterator[Services]:
    """The core services with VOICE_MODE=model. `request.param`: (model for new
    conversations, whether a transcription server is configured)."""
    model, stt = getattr(request, "param", (LISTENS, True))
    fake_llm.stt_key = STT_KEY
    settings = Settings(
        db=DatabaseSettings(database_url=db.url),
        llm=LLMSettings(
            # OpenRouter offers no transcription: then none is configured.
            base_url=fake_llm.base_url if stt else "https://openrouter.ai/api/v1",
            catalog_refresh_hours=0,
            default_model=model,
        ),
        limits=LimitSettings(),
        voice=VoiceSettings(voice_mode="model", stt_api_key=SecretStr(STT_KEY)),
    )
    llm = LLMClient(
        fake_llm.base_url, "test-key", max_retries=0, first_token_timeout=5, idle_timeout=5
    )
    built = Services.build(settings, llm=llm, db=db)
    try:
        yield built
    finally:
        await built.voice.aclose()
        await llm.aclose()


def audio_part(data: bytes, fmt: str) -> dict[str, Any]:
    encoded = base64.b64encode(data).decode()
    return {"type": "input_audio", "input_audio": {"data": encoded, "format": fmt}}


async def recordings(bot: Harness) -> list[Attachment]:
    async with bot.services.db.read() as session:
        return list((await session.scalars(select(Attachment))).all())


async def test_a_voice_message_goes_to_a_model_that_listens(discord_bot: Harness) -> None:
    alice = discord_bot.env.create_user("alice")
    discord_bot.llm.script(Reply(text="It sounds like a greeting."), Reply(text="A hello."))
    note = await send_voice(discord_bot, alice, 5.2)
    await discord_bot.quiet()

    assert discord_bot.llm.transcriptions == []
    [request] = discord_bot.llm.requests
    assert request.body["model"] == LISTENS
    assert request.body["messages"] == [{"role": "user", "content": [audio_part(OGG, "ogg")]}]
    shown, answer = from_bot(alice.dm_channel.history())
    assert shown.content == "🎧 Sent to Gemini 2.5 Flash as audio."
    assert shown.reference is not None and shown.reference.message_id == note.id
    assert shown.components == []
    assert answer.content == "It sounds like a greeting."
    assert (await voice_used(discord_bot))["voice_seconds"] == 6
    assert (await voice_used(discord_bot))["small_messages"] == 1
    [stored] = await recordings(discord_bot)
    assert stored.kind == "audio" and stored.meta == {"format": "ogg", "seconds": 6}
    assert stored.content == base64.b64encode(OGG).decode()

    # 🔄 sends the same recording again.
    await alice.click(answer, custom_id=button(answer, "oneai:r:"))
    await discord_bot.quiet()
    assert from_bot(alice.dm_channel.history())[-1].content == "A hello."
    assert len(discord_bot.llm.requests) == 2
    assert discord_bot.llm.requests[1].body["messages"] == request.body["messages"]
    assert (await voice_used(discord_bot))["voice_seconds"] == 6
    assert (await voice_used(discord_bot))["small_messages"] == 2
    assert len(await recordings(discord_bot)) == 1


async def test_an_audio_file_goes_with_its_text(discord_bot: Harness) -> None:
    alice = discord_bot.env.create_user("alice")
    mp3 = b"ID3" + b"\x00" * 40_000
    [payload] = discord_bot.env.backend.store_attachments(alice.dm_channel.id, [("memo.mp3", mp3)])
    memo = await alice.send_dm("Summarize this memo", attachments=[payload])
    await discord_bot.quiet()
    assert discord_bot.llm.transcriptions == []
    assert discord_bot.llm.requests[-1].body["messages"] == [
        {
            "role": "user",
            "content": [{"type": "text", "text": "Summarize this memo"}, audio_part(mp3, "mp3")],
        }
    ]
    async with discord_bot.services.db.read() as session:
        [prompt] = (
            await session.scalars(select(ChatMessage).where(ChatMessage.role == "user"))
        ).all()
    assert prompt.content == "Summarize this memo"
    assert (await voice_used(discord_bot))["voice_seconds"] == 3  # counted by its size

    # Editing the text asks again, with the same stored recording.
    discord_bot.llm.script(Reply(text="A memo about lunch."))
    await alice.edit(memo, "Who is speaking?")
    await discord_bot.quiet()
    assert discord_bot.llm.requests[-1].body["messages"] == [
        {
            "role": "user",
            "content": [{"type": "text", "text": "Who is speaking?"}, audio_part(mp3, "mp3")],
        }
    ]
    assert len(await recordings(discord_bot)) == 1
    assert (await voice_used(discord_bot))["voice_seconds"] == 3
    assert (await voice_used(discord_bot))["small_messages"] == 2


@pytest.mark.parametrize("services", [(DEAF, True)], indirect=True)
async def test_a_model_that_does_not_listen_falls_back_to_transcription(
    discord_bot: Harness,
) -> None:
    alice = discord_bot.env.create_user("alice")
    discord_bot.llm.script_transcriptions(Transcription("How tall is Everest?"))
    discord_bot.llm.script(Reply(text="About 8849 m."))
    await send_voice(discord_bot, alice, 5.2)
    await discord_bot.quiet()
    [stt] = discord_bot.llm.transcriptions
    assert stt.data == OGG
    shown, answer = from_bot(alice.dm_channel.history())
    assert shown.content == "🎤 *How tall is Everest?*"
    assert answer.content == "About 8849 m."
    assert discord_bot.llm.requests[-1].body["messages"] == [
        {"role": "user", "content": "How tall is Everest?"}
    ]
    assert await recordings(discord_bot) == []


@pytest.mark.parametrize("services", [(DEAF, False)], indirect=True)
async def test_no_model_that_listens_and_no_transcription_is_a_polite_no(
    discord_bot: Harness,
) -> None:
    alice = discord_bot.env.create_user("alice")
    await send_voice(discord_bot, alice, 5.2)
    await discord_bot.quiet()
    [refusal] = from_bot(alice.dm_channel.history())
    assert refusal.content == (
        "GPT-4o mini can't listen to voice notes. Pick a model marked 🎧 in /model "
        "to send them, or type your message."
    )
    assert discord_bot.llm.requests_count == 0 and discord_bot.llm.transcriptions == []
    assert set((await voice_used(discord_bot)).values()) <= {0}
    assert await recordings(discord_bot) == []


async def test_a_failed_answer_gives_the_seconds_and_the_message_back(
    discord_bot: Harness,
) -> None:
    alice = discord_bot.env.create_user("alice")
    discord_bot.llm.script(Reply(status=500))
    await send_voice(discord_bot, alice, 8.0)
    await discord_bot.quiet()
    [request] = discord_bot.llm.requests
    assert request.body["messages"][-1]["content"] == [audio_part(OGG, "ogg")]
    used = await voice_used(discord_bot)
    assert used["voice_seconds"] == 0 and used["small_messages"] == 0
    assert discord_bot.llm.transcriptions == []
