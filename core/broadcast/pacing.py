"""How fast one platform's broadcast messages go out.

Three rules, all per platform and shared by every broadcast this process sends:

- a token bucket a little under the platform's limit spaces the calls evenly
  (`RateLimiter`, burst 1: after a stall the calls do not all go at once);
- a 429 pauses every sender of the platform for its `retry_after`, and after
  the pause each call takes a fresh token;
- right before a call, a window guard keeps the calls started in any WINDOW
  (1.1 s) at or below the limit, whatever the event loop's or the database's
  jitter did to the spacing between the token and the call, or does to the
  time a call takes to arrive.
"""

from __future__ import annotations

import asyncio
from collections import deque

from core.streaming.throttle import RateLimiter

# The platform counts calls as they arrive. A call that arrives later than it
# started (a busy event loop, a slow connection) moves into the next second's
# count, next to calls that arrived at once: the window guard keeps the calls
# started in any WINDOW seconds within the limit, so up to WINDOW - 1 s of such
# delay never puts one call too many into a second.
WINDOW = 1.1
# The bucket runs this much under the limit: the window guard then rarely waits.
HEADROOM = 0.9


def _now() -> float:
    return asyncio.get_running_loop().time()


class Pacer:
    def __init__(self, per_second: float) -> None:
        if per_second <= 0:
            raise ValueError("per_second must be positive")
        self.per_second = per_second
        self.limiter = RateLimiter(per_second * HEADROOM, burst=1)
        self._cap = max(1, int(per_second))
        self._window: deque[float] = deque()
        self._resume_at = 0.0
        self.floods = 0  # 429s seen

    @property
    def paused(self) -> bool:
        return self._resume_at > _now()

    def pause(self, seconds: float) -> None:
        """The platform answered 429: nobody calls it for `seconds`."""
        self.floods += 1
        self.hold(seconds)

    def hold(self, seconds: float) -> None:
        """Nobody calls the platform for `seconds` (not a 429: nothing is counted)."""
        self._resume_at = max(self._resume_at, _now() + seconds)

    async def _wait_pause(self) -> None:
        # A pause can grow while it is waited out (another 429): sleep again then.
        delay = self._resume_at - _now()
        while delay > 0:
            await asyncio.sleep(delay)
            delay = self._resume_at - _now()

    async def turn(self) -> None:
        """Wait for a token taken after any pause has ended."""
        while True:
            await self._wait_pause()
            await self.limiter.acquire()
            if not self.paused:
                return

    async def go(self) -> None:
        """Right before the call: wait out a pause that began since the turn (then
        take a new turn) and keep the calls of any one second within the limit."""
        while True:
            if self.paused:
                await self.turn()
            now = _now()
            window = self._window
            while window and window[0] <= now - WINDOW:
                window.popleft()
            if len(window) < self._cap:
                window.append(now)
                return
            await asyncio.sleep(max(window[0] + WINDOW - now, 0.001))
