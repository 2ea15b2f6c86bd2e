"""Voice notes: per-tier limits, speech to text, and what a failure tells the person."""

from core.voice.errors import (
    ModelDoesNotListen,
    NotAudio,
    NoteTooBig,
    NoteTooLong,
    NoteUnavailable,
    NothingHeard,
    STTError,
    STTRejected,
    STTTimeout,
    STTUnavailable,
    VoiceDayLimit,
    VoiceDisabled,
)
from core.voice.service import VoiceHold, VoiceMode, VoiceNote, VoiceService, audio_format
from core.voice.stt import STTClient

__all__ = [
    "ModelDoesNotListen",
    "NotAudio",
    "NoteTooBig",
    "NoteTooLong",
    "NoteUnavailable",
    "NothingHeard",
    "STTClient",
    "STTError",
    "STTRejected",
    "STTTimeout",
    "STTUnavailable",
    "VoiceDayLimit",
    "VoiceDisabled",
    "VoiceHold",
    "VoiceMode",
    "VoiceNote",
    "VoiceService",
    "audio_format",
]
