"""Voice notes, audio files and round videos, end to end: the fake Bot API serves the
recording through getFile, the fake LLM server transcribes it over real HTTP, and
the answer streams as for typed text."""

from __future__ import annotations

import asyncio
from collections.abc import AsyncIterator
from typing import Any

import pytest
from pydantic import SecretStr
from sqlalchemy import select

from core.config import DatabaseSettings, LimitSettings, LLMSettings, Settings, VoiceSettings
from core.db.engine import Database
from core.db.models import ChatMessage, UsageQuota, User
from core.llm.client import LLMClient
from core.services import Services
from tests.fakes.llm_server import FakeLLM, Reply, Transcription
from tests.fakes.telegram_server import FakeTelegram, StoredMessage
from tests.telegram.conftest import USER, Harness, start_harness, stop_harness, until

STT_KEY = "stt-secret"
GAP = 0.15


@pytest.fixture
async def voice_services(db: Database, fake_llm: FakeLLM) -> AsyncIterator[Services]:
    """The core services with a transcription key of their own (the fake checks it)."""
    fake_llm.stt_key = STT_KEY
    settings = Settings(
        db=DatabaseSettings(database_url=db.url),
        llm=LLMSettings(base_url=fake_llm.base_url, catalog_refresh_hours=0),
        limits=LimitSettings(),
        voice=VoiceSettings(stt_api_key=SecretStr(STT_KEY), stt_timeout=2.0),
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


@pytest.fixture
async def app(
    voice_services: Services, tg: FakeTelegram, fake_llm: FakeLLM
) -> AsyncIterator[Harness]:
    harness = await start_harness(voice_services, tg, fake_llm)
    try:
        yield harness
    finally:
        await stop_harness(harness)


# -- helpers ------------------------------------------------------------------------


async def me(app: Harness) -> User:
    user = await app.services.accounts.by_identity("telegram", str(USER))
    assert user is not None
    return user


async def used(app: Harness) -> dict[str, int]:
    """The person's quota counters as the database holds them."""
    user = await me(app)
    async with app.services.db.read() as session:
        rows = (
            await session.scalars(select(UsageQuota).where(UsageQuota.user_id == user.id))
        ).all()
    return {row.quota_key: row.used_count for row in rows}


def transcripts(app: Harness) -> list[StoredMessage]:
    return [m for m in app.bot_messages() if (m.text or "").startswith("🎤 ")]


async def new_reply(app: Harness, act: Any) -> StoredMessage:
    await asyncio.sleep(GAP)
    before = {m.message_id for m in app.bot_messages()}
    act()
    return await app.tg.wait_for(
        lambda: next((m for m in app.bot_messages() if m.message_id not in before), None)
    )


async def voice_answered(app: Harness, send: Any, count: int = 1) -> int:
    """Send a recording and wait for its answer; the note's message id."""
    await asyncio.sleep(GAP)
    note = send()
    await app.answered(count)
    return int(note)


async def prompts(app: Harness) -> list[ChatMessage]:
    user = await me(app)
    async with app.services.db.read() as session:
        return list(
            (
                await session.scalars(
                    select(ChatMessage)
                    .where(ChatMessage.user_id == user.id, ChatMessage.role == "user")
                    .order_by(ChatMessage.sequence_number, ChatMessage.revision_number)
                )
            ).all()
        )


# -- transcribed and answered ----------------------------------------------------------


async def test_a_voice_note_is_transcribed_shown_and_answered(app: Harness) -> None:
    app.llm.script_transcriptions(Transcription("What is the capital of France?"))
    app.llm.script(Reply(text="Paris."))
    note_id = await voice_answered(app, lambda: app.tg.send_voice(USER, duration=7))

    [stt] = app.llm.transcriptions
    assert stt.headers["authorization"] == f"Bearer {STT_KEY}"
    assert stt.model == "whisper-1" and stt.filename == "voice.ogg"
    assert stt.data == b"OggS\x00fake"
    # The transcript: its own reply to the note, quoted, with ✏️, before the answer.
    [shown] = transcripts(app)
    assert shown.text == "🎤 What is the capital of France?"
    assert any(e["type"] == "italic" for e in shown.entities)
    assert shown.reply_to == note_id
    assert [b["text"] for b in shown.buttons] == ["✏️ Edit"]
    answer = app.bot_messages()[-1]
    assert answer.text == "Paris." and answer.message_id > shown.message_id
    # The model got the transcript as the person's text.
    last = app.llm.requests[-1].body["messages"][-1]
    assert last == {"role": "user", "content": "What is the capital of France?"}
    [prompt] = await prompts(app)
    assert prompt.content == "What is the capital of France?"
    assert await used(app) == {"voice_seconds": 7, "small_messages": 1} | {
        k: 0 for k in ("large_messages", "image_generation", "web_search")
    }
    # /usage shows voice in minutes.
    usage = await new_reply(app, lambda: app.tg.send_text(USER, "/usage"))
    assert "Voice minutes: ▱▱▱▱▱▱▱▱▱▱ 0.1/5 min · 4.9 min left" in (usage.text or "")


async def test_editing_the_transcript_makes_a_new_answer(app: Harness) -> None:
    app.llm.script_transcriptions(Transcription("What is the capital of Fance?"))
    await voice_answered(app, lambda: app.tg.send_voice(USER))
    [shown] = transcripts(app)

    await asyncio.sleep(GAP)
    query_id = app.tg.press(USER, shown.message_id, shown.buttons[0]["callback_data"])
    await until(lambda: app.tg.callback_queries[query_id].answered)
    ask = await app.tg.wait_for(
        lambda: next((m for m in app.bot_messages() if "corrected text" in (m.text or "")), None)
    )
    assert ask.keyboard is not None and ask.keyboard.get("force_reply") is True

    app.llm.script(Reply(text="Paris, of course."))
    await asyncio.sleep(GAP)
    app.tg.send_text(USER, "What is the capital of France?", reply_to=ask.message_id)
    await app.answered(2)
    assert app.bot_messages()[-1].text == "Paris, of course."
    last = app.llm.requests[-1].body["messages"]
    assert last == [{"role": "user", "content": "What is the capital of France?"}]
    first, edited = await prompts(app)
    assert edited.revision_type == "user_edit" and edited.original_message_id == first.id
    assert edited.content == "What is the capital of France?" and edited.is_latest
    await until(lambda: transcripts(app)[0].text == "🎤 What is the capital of France?")
    # One transcription, two answers: only the note's seconds and two messages.
    assert (await used(app))["voice_seconds"] == 2
    assert (await used(app))["small_messages"] == 2
    assert len(app.llm.transcriptions) == 1


async def test_a_reply_to_the_transcript_continues_after_its_answer(app: Harness) -> None:
    app.llm.script_transcriptions(Transcription("Name a colour."))
    app.llm.script(Reply(text="Blue."))
    await voice_answered(app, lambda: app.tg.send_voice(USER))
    [shown] = transcripts(app)
    await asyncio.sleep(GAP)
    app.tg.send_text(USER, "Another one?", reply_to=shown.message_id)
    await app.answered(2)
    messages = app.llm.requests[-1].body["messages"]
    assert [m["content"] for m in messages] == ["Name a colour.", "Blue.", "Another one?"]


async def test_audio_files_and_round_videos_are_transcribed(app: Harness) -> None:
    app.llm.script_transcriptions(Transcription("from an audio file"), Transcription("round"))
    await voice_answered(app, lambda: app.tg.send_audio(USER, duration=3))
    await voice_answered(app, lambda: app.tg.send_video_note(USER, duration=4), count=2)
    audio, video = app.llm.transcriptions
    assert (audio.filename, audio.content_type) == ("memo.mp3", "audio/mpeg")
    assert (video.filename, video.content_type) == ("video_note.mp4", "video/mp4")
    assert [m.text for m in transcripts(app)] == ["🎤 from an audio file", "🎤 round"]
    assert [p.content for p in await prompts(app)] == ["from an audio file", "round"]
    assert (await used(app))["voice_seconds"] == 7


# -- refused, at no cost -------------------------------------------------------------------


async def test_a_note_over_the_plan_limit_costs_nothing(app: Harness) -> None:
    refused = await new_reply(app, lambda: app.tg.send_voice(USER, duration=61))
    assert refused.text == (
        "This voice note is 61 s long; your plan takes notes of up to 60 s. "
        "Please send a shorter one, or type your message."
    )
    assert app.llm.transcriptions == [] and app.llm.requests_count == 0
    assert not app.tg.calls_of("getFile")
    assert set((await used(app)).values()) <= {0}


async def test_a_note_over_what_is_left_today_costs_nothing(app: Harness) -> None:
    for _ in range(5):  # 5 × 55 s = 275 s of the free plan's 300
        await voice_answered(app, lambda: app.tg.send_voice(USER, duration=55), count=_ + 1)
    calls = len(app.tg.calls_of("getFile"))
    refused = await new_reply(app, lambda: app.tg.send_voice(USER, duration=30))
    assert (refused.text or "").startswith(
        "This 30 s voice note is more than you have left today (25 s of 5 min). "
        "Voice minutes reset at "
    )
    assert len(app.tg.calls_of("getFile")) == calls and len(app.llm.transcriptions) == 5
    assert await used(app) == {
        "voice_seconds": 275,
        "small_messages": 5,
        "large_messages": 0,
        "image_generation": 0,
        "web_search": 0,
    }


async def test_an_stt_failure_gets_a_reply_and_charges_nothing(app: Harness) -> None:
    app.llm.script_transcriptions(Transcription(status=500))
    refused = await new_reply(app, lambda: app.tg.send_voice(USER, duration=9))
    assert refused.text == (
        "The transcription service is unavailable right now. Please try again in a moment."
    )
    assert app.llm.transcriptions[0].status == 500
    assert app.llm.requests_count == 0 and transcripts(app) == []
    assert set((await used(app)).values()) == {0}
    assert await prompts(app) == []


async def test_an_stt_timeout_gets_a_reply_and_charges_nothing(app: Harness) -> None:
    app.llm.script_transcriptions(Transcription(delay=4.0))
    refused = await new_reply(app, lambda: app.tg.send_voice(USER, duration=9))
    assert refused.text == "Transcribing the voice note took too long. Please try again."
    assert set((await used(app)).values()) == {0}
    assert app.llm.requests_count == 0


async def test_a_file_over_the_bot_api_limit_is_not_downloaded(app: Harness) -> None:
    big = b"\x00" * (20 * 1024 * 1024 + 1)
    refused = await new_reply(app, lambda: app.tg.send_audio(USER, duration=30, data=big))
    assert refused.text == (
        "This recording is too large to download (the limit is 20 MB). Please send a shorter one."
    )
    assert not app.tg.calls_of("getFile") and app.llm.transcriptions == []
    assert set((await used(app)).values()) <= {0}


async def test_a_pressed_edit_of_someone_elses_transcript_is_refused(app: Harness) -> None:
    await voice_answered(app, lambda: app.tg.send_voice(USER))
    [shown] = transcripts(app)
    other = 2002
    app.tg.user(other, first_name="Bob", language_code="en")
    query_id = app.tg.press(
        other, shown.message_id, shown.buttons[0]["callback_data"], chat_id=USER, forge=True
    )
    await until(lambda: app.tg.callback_queries[query_id].answered)
    assert app.tg.callback_queries[query_id].show_alert
    assert len(app.bot_messages()) == 2  # the transcript and the answer only


async def test_voice_is_off_when_the_llm_is_openrouter(
    db: Database, tg: FakeTelegram, fake_llm: FakeLLM
) -> None:
    settings = Settings(
        db=DatabaseSettings(database_url=db.url),
        llm=LLMSettings(base_url="https://openrouter.ai/api/v1", catalog_refresh_hours=0),
        limits=LimitSettings(),
        voice=VoiceSettings(),
    )
    llm = LLMClient(fake_llm.base_url, "test-key", max_retries=0)
    services = Services.build(settings, llm=llm, db=db)
    assert not services.voice.enabled
    app = await start_harness(services, tg, fake_llm)
    try:
        refused = await new_reply(app, lambda: app.tg.send_voice(USER))
        assert refused.text == "Voice notes are not enabled here. Please type your message."
        assert not app.tg.calls_of("getFile")
        assert set((await used(app)).values()) <= {0}
    finally:
        await stop_harness(app)
        await llm.aclose()


async def test_a_refused_or_empty_transcription_costs_nothing(app: Harness) -> None:
    app.llm.stt_key = "another-key"  # the server no longer takes ours: 401
    refused = await new_reply(app, lambda: app.tg.send_voice(USER, duration=5))
    assert refused.text == (
        "The transcription service refused this voice note. Please try again, or type your message."
    )
    assert app.llm.transcriptions[-1].status == 401
    app.llm.stt_key = STT_KEY
    app.llm.script_transcriptions(Transcription("   "))
    empty = await new_reply(app, lambda: app.tg.send_voice(USER, duration=5))
    assert empty.text == "I could not hear any words in this voice note. Please try again."
    assert set((await used(app)).values()) == {0}
    assert app.llm.requests_count == 0 and await prompts(app) == []
