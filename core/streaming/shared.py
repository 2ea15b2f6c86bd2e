"""The platform's limits kept across processes: several `oneai run` processes serve
one bot, and the platform counts the bot's calls, not each process's. With Redis:

- `SharedRateLimiter`: the bot's global budget as one GCRA state on a Redis key
  (the time each next call may go), so two processes together stay within it;
- `SharedChatThrottle`: a chat's turn as a lease on a Redis hash (one call at a
  time in the chat, whichever process makes it) and the earliest time of its next
  call, written when the turn ends.

Both keep the in-process parts of their local versions first (the queue of
waiters, the chat's lock), so a process asks Redis once per call, not once per
waiter. Redis keeps the clock (`TIME`), so the processes' clocks never meet. If
Redis fails, a call goes by the local limits only: an answer shown a little too
fast is better than none.
"""

from __future__ import annotations

import asyncio
import logging
import time
import uuid
from collections.abc import AsyncIterator, Hashable
from contextlib import asynccontextmanager
from typing import Any

from redis.exceptions import RedisError

from core.streaming.throttle import ChatGate, ChatThrottle, RateLimiter

log = logging.getLogger(__name__)

# Redis numbers below are microseconds of Redis's own clock, stored as whole
# numbers ('%.0f': Lua 5.1's tostring would round them to 14 digits).
_TAKE = """
local t = redis.call('TIME')
local now = tonumber(t[1]) * 1000000 + tonumber(t[2])
local period = tonumber(ARGV[1])
local burst = tonumber(ARGV[2])
local tat = tonumber(redis.call('GET', KEYS[1]) or '0')
if tat < now then tat = now end
local wait = tat - now - (burst - 1) * period
if wait > 0 then return wait end
local ttl = math.ceil((tat + period - now) / 1000) + 1000
redis.call('SET', KEYS[1], string.format('%.0f', tat + period), 'PX', ttl)
return 0
"""

_CLAIM = """
local t = redis.call('TIME')
local now = tonumber(t[1]) * 1000000 + tonumber(t[2])
local v = redis.call('HMGET', KEYS[1], 'next', 'holder', 'lease')
local lease = tonumber(v[3] or '0')
if v[2] and v[2] ~= ARGV[1] and lease > now then
  return math.min(lease - now, tonumber(ARGV[3]))
end
local nxt = tonumber(v[1] or '0')
if nxt > now then return nxt - now end
local lease_end = string.format('%.0f', now + tonumber(ARGV[2]))
redis.call('HSET', KEYS[1], 'holder', ARGV[1], 'lease', lease_end)
redis.call('PEXPIRE', KEYS[1], math.ceil(tonumber(ARGV[2]) / 1000) + 60000)
return 0
"""

_RELEASE = """
local t = redis.call('TIME')
local now = tonumber(t[1]) * 1000000 + tonumber(t[2])
if redis.call('HGET', KEYS[1], 'holder') == ARGV[1] then
  redis.call('HDEL', KEYS[1], 'holder', 'lease')
end
local nxt = tonumber(redis.call('HGET', KEYS[1], 'next') or '0')
local want = now + tonumber(ARGV[2])
if want > nxt then
  redis.call('HSET', KEYS[1], 'next', string.format('%.0f', want))
  nxt = want
end
redis.call('PEXPIRE', KEYS[1], math.ceil(math.max(nxt - now, 0) / 1000) + 60000)
return 0
"""

_RENEW = """
if redis.call('HGET', KEYS[1], 'holder') ~= ARGV[1] then return 0 end
local t = redis.call('TIME')
local now = tonumber(t[1]) * 1000000 + tonumber(t[2])
redis.call('HSET', KEYS[1], 'lease', string.format('%.0f', now + tonumber(ARGV[2])))
redis.call('PEXPIRE', KEYS[1], math.ceil(tonumber(ARGV[2]) / 1000) + 60000)
return 1
"""

# A turn's lease runs out this long after it was last renewed: a process that died
# holding it blocks the chat no longer. A live holder renews it every third of that
# (a turn may wait long for a global token under load).
LEASE_SECONDS = 10.0
POLL_SECONDS = 0.02  # how often a turn held by another process is asked about again
_WARN_EVERY = 60.0  # seconds between two warnings about Redis failing


def _micros(seconds: float) -> int:
    return max(0, round(seconds * 1_000_000))


class _Warner:
    """One warning per minute while Redis fails, not one per call."""

    def __init__(self) -> None:
        self._last = -_WARN_EVERY

    def __call__(self, what: str, exc: BaseException) -> None:
        now = time.monotonic()
        if now - self._last >= _WARN_EVERY:
            self._last = now
            log.warning("%s: Redis failed (%s); going by this process's limits", what, exc)


class SharedRateLimiter(RateLimiter):
    """`RateLimiter` whose tokens are shared by every process using `key`."""

    def __init__(self, redis: Any, key: str, rate: float, burst: float | None = None) -> None:
        super().__init__(rate, burst)
        self.key = key
        self._take = redis.register_script(_TAKE)
        self._period = _micros(1 / rate)
        self._warn = _Warner()

    async def _wait(self) -> float:
        """Take a token if one is free (0.0), else the seconds until one may be."""
        wait = await self._take(keys=[self.key], args=[self._period, int(self.burst)])
        return int(wait) / 1_000_000

    async def acquire(self) -> None:
        async with self._queue:
            while True:
                try:
                    wait = await self._wait()
                except RedisError as exc:
                    self._warn("global rate limit", exc)
                    break
                if wait <= 0:
                    return
                await asyncio.sleep(wait)
        await super().acquire()

    async def try_take(self) -> bool:
        if self._queue.locked():
            return False
        try:
            return await self._wait() <= 0
        except RedisError as exc:
            self._warn("global rate limit", exc)
            return self.try_acquire()


class SharedChatThrottle(ChatThrottle):
    """`ChatThrottle` whose turns and spacing are shared by every process using
    `prefix`: a chat's turn is taken here first, then in Redis."""

    def __init__(self, redis: Any, prefix: str) -> None:
        super().__init__()
        self.prefix = prefix
        self._claim = redis.register_script(_CLAIM)
        self._release = redis.register_script(_RELEASE)
        self._renew = redis.register_script(_RENEW)
        self._warn = _Warner()

    def name(self, key: Hashable) -> str:
        parts = key if isinstance(key, tuple) else (key,)
        return self.prefix + ":".join(str(part) for part in parts)

    @asynccontextmanager
    async def turn(self, key: Hashable) -> AsyncIterator[ChatGate]:
        async with super().turn(key) as gate:
            name = self.name(key)
            token = uuid.uuid4().hex
            held = await self._take_turn(name, token)
            keeper = asyncio.create_task(self._keep(name, token)) if held else None
            try:
                yield gate
            finally:
                if keeper is not None:
                    keeper.cancel()
                if held:
                    loop = asyncio.get_running_loop()
                    hold = _micros(gate.next_at - loop.time())
                    try:
                        await self._release(keys=[name], args=[token, hold])
                    except RedisError as exc:
                        self._warn("chat turn", exc)

    async def _keep(self, name: str, token: str) -> None:
        """Renew the lease while the turn lasts."""
        while True:
            await asyncio.sleep(LEASE_SECONDS / 3)
            try:
                await self._renew(keys=[name], args=[token, _micros(LEASE_SECONDS)])
            except RedisError as exc:
                self._warn("chat turn", exc)

    async def _take_turn(self, name: str, token: str) -> bool:
        """Wait for the chat's turn in Redis; False if Redis failed (local turn only)."""
        args = [token, _micros(LEASE_SECONDS), _micros(POLL_SECONDS)]
        while True:
            try:
                wait = int(await self._claim(keys=[name], args=args))
            except RedisError as exc:
                self._warn("chat turn", exc)
                return False
            if wait <= 0:
                return True
            await asyncio.sleep(wait / 1_000_000)
