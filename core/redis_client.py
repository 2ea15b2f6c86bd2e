"""Redis clients made one way: a command that meets a dropped connection (a Redis
restart, a proxy or NAT reset) is retried once on a fresh one."""

from __future__ import annotations

from typing import Any

from redis.asyncio import Redis
from redis.asyncio.retry import Retry
from redis.backoff import NoBackoff
from redis.exceptions import ConnectionError, TimeoutError


def connect(url: str, **options: Any) -> Redis:
    return Redis.from_url(
        url,
        retry=Retry(NoBackoff(), 1),
        retry_on_error=[ConnectionError, TimeoutError],
        **options,
    )
