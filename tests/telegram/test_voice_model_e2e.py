"""VOICE_MODE=model end to end: the fake Bot API serves the recording through
getFile, and the fake LLM server receives it as an `input_audio` part over real
HTTP when the conversation's model listens; otherwise the note is transcribed (an
STT server is configured) or politely refused (none is)."""

from __future__ import annotations

import asyncio
import base64
import contextlib
from collections.abc import AsyncIterator
from typing import Any

from pydantic import SecretStr
from sqlalchemy import select

from core.config import DatabaseSettings, LimitSettings, LLMSettings, Settings, VoiceSettings
from core.conversations.export import export_json, export_markdown
from core.db.engine import Database
from core.db.models import Attachment, ChatMessage
from core.llm.client import LLMClient
from core.services import Services
from tests.fakes.llm_server import FakeLLM, Reply, Transcription
from tests.fakes.telegram_server import FakeTelegram, StoredMessage
from tests.telegram.conftest import USER, Harness, start_harness, stop_harness, until
from tests.telegram.test_voice_e2e import STT_KEY, me, new_reply, transcripts, used

GAP = 0.15
LISTENS = "google/gemini-2.5-flash"
DEAF = "openai/gpt-4o-mini"
OGG = b"OggS\x00fake"


@contextlib.asynccontextmanager
async def voice_app(
    db: Database, tg: FakeTelegram, fake_llm: FakeLLM, *, model: str, stt: bool
) -> AsyncIterator[Harness]:
    """The bot with VOICE_MODE=model, `model` for new conversations, and a
    transcription server (the fake's own) or none (the LLM is OpenRouter, which
    offers none; requests still reach the fake)."""
    fake_llm.stt_key = STT_KEY
    base_url = fake_llm.base_url if stt else "https://openrouter.ai/api/v1"
    settings = Settings(
        db=DatabaseSettings(database_url=db.url),
        llm=LLMSettings(base_url=base_url, catalog_refresh_hours=0, default_model=model),
        limits=LimitSettings(),
        voice=VoiceSettings(voice_mode="model", stt_api_key=SecretStr(STT_KEY), stt_timeout=2.0),
    )
    llm = LLMClient(
        fake_llm.base_url, "test-key", max_retries=0, first_token_timeout=5, idle_timeout=5
    )
    services = Services.build(settings, llm=llm, db=db)
    assert services.voice.transcribes is stt
    harness = await start_harness(services, tg, fake_llm)
    try:
        yield harness
    finally:
        await stop_harness(harness)
        await services.voice.aclose()
        await llm.aclose()


def audio_part(data: bytes, fmt: str) -> dict[str, Any]:
    return {
        "type": "input_audio",
        "input_audio": {"data": base64.b64encode(data).decode(), "format": fmt},
    }


def heard(app: Harness) -> list[StoredMessage]:
    return [m for m in app.bot_messages() if (m.text or "").startswith("🎧 ")]


async def stored_audio(app: Harness) -> list[tuple[ChatMessage, Attachment]]:
    user = await me(app)
    async with app.services.db.read() as session:
        rows = await session.execute(
            select(ChatMessage, Attachment)
            .join(Attachment, ChatMessage.attachment_id == Attachment.id)
            .where(ChatMessage.user_id == user.id)
            .order_by(ChatMessage.sequence_number, ChatMessage.revision_number)
        )
        return [(row, attachment) for row, attachment in rows.all()]


async def test_a_note_goes_to_a_model_that_listens_as_audio(
    db: Database, tg: FakeTelegram, fake_llm: FakeLLM
) -> None:
    async with voice_app(db, tg, fake_llm, model=LISTENS, stt=True) as app:
        app.llm.script(Reply(text="Bonjour !"), Reply(text="Salut !"))
        note_id = app.tg.send_voice(USER, duration=7, caption="Answer in French")
        await app.answered()

        assert app.llm.transcriptions == []  # not transcribed
        [request] = app.llm.requests
        assert request.body["model"] == LISTENS
        assert request.body["messages"][-1] == {
            "role": "user",
            "content": [{"type": "text", "text": "Answer in French"}, audio_part(OGG, "ogg")],
        }
        # A short reply to the note says where it went: no transcript, no ✏️.
        [shown] = heard(app)
        assert shown.text == "🎧 Sent to Gemini 2.5 Flash as audio."
        assert shown.reply_to == note_id and shown.buttons == []
        assert transcripts(app) == []
        answer = app.bot_messages()[-1]
        assert answer.text == "Bonjour !" and answer.reply_to == note_id
        assert (await used(app))["voice_seconds"] == 7
        assert (await used(app))["small_messages"] == 1

        # Stored once: the prompt's text is the caption, the recording its attachment.
        [(prompt, attachment)] = await stored_audio(app)
        assert prompt.content == "Answer in French"
        assert attachment.kind == "audio" and attachment.content == base64.b64encode(OGG).decode()
        assert attachment.meta == {"format": "ogg", "seconds": 7}
        assert attachment.size_bytes == len(OGG)

        # 🔄 sends the same recording again, costing a message but no voice seconds.
        await asyncio.sleep(GAP)
        app.tg.press(USER, answer.message_id, app.button(answer, "a:r:"))
        await until(lambda: app.tg.message(USER, answer.message_id).text == "Salut !")
        await app.answered()
        assert len(app.llm.requests) == 2
        assert app.llm.requests[1].body["messages"] == request.body["messages"]
        assert (await used(app))["voice_seconds"] == 7
        assert (await used(app))["small_messages"] == 2
        assert len(await stored_audio(app)) == 1

        # /export names the note, never its sound.
        user = await me(app)
        assert user.current_conversation_id is not None
        markdown = await export_markdown(app.services.db, user.id, user.current_conversation_id)
        assert "🎤 voice note (7 s)\n\nAnswer in French" in markdown
        assert base64.b64encode(OGG).decode() not in markdown
        exported = await export_json(app.services.db, user.id, user.current_conversation_id)
        assert '"seconds": 7' in exported and base64.b64encode(OGG).decode() not in exported

        # Deleting the conversation deletes the recording stored with it.
        await app.services.conversations.delete(user.id, user.current_conversation_id)
        async with app.services.db.read() as session:
            assert (await session.scalars(select(Attachment))).all() == []


async def test_an_audio_file_without_caption_and_an_edited_caption(
    db: Database, tg: FakeTelegram, fake_llm: FakeLLM
) -> None:
    mp3 = b"ID3fake-mp3"
    async with voice_app(db, tg, fake_llm, model=LISTENS, stt=True) as app:
        note_id = app.tg.send_audio(USER, duration=3, data=mp3)
        await app.answered()
        assert app.llm.requests[-1].body["messages"] == [
            {"role": "user", "content": [audio_part(mp3, "mp3")]}
        ]
        [(prompt, _)] = await stored_audio(app)
        assert prompt.content == ""
        user = await me(app)
        assert user.current_conversation_id is not None
        conversation = await app.services.conversations.get(user.id, user.current_conversation_id)
        assert conversation.title == "🎤 Voice note"

        # Editing the caption asks again: the same recording with the new text.
        app.llm.script(Reply(text="A short memo."))
        await asyncio.sleep(GAP)
        app.tg.edit_caption(USER, note_id, "What is this?")
        await until(lambda: app.bot_messages()[-1].text == "A short memo.")
        await app.answered(2)
        assert app.llm.requests[-1].body["messages"] == [
            {
                "role": "user",
                "content": [{"type": "text", "text": "What is this?"}, audio_part(mp3, "mp3")],
            }
        ]
        first, edited = await stored_audio(app)
        assert edited[0].revision_type == "user_edit"
        assert edited[0].original_message_id == first[0].id
        assert edited[1].id == first[1].id  # the same stored recording, not a copy
        assert (await used(app))["voice_seconds"] == 3
        assert app.llm.transcriptions == []


async def test_a_model_that_does_not_listen_falls_back_to_transcription(
    db: Database, tg: FakeTelegram, fake_llm: FakeLLM
) -> None:
    async with voice_app(db, tg, fake_llm, model=DEAF, stt=True) as app:
        app.llm.script_transcriptions(Transcription("What is the capital of France?"))
        app.llm.script(Reply(text="Paris."))
        app.tg.send_voice(USER, duration=5)
        await app.answered()
        [stt] = app.llm.transcriptions
        assert stt.data == OGG
        assert [m.text for m in transcripts(app)] == ["🎤 What is the capital of France?"]
        assert heard(app) == []
        assert app.llm.requests[-1].body["messages"] == [
            {"role": "user", "content": "What is the capital of France?"}
        ]
        assert await stored_audio(app) == []
        assert (await used(app))["voice_seconds"] == 5


async def test_no_model_that_listens_and_no_transcription_is_a_polite_no(
    db: Database, tg: FakeTelegram, fake_llm: FakeLLM
) -> None:
    async with voice_app(db, tg, fake_llm, model=DEAF, stt=False) as app:
        refused = await new_reply(app, lambda: app.tg.send_voice(USER, duration=5))
        assert refused.text == (
            "GPT-4o mini can't listen to voice notes. Pick a model marked 🎧 in /model "
            "to send them, or type your message."
        )
        assert not app.tg.calls_of("getFile")  # nothing downloaded
        assert app.llm.requests_count == 0 and app.llm.transcriptions == []
        assert set((await used(app)).values()) <= {0}
        # /model marks the models that listen.
        menu = await new_reply(app, lambda: app.tg.send_text(USER, "/model"))
        labels = [str(b["text"]) for b in menu.buttons]
        assert any(label.startswith("Gemini 2.5 Flash 🎧") for label in labels)
        assert not any("GPT-4o mini" in label and "🎧" in label for label in labels)


async def test_a_model_that_listens_needs_no_transcription_server(
    db: Database, tg: FakeTelegram, fake_llm: FakeLLM
) -> None:
    async with voice_app(db, tg, fake_llm, model=LISTENS, stt=False) as app:
        app.tg.send_voice(USER, duration=4)
        await app.answered()
        assert app.llm.requests[-1].body["messages"][-1]["content"] == [audio_part(OGG, "ogg")]
        # A round video is not sound alone: it is not sent as audio.
        refused = await new_reply(app, lambda: app.tg.send_video_note(USER, duration=4))
        assert (refused.text or "").startswith("Only sound recordings can go to the model")
        assert (await used(app))["voice_seconds"] == 4


async def test_a_failed_answer_gives_the_seconds_and_the_message_back(
    db: Database, tg: FakeTelegram, fake_llm: FakeLLM
) -> None:
    async with voice_app(db, tg, fake_llm, model=LISTENS, stt=True) as app:
        app.llm.script(Reply(status=500))
        app.tg.send_voice(USER, duration=9)
        await app.answered()
        assert app.llm.requests[0].body["messages"][-1]["content"] == [audio_part(OGG, "ogg")]

        async def all_back() -> bool:
            counters = await used(app)
            return counters["voice_seconds"] == 0 and counters["small_messages"] == 0

        await until(all_back)
        assert app.llm.transcriptions == []
        # Over the note limit: refused before anything is downloaded or charged.
        refused = await new_reply(app, lambda: app.tg.send_voice(USER, duration=61))
        assert (refused.text or "").startswith("This voice note is 61 s long")
        assert len(app.tg.calls_of("getFile")) == 1
        assert set((await used(app)).values()) <= {0}
