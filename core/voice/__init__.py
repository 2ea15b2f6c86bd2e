"""Voice notes: per-tier limits, speech to text, and what a failure tells the person."""

from core.voice.errors import (
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
from core.voice.service import VoiceHold, VoiceNote, VoiceService
from core.voice.stt import STTClient

__all__ = [
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
    "VoiceNote",
    "VoiceService",
]
