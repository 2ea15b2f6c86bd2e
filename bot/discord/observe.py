"""What Discord traffic tells the operator: REST calls by route and status, the 429s
discord.py waits out by itself, and gateway events by type."""

from __future__ import annotations

import functools
import logging
from collections.abc import Callable
from typing import Any

import discord
from discord.http import Route

from core import logs, metrics

# discord.py logs each 429 it sleeps through with this format (method, url, seconds).
_RATE_LIMITED = "We are being rate limited."
_GLOBAL_LIMIT = "Global rate limit has been hit."


class _CountRateLimits(logging.Filter):
    """Counts discord.py's own 429 retries from its warnings (it retries them inside
    HTTPClient.request, so the call itself ends well)."""

    def filter(self, record: logging.LogRecord) -> bool:
        message = record.msg
        if isinstance(message, str) and message.startswith((_RATE_LIMITED, _GLOBAL_LIMIT)):
            args = record.args if isinstance(record.args, tuple) else ()
            seconds = args[-1] if args and isinstance(args[-1], int | float) else 0.0
            metrics.rate_limited("discord", float(seconds))
        return True


_FILTER = _CountRateLimits()

# Gateway events that are updates from people (or their payments), by our kind name.
_EVENTS = {
    "MESSAGE_CREATE": "message",
    "MESSAGE_UPDATE": "message_edit",
    "INTERACTION_CREATE": "interaction",
    "ENTITLEMENT_CREATE": "entitlement",
    "ENTITLEMENT_UPDATE": "entitlement",
}


def _sender(data: dict[str, Any]) -> int | None:
    user = data.get("author") or data.get("user") or (data.get("member") or {}).get("user")
    if isinstance(user, dict) and "id" in user:
        return int(user["id"])
    user_id = data.get("user_id")
    return int(user_id) if user_id else None


def _observed(
    parse: Callable[[dict[str, Any]], None], kind: str
) -> Callable[[dict[str, Any]], None]:
    """`parse` (discord.py's parser of one gateway event), counting the event and
    setting the log context while it runs: the tasks it starts for handlers, views
    and slash commands copy that context."""
    counter = metrics.UPDATES.labels("discord", kind)

    def parse_observed(data: dict[str, Any]) -> None:
        counter.inc()
        tokens = (
            logs.PLATFORM.set("discord"),
            logs.UPDATE_ID.set(data.get("id")),
            logs.USER_ID.set(_sender(data)),
        )
        try:
            parse(data)
        finally:
            logs.USER_ID.reset(tokens[2])
            logs.UPDATE_ID.reset(tokens[1])
            logs.PLATFORM.reset(tokens[0])

    return parse_observed


def instrument(client: discord.Client) -> None:
    """Counts `client`'s REST calls and gateway events from now on."""
    http = client.http
    request = http.request

    @functools.wraps(request)
    async def counted(route: Route, **kwargs: Any) -> Any:
        # The route's template (/channels/{channel_id}/messages): few distinct labels.
        method = f"{route.method} {route.path}"
        try:
            result = await request(route, **kwargs)
        except discord.HTTPException as exc:
            metrics.platform_call("discord", method, str(exc.status))
            raise
        except BaseException:
            metrics.platform_call("discord", method, "error")
            raise
        metrics.platform_call("discord", method, "ok")
        return result

    http.request = counted  # type: ignore[method-assign]

    parsers: dict[str, Callable[[dict[str, Any]], None]] = client._connection.parsers
    for event, kind in _EVENTS.items():
        if event in parsers:
            parsers[event] = _observed(parsers[event], kind)
    logger = logging.getLogger("discord.http")
    if _FILTER not in logger.filters:
        logger.addFilter(_FILTER)
