"""`setWebhook` once for all the processes serving a bot.

Every process starts with the same webhook settings; if each called setWebhook,
Telegram would be told the same thing once per process and restart. With Redis
the first process to start takes a lock, sets the webhook and leaves a
fingerprint of what it set (URL, secret, update types); the others find the same
fingerprint, check with getWebhookInfo that Telegram still has that URL, and
leave it. A process with other settings sets them (the newest start wins): during
a deploy that changes the URL or the secret, processes with the old settings must
be stopped before the new ones start, or they set the old ones back when they
restart. Without Redis exactly one process serves the bot and simply sets it.
"""

from __future__ import annotations

import hashlib
import logging
from collections.abc import Sequence

from aiogram import Bot

log = logging.getLogger(__name__)

LOCK_SECONDS = 60.0  # held at most this long by a process that dies holding it


def fingerprint(bot: Bot, url: str, secret: str | None, allowed: Sequence[str]) -> str:
    # Keyed by the token: the secret is never stored in a form easy to guess back.
    material = "\n".join([bot.token, url, secret or "", ",".join(sorted(allowed))])
    return hashlib.sha256(material.encode()).hexdigest()


async def set_webhook_once(
    bot: Bot, url: str, secret: str | None, allowed: Sequence[str], redis_url: str | None
) -> bool:
    """Make Telegram deliver to `url`; True if this process called setWebhook."""
    if not redis_url:
        await bot.set_webhook(url, secret_token=secret, allowed_updates=list(allowed))
        return True
    from core.redis_client import connect  # with REDIS_URL only

    key = f"oneai:tg:{bot.id}:webhook"
    wanted = fingerprint(bot, url, secret, allowed)
    redis = connect(redis_url, socket_connect_timeout=5, socket_timeout=5)
    try:
        async with redis.lock(key + ":lock", timeout=LOCK_SECONDS, blocking_timeout=LOCK_SECONDS):
            stored = await redis.get(key)
            if stored in (wanted, wanted.encode()):
                info = await bot.get_webhook_info()
                if info.url == url:
                    log.info("Telegram webhook: already set by another process")
                    return False
            await bot.set_webhook(url, secret_token=secret, allowed_updates=list(allowed))
            await redis.set(key, wanted)
            return True
    finally:
        await redis.aclose()
