"""A voice note's way to the model: checked against the plan before anything is
downloaded, its seconds reserved atomically, then transcribed (VOICE_MODE
transcribe) or sent as audio to a model that listens (VOICE_MODE model), and its
seconds given back when no prompt comes of it. The message unit is not touched
here: the normal send flow reserves it once the prompt exists."""

from __future__ import annotations

import logging
import math
from collections.abc import Awaitable, Callable
from dataclasses import dataclass
from datetime import datetime
from pathlib import PurePath
from typing import Literal

from core.db.engine import Database
from core.quotas import QuotaExceeded, QuotaService
from core.tiers import TIERS, QuotaKey, Tier
from core.voice.errors import (
    NoteTooBig,
    NoteTooLong,
    NoteUnavailable,
    NothingHeard,
    VoiceDayLimit,
    VoiceDisabled,
)
from core.voice.stt import STTClient

log = logging.getLogger(__name__)

# A recording whose length the platform does not state (a Discord audio file) is
# counted by its size at this many bytes a second (128 kbit/s, a common bitrate).
BYTES_PER_SECOND_ESTIMATE = 16_000

VoiceMode = Literal["transcribe", "model"]

# The `input_audio` format of a recording, by its mime type, else its file name's
# extension. A type not listed (a round video's mp4) is not sent as audio.
_FORMATS_BY_MIME = {
    "audio/ogg": "ogg",
    "audio/opus": "ogg",
    "audio/mpeg": "mp3",
    "audio/mp3": "mp3",
    "audio/wav": "wav",
    "audio/x-wav": "wav",
    "audio/wave": "wav",
    "audio/vnd.wave": "wav",
    "audio/mp4": "m4a",
    "audio/m4a": "m4a",
    "audio/x-m4a": "m4a",
    "audio/flac": "flac",
    "audio/x-flac": "flac",
    "audio/aac": "aac",
    "audio/x-aac": "aac",
    "audio/webm": "webm",
    "audio/aiff": "aiff",
    "audio/x-aiff": "aiff",
}
_FORMATS_BY_EXTENSION = {
    "ogg": "ogg",
    "oga": "ogg",
    "opus": "ogg",
    "mp3": "mp3",
    "wav": "wav",
    "m4a": "m4a",
    "flac": "flac",
    "aac": "aac",
    "webm": "webm",
    "aiff": "aiff",
    "aif": "aiff",
}


def audio_format(mime_type: str, filename: str) -> str | None:
    """The `input_audio` format of a recording ("ogg", "mp3", ...), or None when it
    is not plain audio."""
    mime = mime_type.split(";", 1)[0].strip().lower()
    if mime in _FORMATS_BY_MIME:
        return _FORMATS_BY_MIME[mime]
    if mime and not mime.startswith("audio/") and mime != "application/octet-stream":
        return None  # a video, say: its sound is not an audio file
    return _FORMATS_BY_EXTENSION.get(PurePath(filename).suffix.lower().lstrip("."))


@dataclass(frozen=True)
class VoiceNote:
    """What the platform's update says about a recording, before downloading it."""

    duration: float | None  # seconds, as the platform states them
    size: int | None  # bytes, as stated
    max_bytes: int  # what the platform lets a bot download
    filename: str
    mime_type: str

    @property
    def seconds(self) -> int:
        """The seconds the note counts for: at least one."""
        if self.duration is not None:
            return max(1, math.ceil(self.duration))
        return max(1, math.ceil((self.size or 0) / BYTES_PER_SECOND_ESTIMATE))


@dataclass(frozen=True)
class VoiceHold:
    """Seconds taken from today's voice quota for one note."""

    user_id: int
    seconds: int
    window_start: datetime


class VoiceService:
    def __init__(
        self,
        db: Database,
        quotas: QuotaService,
        stt: STTClient | None,
        mode: VoiceMode = "transcribe",
    ) -> None:
        self.db = db
        self.quotas = quotas
        self.stt = stt
        self.mode: VoiceMode = mode

    @property
    def enabled(self) -> bool:
        """Whether some note can reach a model: transcribed, or as audio."""
        return self.stt is not None or self.mode == "model"

    @property
    def transcribes(self) -> bool:
        return self.stt is not None

    def check(self, note: VoiceNote, tier: Tier, *, transcribing: bool = True) -> int:
        """The seconds the note costs, or why it is refused (nothing taken).
        `transcribing` False: it goes to the model as audio, no STT needed."""
        if transcribing and self.stt is None:
            raise VoiceDisabled()
        if note.size is not None and note.size > note.max_bytes:
            raise NoteTooBig(note.max_bytes // (1024 * 1024))
        limit = TIERS[tier].voice_note_seconds
        if note.seconds > limit:
            raise NoteTooLong(note.seconds, limit)
        return note.seconds

    async def reserve(
        self, user_id: int, tier: Tier, note: VoiceNote, *, transcribing: bool = True
    ) -> VoiceHold:
        """Take the note's seconds from today's voice minutes, in one atomic statement."""
        seconds = self.check(note, tier, transcribing=transcribing)
        try:
            async with self.db.write() as session:
                reservation = await self.quotas.reserve(
                    session, user_id, tier, QuotaKey.VOICE, seconds
                )
        except QuotaExceeded as exc:
            left = next(
                (s.remaining for s in await self.quotas.report(user_id, tier) if s.key is exc.key),
                0,
            )
            raise VoiceDayLimit(seconds, left, exc.limit, exc.resets_at) from None
        return VoiceHold(user_id, seconds, reservation.window_start)

    async def take(
        self,
        user_id: int,
        tier: Tier,
        note: VoiceNote,
        fetch: Callable[[], Awaitable[bytes | None]],
    ) -> tuple[VoiceHold, str]:
        """Check and reserve the note, fetch it (None: it cannot be) and transcribe
        it. Raises a OneAIError with the seconds given back; on success the caller
        gives them back if no prompt comes of the transcript."""
        hold = await self.reserve(user_id, tier, note)
        data = await self.download(hold, note, fetch)
        return hold, await self.transcribe(hold, data, note)

    async def download(
        self, hold: VoiceHold, note: VoiceNote, fetch: Callable[[], Awaitable[bytes | None]]
    ) -> bytes:
        """The reserved note's bytes, in memory; when it cannot be fetched its
        seconds go back and NoteUnavailable rises."""
        try:
            data = await fetch()
        except Exception:
            log.warning("a voice note could not be fetched", exc_info=True)
            data = None
        if data is None or not data or len(data) > note.max_bytes:
            await self.give_back(hold)
            raise NoteUnavailable()
        return data

    async def transcribe(self, hold: VoiceHold, data: bytes, note: VoiceNote) -> str:
        """The note's text. On any failure its seconds go back before the error rises."""
        assert self.stt is not None
        try:
            text = await self.stt.transcribe(data, note.filename, note.mime_type)
            if not text:
                raise NothingHeard()
        except BaseException:
            await self.give_back(hold)
            raise
        return text

    async def give_back(self, hold: VoiceHold) -> None:
        """Return the note's seconds to the window they came from."""
        try:
            async with self.db.write() as session:
                await self.quotas.release(
                    session, hold.user_id, QuotaKey.VOICE.value, hold.window_start, hold.seconds
                )
        except Exception:
            log.exception(
                "could not give back %s voice seconds of user %s", hold.seconds, hold.user_id
            )

    async def aclose(self) -> None:
        if self.stt is not None:
            await self.stt.aclose()
