"""The accounts seen in the last few seconds, so that a person's every update does
not read their user row again.

An entry is dropped when it ages out (`TTL`) and the whole map is cleared whenever
this process writes to `users` or `identities`: at the statement, and again when its
connection goes back to the pool, after the commit, so that a read racing the write
cannot keep the old row. Another process's write is seen within `TTL`. What must be
exact (plan, ban and quota at the moment of an answer) is read again under the
user's lock in the answer's own transaction; this map only spares the lookup that
tells who is writing.
"""

from __future__ import annotations

import time
from collections import OrderedDict
from collections.abc import Callable
from dataclasses import dataclass
from datetime import datetime
from typing import Any

from sqlalchemy import event
from sqlalchemy.engine import Connection, Engine

from core.db.models import User

TTL = 10.0  # seconds
SIZE = 4096  # accounts kept at most, the least recently seen dropped first
_WRITES = (
    "UPDATE users",
    "DELETE FROM users",
    "INSERT INTO identities",
    "UPDATE identities",
    "DELETE FROM identities",
)
_TOUCHED = "oneai_accounts_touched"


@dataclass
class Seen:
    user: User
    seen_at: datetime | None  # identities.last_seen_at as read or last written
    kept_at: float  # monotonic


class RecentAccounts:
    def __init__(self, engine: Engine, clock: Callable[[], float] = time.monotonic) -> None:
        self._entries: OrderedDict[tuple[str, str], Seen] = OrderedDict()
        self._clock = clock
        # Bumped at every clear: a row read while a write was under way is not kept.
        self.generation = 0
        event.listen(engine, "after_cursor_execute", self._after_execute)
        event.listen(engine, "checkin", self._after_checkin)

    def get(self, platform: str, platform_user_id: str) -> Seen | None:
        key = (platform, platform_user_id)
        entry = self._entries.get(key)
        if entry is None:
            return None
        if self._clock() - entry.kept_at > TTL:
            del self._entries[key]
            return None
        self._entries.move_to_end(key)
        return entry

    def keep(
        self,
        platform: str,
        platform_user_id: str,
        user: User,
        seen_at: datetime | None,
        generation: int,
    ) -> None:
        """Keep what a read begun at `generation` found, if nothing was written since."""
        if generation != self.generation:
            return
        key = (platform, platform_user_id)
        self._entries[key] = Seen(user, seen_at, self._clock())
        self._entries.move_to_end(key)
        while len(self._entries) > SIZE:
            self._entries.popitem(last=False)

    def clear(self) -> None:
        self._entries.clear()
        self.generation += 1

    def _after_execute(self, conn: Connection, _cursor: Any, statement: str, *_args: Any) -> None:
        if statement.startswith(_WRITES):
            self.clear()
            conn.info[_TOUCHED] = True

    def _after_checkin(self, _dbapi_connection: Any, record: Any) -> None:
        # `conn.info` above is this record's `info`.
        if record.info.pop(_TOUCHED, False):
            self.clear()
