"""The limits one bot's processes keep together: the platform's global budget, a
chat's turns and spacing, and how often one person may write. Without Redis they
are this process's own (exactly one process serves the bot then); with it, every
process of the same bot shares them under one key prefix."""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any

from core.flood import FloodGuard
from core.streaming.throttle import ChatThrottle, RateLimiter


@dataclass
class Limits:
    limiter: RateLimiter
    chats: ChatThrottle
    flood: FloodGuard
    redis: Any | None = None

    async def close(self) -> None:
        if self.redis is not None:
            await self.redis.aclose()


def build_limits(redis_url: str | None, prefix: str, per_second: float) -> Limits:
    """`prefix` names the bot (e.g. "oneai:tg:<bot id>:"); `per_second` is its
    global budget, spent evenly (no burst: a full bucket plus its refill would
    double it for a moment)."""
    if not redis_url:
        return Limits(RateLimiter(per_second, burst=1), ChatThrottle(), FloodGuard())
    # Imported with Redis only: its client takes ~15 MB that a lone process never uses.
    from core.redis_client import connect
    from core.shared_flood import SharedFloodGuard
    from core.streaming.shared import SharedChatThrottle, SharedRateLimiter

    redis = connect(redis_url, socket_connect_timeout=3, socket_timeout=3)
    return Limits(
        SharedRateLimiter(redis, prefix + "calls", per_second, burst=1),
        SharedChatThrottle(redis, prefix + "chat:"),
        SharedFloodGuard(redis, prefix + "flood:"),
        redis,
    )
