"""Runs the Telegram bot: long polling by default, webhook mode when
TELEGRAM_WEBHOOK_URL is set (on the shared aiohttp server)."""

from __future__ import annotations

import asyncio
import contextlib
import logging

from aiogram.exceptions import AiogramError, TelegramNetworkError, TelegramUnauthorizedError
from aiohttp import web

from bot.telegram import broadcast
from bot.telegram.factory import (
    bot_limits,
    build_bot,
    build_dispatcher,
    build_storage,
    register_commands,
)
from bot.telegram.routers import admin_broadcast
from bot.telegram.webhook import BoundedRequestHandler
from bot.telegram.webhook_once import set_webhook_once
from core.admin.access import admin_user_ids
from core.config import ConfigError, TelegramSettings
from core.services import Services
from payments.service import Payments

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


class TelegramPlatform:
    """The bot, its dispatcher and how it stops: first no new updates, then (once
    the answers in progress have shown their final state) the session closes."""

    name = "telegram"

    def __init__(
        self, services: Services, app: web.Application, payments: Payments | None = None
    ) -> None:
        """Builds everything; in webhook mode mounts the route (before the server starts)."""
        self.settings = services.settings.telegram
        self.bot = build_bot(self.settings)
        redis_url = services.settings.redis.redis_url
        self.storage = build_storage(redis_url)
        # With Redis, every process serving this bot keeps its limits together.
        self.limits = bot_limits(self.bot, self.settings, redis_url)
        self.dispatcher, self.answerer = build_dispatcher(
            services, self.bot, storage=self.storage, payments_service=payments, limits=self.limits
        )
        broadcast.attach(services.broadcasts, self.bot, admin_broadcast.progress_markup)
        self.services = services
        secret = self.settings.webhook_secret
        self.secret = secret.get_secret_value() if secret else None
        self.webhook: BoundedRequestHandler | None = None
        if self.settings.webhook_url:
            self.webhook = BoundedRequestHandler(
                self.dispatcher, self.bot, secret_token=self.secret
            )
            self.webhook.register(app, path=self.settings.webhook_path)
        self._stopped = asyncio.Event()
        # Ready for /readyz: getMe succeeded and polling or the webhook is set.
        self.connected = False

    async def serve(self) -> None:
        """Take updates until `stop_intake`."""
        me = await self.bot.get_me()
        log.info("Telegram: @%s", me.username)
        admins = await admin_user_ids(self.services)
        await register_commands(self.bot, admins.telegram)
        allowed = self.dispatcher.resolve_used_update_types()
        if self.settings.webhook_url:
            await set_webhook_once(
                self.bot,
                self.settings.webhook_url + self.settings.webhook_path,
                self.secret,
                allowed,
                self.services.settings.redis.redis_url,
            )
            # Updates arrive through the HTTP server; startup hooks (the outbox
            # sender) run here as polling would run them.
            await self.dispatcher.emit_startup(bot=self.bot)
            self.connected = True
            try:
                await self._stopped.wait()
            finally:
                await self.dispatcher.emit_shutdown(bot=self.bot)
        else:
            await self.bot.delete_webhook()
            self.connected = True
            # The session stays open after polling stops: answers still streaming
            # need it for their final edits.
            await self.dispatcher.start_polling(
                self.bot,
                handle_signals=False,
                allowed_updates=allowed,
                close_bot_session=False,
            )

    async def stop_intake(self) -> None:
        """No more updates: polling stops (what is not fetched stays with Telegram
        for the next process); the webhook answers 503 (Telegram delivers again)."""
        self._stopped.set()
        self.connected = False
        if self.webhook is not None:
            self.webhook.closed = True
        else:
            # RuntimeError: polling never started (get_me failed).
            with contextlib.suppress(RuntimeError):
                await self.dispatcher.stop_polling()

    async def wait_idle(self) -> None:
        """Until every answer in progress has shown its final state."""
        await self.answerer.wait_idle()

    async def close(self) -> None:
        await self.limits.close()
        await self.storage.close()
        await self.bot.session.close()


def setup(
    services: Services, app: web.Application, payments: Payments | None = None
) -> TelegramPlatform:
    """`app`: the HTTP application the webhook route is mounted on (webhook mode);
    `payments`: the providers `oneai run` shares (built here when not given)."""
    return TelegramPlatform(services, app, payments)
