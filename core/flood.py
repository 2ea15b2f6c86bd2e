"""How often one person may reach the bot: at most `limit` events per `window`
seconds; the first event over the limit gets a polite note, later ones are dropped
silently. One per platform adapter, shared by its handlers; with Redis
(`core.shared_flood.SharedFloodGuard`) one for all the processes serving the bot,
so a person whose updates are spread over them is counted once."""

from __future__ import annotations

import time
from collections import deque
from collections.abc import Hashable
from enum import StrEnum

_FORGET_AT = 50_000  # people tracked before idle ones are forgotten


class Verdict(StrEnum):
    PASS = "pass"
    WARN = "warn"  # over the limit just now: say "slow down" once
    DROP = "drop"


class FloodGuard:
    def __init__(self, limit: int = 20, window: float = 10.0) -> None:
        self.limit = limit
        self.window = window
        self._seen: dict[Hashable, deque[float]] = {}

    async def check(self, person: Hashable) -> Verdict:
        return self.check_here(person)

    def check_here(self, person: Hashable) -> Verdict:
        """The verdict from this process's own count."""
        now = time.monotonic()
        stamps = self._seen.setdefault(person, deque())
        while stamps and now - stamps[0] > self.window:
            stamps.popleft()
        if len(stamps) >= self.limit:
            if len(stamps) == self.limit:
                stamps.append(now)  # marks that the note went out
                return Verdict.WARN
            return Verdict.DROP
        stamps.append(now)
        if len(self._seen) > _FORGET_AT:  # memory stays bounded
            self._seen = {k: v for k, v in self._seen.items() if v and now - v[-1] < self.window}
        return Verdict.PASS
