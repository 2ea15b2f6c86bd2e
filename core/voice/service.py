"""A voice note's way to text: checked against the plan before anything is
downloaded, its seconds reserved atomically, transcribed, and its seconds given
back when no prompt comes of it. The message unit is not touched here: the normal
send flow reserves it once the transcript exists."""

from __future__ import annotations

import logging
import math
from collections.abc import Awaitable, Callable
from dataclasses import dataclass
from datetime import datetime

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
    def __init__(self, db: Database, quotas: QuotaService, stt: STTClient | None) -> None:
        self.db = db
        self.quotas = quotas
        self.stt = stt

    @property
    def enabled(self) -> bool:
        return self.stt is not None

    def check(self, note: VoiceNote, tier: Tier) -> int:
        """The seconds the note costs, or why it is refused (nothing taken)."""
        if self.stt is None:
            raise VoiceDisabled()
        if note.size is not None and note.size > note.max_bytes:
            raise NoteTooBig(note.max_bytes // (1024 * 1024))
        limit = TIERS[tier].voice_note_seconds
        if note.seconds > limit:
            raise NoteTooLong(note.seconds, limit)
        return note.seconds

    async def reserve(self, user_id: int, tier: Tier, note: VoiceNote) -> VoiceHold:
        """Take the note's seconds from today's voice minutes, in one atomic statement."""
        seconds = self.check(note, tier)
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
        try:
            data = await fetch()
        except Exception:
            log.warning("a voice note could not be fetched", exc_info=True)
            data = None
        if data is None or len(data) > note.max_bytes:
            await self.give_back(hold)
            raise NoteUnavailable()
        return hold, await self.transcribe(hold, data, note)

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
