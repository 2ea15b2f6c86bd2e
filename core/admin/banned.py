"""What a banned person hears: one clear note an hour at most, and never an answer
from a model. Telegram and Discord ask `should_tell_banned` before they reply to a
banned person and stay silent when it says no.

The memory is this process's, bounded: with several processes a person may hear
the note once per process per hour.
"""

from __future__ import annotations

import time
from collections import OrderedDict

from core.i18n import t

NOTE_INTERVAL = 3600.0  # seconds between two notes to one person
REMEMBERED = 50_000  # people remembered at most (the oldest are forgotten first)


class BannedNotes:
    def __init__(self, interval: float = NOTE_INTERVAL, size: int = REMEMBERED) -> None:
        self.interval = interval
        self.size = size
        self._told: OrderedDict[int, float] = OrderedDict()

    def should_tell(self, user_id: int, now: float | None = None) -> bool:
        """True at most once per `interval` per person (and then remembers it)."""
        moment = time.monotonic() if now is None else now
        last = self._told.get(user_id)
        if last is not None and moment - last < self.interval:
            return False
        self._told[user_id] = moment
        self._told.move_to_end(user_id)
        while len(self._told) > self.size:
            self._told.popitem(last=False)
        return True

    def forget(self, user_id: int) -> None:
        self._told.pop(user_id, None)

    def __len__(self) -> int:
        return len(self._told)


_notes = BannedNotes()


def should_tell_banned(user_id: int) -> bool:
    """Whether to answer this banned person now (with `banned_note`); at most once
    an hour per person. Never send a banned person's message to a model."""
    return _notes.should_tell(user_id)


def banned_note(lang: str | None) -> str:
    """The note itself, in the person's language."""
    return t(lang, "blocked")


def forget_banned(user_id: int) -> None:
    """A ban or unban: the next note is due at once."""
    _notes.forget(user_id)
