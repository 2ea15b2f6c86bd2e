"""Rate limits shared by every stream: a global token bucket and per-chat spacing.

Both read the running event loop's clock, the one `asyncio.sleep` follows, so
they stay consistent with every wait and timeout in the driver.
"""

from __future__ import annotations

import asyncio
from collections.abc import AsyncIterator, Hashable
from contextlib import asynccontextmanager

_PRUNE_MIN = 1024  # idle chat gates kept before a sweep drops them


def _now() -> float:
    return asyncio.get_running_loop().time()


class RateLimiter:
    """A token bucket: `rate` calls per second on average, bursts up to `burst`.
    One per bot process, shared by all its chats.

    Tokens are taken when a call actually goes out, never reserved ahead: after
    the event loop stalls (a long GC pause, a slow callback), the waiters that
    overslept do not all go at once, at most `burst` do. The platform counts
    calls as they arrive, so catching up would be a flood."""

    def __init__(self, rate: float, burst: float | None = None) -> None:
        if rate <= 0:
            raise ValueError("rate must be positive")
        self.rate = rate
        self.burst = max(1.0, burst if burst is not None else rate)
        self._tokens = self.burst
        self._stamp: float | None = None
        # Waiters queue here in arrival order; the one holding it waits for a token.
        self._queue = asyncio.Lock()

    def _refill(self) -> None:
        now = _now()
        if self._stamp is not None:
            self._tokens = min(self.burst, self._tokens + (now - self._stamp) * self.rate)
        self._stamp = now

    def try_acquire(self) -> bool:
        """Take a token only if one is free now and nobody waits (for calls worth
        skipping)."""
        if self._queue.locked():
            return False
        self._refill()
        if self._tokens >= 1:
            self._tokens -= 1
            return True
        return False

    async def try_take(self) -> bool:
        """`try_acquire` where the budget may live elsewhere (`SharedRateLimiter`)."""
        return self.try_acquire()

    async def acquire(self) -> None:
        """Take a token, waiting for it (after everybody who came first) if needed."""
        async with self._queue:
            self._refill()
            if self._tokens < 1:
                await asyncio.sleep((1 - self._tokens) / self.rate)
                self._refill()
            self._tokens -= 1


class ChatGate:
    """One chat's turn-taking: one call at a time, none before `next_at`."""

    def __init__(self) -> None:
        self.lock = asyncio.Lock()
        self.next_at = 0.0
        self.users = 0

    def hold(self, seconds: float) -> None:
        """Keep the chat's next call at least `seconds` from now."""
        self.next_at = max(self.next_at, _now() + seconds)


class ChatThrottle:
    """The gates of all chats, keyed by `Sink.chat_key`. Streams in the same chat
    take turns through one gate, so their calls are spaced as one stream's are."""

    def __init__(self) -> None:
        self._gates: dict[Hashable, ChatGate] = {}
        self._prune_at = _PRUNE_MIN

    def __len__(self) -> int:
        return len(self._gates)

    @asynccontextmanager
    async def turn(self, key: Hashable) -> AsyncIterator[ChatGate]:
        """Wait for the chat's turn; the caller makes at most one call inside it
        and `hold`s the gate for as long as the next call must wait."""
        gate = self._gates.get(key)
        if gate is None:
            self._prune()
            gate = self._gates[key] = ChatGate()
        gate.users += 1
        try:
            async with gate.lock:
                delay = gate.next_at - _now()
                if delay > 0:
                    await asyncio.sleep(delay)
                yield gate
        finally:
            gate.users -= 1

    def _prune(self) -> None:
        # Amortised: sweep only when the registry doubled since the last sweep.
        if len(self._gates) < self._prune_at:
            return
        now = _now()
        for key in [k for k, g in self._gates.items() if g.users == 0 and g.next_at <= now]:
            del self._gates[key]
        self._prune_at = max(_PRUNE_MIN, 2 * len(self._gates))
