"""Runs the Telegram bot: long polling by default, webhook mode when
TELEGRAM_WEBHOOK_URL is set (on the shared aiohttp server)."""

from __future__ import annotations

import asyncio
import logging
from collections.abc import Callable, Coroutine
from typing import Any

from aiogram.exceptions import AiogramError, TelegramNetworkError, TelegramUnauthorizedError
from aiogram.webhook.aiohttp_server import SimpleRequestHandler
from aiohttp import web

from bot.http import INTERRUPTED_KEY, PAYMENTS_KEY
from bot.telegram.factory import build_bot, build_dispatcher, build_storage, register_commands
from core.config import ConfigError, TelegramSettings
from core.services import Services

log = logging.getLogger(__name__)


async def check_token(settings: TelegramSettings) -> None:
    """Ask Telegram who the bot is before anything starts: a refused token stops start-up
    with one line instead of a platform task that fails beside running ones."""
    assert settings.bot_token is not None
    secret = settings.bot_token.get_secret_value()
    bot = build_bot(settings)
    try:
        await bot.get_me(request_timeout=30)
    except TelegramUnauthorizedError:
        raise ConfigError("TELEGRAM_BOT_TOKEN was refused by Telegram (Unauthorized)") from None
    except TelegramNetworkError as exc:
        reason = exc.message.replace(secret, "***")  # a URL in it would carry the token
        raise ConfigError(f"TELEGRAM_API_URL: cannot reach {settings.api_url} ({reason})") from None
    except AiogramError as exc:
        reason = str(exc).replace(secret, "***")
        raise ConfigError(
            f"TELEGRAM_BOT_TOKEN / TELEGRAM_API_URL: getMe at {settings.api_url} failed ({reason})"
        ) from None
    finally:
        await bot.session.close()


def setup(services: Services, app: web.Application) -> Callable[[], Coroutine[Any, Any, None]]:
    """Build the bot; in webhook mode mount its route (before the server starts).
    Returns the coroutine function that runs it."""
    settings = services.settings.telegram
    bot = build_bot(settings)
    storage = build_storage(services.settings.redis.redis_url)
    dispatcher, answerer = build_dispatcher(
        services, bot, storage=storage, payments_service=app.get(PAYMENTS_KEY)
    )
    secret = settings.webhook_secret.get_secret_value() if settings.webhook_secret else None
    if settings.webhook_url:
        SimpleRequestHandler(dispatcher, bot, secret_token=secret).register(
            app, path=settings.webhook_path
        )

    async def serve() -> None:
        try:
            me = await bot.get_me()
            log.info("Telegram: @%s", me.username)
            await register_commands(bot)
            await answerer.announce_interrupted(app.get(INTERRUPTED_KEY, []))
            allowed = dispatcher.resolve_used_update_types()
            if settings.webhook_url:
                await bot.set_webhook(
                    settings.webhook_url + settings.webhook_path,
                    secret_token=secret,
                    allowed_updates=allowed,
                )
                # Updates arrive through the HTTP server; startup hooks (the outbox
                # sender) run here as polling would run them.
                await dispatcher.emit_startup(bot=bot)
                try:
                    await asyncio.Event().wait()
                finally:
                    await dispatcher.emit_shutdown(bot=bot)
            else:
                await bot.delete_webhook()
                await dispatcher.start_polling(bot, handle_signals=False, allowed_updates=allowed)
        finally:
            await storage.close()
            await bot.session.close()

    return serve
