"""The one place that tells the time, so tests can move it."""

from __future__ import annotations

from datetime import UTC, datetime, timedelta


class Clock:
    """UTC wall clock whose readings never repeat within a process.

    Revision switching orders sibling branches by when they were last made active;
    strictly increasing readings keep that order exact even for operations that
    land within the same microsecond.
    """

    def __init__(self) -> None:
        self._last = datetime.min.replace(tzinfo=UTC)
        self._offset = timedelta(0)

    def _wall(self) -> datetime:
        return datetime.now(UTC) + self._offset

    def now(self) -> datetime:
        current = self._wall()
        if current <= self._last:
            current = self._last + timedelta(microseconds=1)
        self._last = current
        return current

    def advance(self, delta: timedelta) -> None:
        """Move the clock forward (tests of resets and expiry)."""
        self._offset += delta

    def set(self, moment: datetime) -> None:
        """Jump to a moment (tests); later readings continue from there."""
        self._offset = moment - datetime.now(UTC)
        self._last = datetime.min.replace(tzinfo=UTC)


clock = Clock()


def utcnow() -> datetime:
    return clock.now()
