"""Builds the Bot and the Dispatcher, injecting the core services into handlers."""

from __future__ import annotations

import logging
from collections.abc import Awaitable, Callable, Iterable

from aiogram import Bot, Dispatcher
from aiogram.client.default import DefaultBotProperties
from aiogram.client.session.aiohttp import AiohttpSession
from aiogram.client.telegram import TelegramAPIServer
from aiogram.exceptions import TelegramBadRequest, TelegramForbiddenError
from aiogram.fsm.storage.base import BaseStorage
from aiogram.fsm.storage.memory import MemoryStorage
from aiogram.methods import (
    AnswerCallbackQuery,
    AnswerPreCheckoutQuery,
    CreateInvoiceLink,
    DeleteMessage,
    EditMessageReplyMarkup,
    EditMessageText,
    EditUserStarSubscription,
    GetUpdates,
    SendChatAction,
    SendDocument,
    SendInvoice,
    SendMessage,
    SendMessageDraft,
    SendPhoto,
)
from aiogram.methods.base import Response
from aiogram.types import BotCommand, BotCommandScopeChat, BotCommandScopeDefault

from bot.telegram.answerer import Answerer
from bot.telegram.errors import on_error
from bot.telegram.inline_filters import inline_filters
from bot.telegram.middlewares import (
    AccessMiddleware,
    BanMiddleware,
    IdentityMiddleware,
    OnceMiddleware,
    ThrottleMiddleware,
)
from bot.telegram.notices import TelegramNotices
from bot.telegram.observe import CountCalls, ObserveUpdates
from bot.telegram.routers import admin, buttons, chat, commands, fallback, menus, payments, plans
from bot.telegram.routers import link as link_router
from bot.telegram.routers import modes as modes_router
from core.config import TelegramSettings
from core.i18n import TEXTS, t
from core.once import LocalSeen, RedisSeen, SeenDeliveries
from core.services import Services
from core.shared_limits import Limits, build_limits
from core.streaming import StreamDriver
from core.workers import WorkerRegistry
from payments.service import Payments

log = logging.getLogger(__name__)

# aiogram builds `Response[<result type>]` for every API call, and pydantic caches
# these generic models only weakly: the garbage collector drops them and each call
# pays to rebuild one (milliseconds). Holding the ones the bot uses keeps them built.
_RESPONSE_MODELS = [
    Response[method.__returning__]  # type: ignore[name-defined]
    for method in (
        SendMessage,
        EditMessageText,
        DeleteMessage,
        SendChatAction,
        AnswerCallbackQuery,
        SendMessageDraft,
        SendDocument,
        SendPhoto,
        GetUpdates,
        EditMessageReplyMarkup,
        SendInvoice,
        CreateInvoiceLink,
        AnswerPreCheckoutQuery,
        EditUserStarSubscription,
    )
]

COMMANDS = (
    "start",
    "help",
    "new",
    "model",
    "mode",
    "history",
    "rename",
    "export",
    "usage",
    "settings",
    "image",
    "search",
    "plan",
    "link",
    "cancel_subscription",
    "paysupport",
    "cancel",
)


def build_bot(settings: TelegramSettings) -> Bot:
    if settings.bot_token is None:
        raise ValueError("TELEGRAM_BOT_TOKEN is not set")
    session = AiohttpSession(api=TelegramAPIServer.from_base(settings.api_url))
    return Bot(
        settings.bot_token.get_secret_value(),
        session=session,
        default=DefaultBotProperties(link_preview_is_disabled=True),
    )


def star_stopper(bot: Bot) -> Callable[[int, str], Awaitable[bool]]:
    """Ends a Telegram Stars subscription (a refunded one must not renew)."""

    async def stop(user_id: int, charge_id: str) -> bool:
        return await bot.edit_user_star_subscription(
            user_id=user_id, telegram_payment_charge_id=charge_id, is_canceled=True
        )

    return stop


def build_storage(redis_url: str | None) -> BaseStorage:
    if redis_url is None:
        return MemoryStorage()
    from aiogram.fsm.storage.redis import RedisStorage

    from core.redis_client import connect

    # A reset connection is retried once instead of losing the update.
    return RedisStorage(redis=connect(redis_url))


def bot_limits(bot: Bot, settings: TelegramSettings, redis_url: str | None) -> Limits:
    """The limits every process serving this bot keeps together (with Redis)."""
    return build_limits(redis_url, f"oneai:tg:{bot.id}:", settings.global_edits_per_second)


def build_seen(redis_url: str | None, workers: WorkerRegistry | None = None) -> SeenDeliveries:
    """With Redis, `workers` lets a delivery taken by a dead process be taken over."""
    if not redis_url:
        return LocalSeen()
    if workers is None:
        return RedisSeen(redis_url)
    return RedisSeen(redis_url, worker_id=workers.worker_id, gone=workers.gone)


def build_dispatcher(
    services: Services,
    bot: Bot,
    *,
    storage: BaseStorage | None = None,
    settings: TelegramSettings | None = None,
    payments_service: Payments | None = None,
    notices_poll_seconds: float = 5.0,
    seen: SeenDeliveries | None = None,
    limits: Limits | None = None,
) -> tuple[Dispatcher, Answerer]:
    """`limits`: what this bot's processes share (`bot_limits`); this process's
    own when not given."""
    settings = settings or services.settings.telegram
    payments_service = payments_service or Payments.build(services)
    # Every Bot API call this bot makes is counted (once, however it was built).
    if not any(isinstance(m, CountCalls) for m in bot.session.middleware):
        bot.session.middleware(CountCalls())
    # Admin refunds of Stars payments go through this bot.
    payments_service.refunds.use_telegram(bot.refund_star_payment, star_stopper(bot))
    limits = limits or build_limits(None, "", settings.global_edits_per_second)
    driver = StreamDriver(global_limiter=limits.limiter, chats=limits.chats)
    answerer = Answerer(
        bot,
        services,
        driver,
        edit_interval=settings.edit_interval,
        stream_mode=settings.stream_mode,
    )
    dispatcher = Dispatcher(
        storage=storage or MemoryStorage(),
        services=services,
        answerer=answerer,
        payments=payments_service,
    )
    # Plan changes reach people from the outbox while the bot runs.
    notices = TelegramNotices(
        bot, services, notices_poll_seconds, show_interrupted=answerer.show_interrupted
    )
    dispatcher.startup.register(notices.start)
    dispatcher.shutdown.register(notices.stop)
    # Failures before an answer starts reach the person as "please send it again".
    dispatcher.errors.register(on_error)
    seen = seen or build_seen(services.settings.redis.redis_url, services.workers)
    dispatcher.shutdown.register(seen.close)
    dispatcher.update.outer_middleware(ObserveUpdates())
    dispatcher.update.outer_middleware(OnceMiddleware(seen))
    dispatcher.update.outer_middleware(IdentityMiddleware(services.accounts))
    dispatcher.update.outer_middleware(BanMiddleware())
    dispatcher.update.outer_middleware(AccessMiddleware())
    dispatcher.update.outer_middleware(ThrottleMiddleware(limits.flood))
    # Order matters: specific routers first, the catch-all fallback last.
    dispatcher.include_routers(
        payments.create_router(),
        commands.create_router(),
        admin.create_router(),
        link_router.create_router(),
        plans.create_router(),
        menus.create_router(),
        modes_router.create_router(),
        buttons.create_router(),
        chat.create_router(),
        fallback.create_router(),
    )
    inline_filters(dispatcher)
    return dispatcher, answerer


async def register_commands(bot: Bot, admins: Iterable[int] = ()) -> None:
    """The command menu, in every language we speak; an admin's own chat also
    lists /admin (a menu per chat: nobody else ever sees it)."""
    for language in TEXTS:
        code = None if language == "en" else language
        await bot.set_my_commands(
            _menu(language, COMMANDS), scope=BotCommandScopeDefault(), language_code=code
        )
    for chat_id in sorted(admins):
        for language in TEXTS:
            code = None if language == "en" else language
            try:
                await bot.set_my_commands(
                    _menu(language, (*COMMANDS, "admin")),
                    scope=BotCommandScopeChat(chat_id=chat_id),
                    language_code=code,
                )
            except (TelegramBadRequest, TelegramForbiddenError) as exc:
                # An admin who never opened the bot has no chat with it yet.
                log.info("admin %d: no /admin in the menu yet (%s)", chat_id, exc.message)
                break


def _menu(language: str, names: Iterable[str]) -> list[BotCommand]:
    return [BotCommand(command=name, description=t(language, f"cmd.{name}")) for name in names]
