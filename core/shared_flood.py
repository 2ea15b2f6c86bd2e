"""The flood guard's count kept in Redis, for every process serving the bot. Its own
module so that a process without Redis never imports the client."""

from __future__ import annotations

import logging
import uuid
from collections.abc import Hashable
from typing import Any

from redis.exceptions import RedisError

from core.flood import FloodGuard, Verdict

log = logging.getLogger(__name__)

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
