"""The one place that tells the time. Services take a `now` callable defaulting to
`utcnow`, so tests pass their own clock."""

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

    def now(self) -> datetime:
        current = datetime.now(UTC)
        if current <= self._last:
            current = self._last + timedelta(microseconds=1)
        self._last = current
        return current


clock = Clock()


def utcnow() -> datetime:
    return clock.now()
