"""How often one person may reach the bot: at most `limit` events per `window`
seconds; the first event over the limit gets a polite note, later ones are dropped
silently. One per platform adapter, shared by its handlers; with Redis
(`SharedFloodGuard`) one for all the processes serving the bot, so a person
whose updates are spread over them is counted once."""

from __future__ import annotations

import logging
import time
import uuid
from collections import deque
from collections.abc import Hashable
from enum import StrEnum
from typing import Any

from redis.exceptions import RedisError

log = logging.getLogger(__name__)

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


# The same rule on a sorted set of event times (microseconds of Redis's clock).
_CHECK = """
local t = redis.call('TIME')
local now = tonumber(t[1]) * 1000000 + tonumber(t[2])
local window = tonumber(ARGV[1])
local limit = tonumber(ARGV[2])
redis.call('ZREMRANGEBYSCORE', KEYS[1], '-inf', '(' .. string.format('%.0f', now - window))
local count = redis.call('ZCARD', KEYS[1])
local verdict = 0
if count >= limit then
  if count > limit then return 2 end
  verdict = 1
end
redis.call('ZADD', KEYS[1], string.format('%.0f', now), ARGV[3])
redis.call('PEXPIRE', KEYS[1], math.ceil(window / 1000))
return verdict
"""
_VERDICTS = (Verdict.PASS, Verdict.WARN, Verdict.DROP)


class SharedFloodGuard(FloodGuard):
    """Counts in Redis under `prefix` + person; if Redis fails, counts here."""

    def __init__(self, redis: Any, prefix: str, limit: int = 20, window: float = 10.0) -> None:
        super().__init__(limit, window)
        self.prefix = prefix
        self._check = redis.register_script(_CHECK)

    async def check(self, person: Hashable) -> Verdict:
        try:
            answer = await self._check(
                keys=[f"{self.prefix}{person}"],
                args=[round(self.window * 1_000_000), self.limit, uuid.uuid4().hex],
            )
        except RedisError as exc:
            log.warning("flood guard: Redis failed (%s); counting in this process", exc)
            return self.check_here(person)
        return _VERDICTS[int(answer)]
