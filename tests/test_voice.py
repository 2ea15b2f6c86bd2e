"""Voice settings and the STT client against the fake server, without a platform."""

from __future__ import annotations

import pytest
from pydantic import SecretStr, ValidationError

from core.config import LLMSettings, VoiceSettings
from core.voice import (
    STTClient,
    STTRejected,
    STTTimeout,
    STTUnavailable,
    VoiceNote,
    audio_format,
)
from tests.fakes.llm_server import FakeLLM, Transcription


def llm(base_url: str, key: str) -> LLMSettings:
    return LLMSettings.model_validate({"base_url": base_url, "LLM_API_KEY": key})


def test_the_transcription_server_follows_the_llm_unless_it_is_openrouter() -> None:
    openrouter = llm("https://openrouter.ai/api/v1", "or")
    own = llm("http://127.0.0.1:9/v1", "llm-key")
    assert VoiceSettings().endpoint(openrouter) is None
    assert VoiceSettings().endpoint(own) == ("http://127.0.0.1:9/v1", "llm-key")
    assert VoiceSettings(stt_api_key=SecretStr("stt")).endpoint(own) == (
        "http://127.0.0.1:9/v1",
        "stt",
    )
    # A server of its own: its own key, never the LLM's.
    elsewhere = VoiceSettings(stt_base_url="https://stt.example/v1/")
    assert elsewhere.endpoint(openrouter) == ("https://stt.example/v1", None)
    with pytest.raises(ValidationError):
        VoiceSettings(stt_base_url="stt.example")


def test_a_note_without_a_stated_length_counts_by_its_size() -> None:
    assert VoiceNote(7.2, 100, 1000, "v.ogg", "audio/ogg").seconds == 8
    assert VoiceNote(0, 100, 1000, "v.ogg", "audio/ogg").seconds == 1
    assert VoiceNote(None, 48_001, 10**6, "a.mp3", "audio/mpeg").seconds == 4


async def test_stt_failures_are_typed() -> None:
    async with FakeLLM() as server:
        server.stt_key = "k"
        client = STTClient(server.base_url, "k", "whisper-1", timeout=0.5)
        try:
            server.script_transcriptions(
                Transcription("  hi  "),
                Transcription(status=500),
                Transcription(status=429),
                Transcription(delay=2.0),
            )
            assert await client.transcribe(b"OggS", "v.ogg", "audio/ogg") == "hi"
            with pytest.raises(STTUnavailable):
                await client.transcribe(b"OggS", "v.ogg", "audio/ogg")
            with pytest.raises(STTUnavailable):
                await client.transcribe(b"OggS", "v.ogg", "audio/ogg")
            with pytest.raises(STTTimeout):
                await client.transcribe(b"OggS", "v.ogg", "audio/ogg")
            with pytest.raises(STTRejected):  # a format the server does not take
                await client.transcribe(b"data", "v.txt", "text/plain")
            wrong = STTClient(server.base_url, "wrong", "whisper-1")
            with pytest.raises(STTRejected):
                await wrong.transcribe(b"OggS", "v.ogg", "audio/ogg")
            await wrong.aclose()
            other = STTClient(server.base_url, "k", "no-such-model")
            with pytest.raises(STTRejected):
                await other.transcribe(b"OggS", "v.ogg", "audio/ogg")
            await other.aclose()
        finally:
            await client.aclose()
    statuses = [r.status for r in server.transcriptions]
    assert statuses[:3] == [200, 500, 429] and statuses[-3:] == [400, 401, 400]


def test_voice_mode_is_transcribe_or_model_and_anything_else_stops_the_start(
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    from core.config import ConfigError, load_settings

    assert load_settings().voice.voice_mode == "transcribe"
    monkeypatch.setenv("VOICE_MODE", "model")
    assert load_settings().voice.voice_mode == "model"
    monkeypatch.setenv("VOICE_MODE", "listen")
    with pytest.raises(ConfigError) as info:
        load_settings()
    message = str(info.value)
    assert message.startswith("configuration error: VOICE_MODE: ")
    assert "'transcribe' or 'model'" in message


@pytest.mark.parametrize(
    ("mime", "name", "expected"),
    [
        ("audio/ogg", "voice.ogg", "ogg"),
        ("audio/ogg; codecs=opus", "voice-message.ogg", "ogg"),
        ("audio/mpeg", "memo.mp3", "mp3"),
        ("audio/x-wav", "a.wav", "wav"),
        ("audio/mp4", "a.m4a", "m4a"),
        ("audio/x-m4a", "a.m4a", "m4a"),
        ("audio/flac", "a.flac", "flac"),
        ("audio/aac", "a.aac", "aac"),
        ("audio/webm", "a.webm", "webm"),
        ("application/octet-stream", "Song.FLAC", "flac"),
        ("", "memo.opus", "ogg"),
        ("audio/x-unknown", "memo.mp3", "mp3"),
        ("audio/x-unknown", "memo.xyz", None),
        ("video/mp4", "video_note.mp4", None),  # a round video is not sent as audio
    ],
)
def test_the_audio_format_comes_from_the_type_then_the_name(
    mime: str, name: str, expected: str | None
) -> None:
    assert audio_format(mime, name) == expected
