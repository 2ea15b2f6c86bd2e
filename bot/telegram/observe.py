"""What Telegram traffic tells the operator: every Bot API call counted by method and
result (429s and their retry_after too), every update counted by kind, and the
update's id and sender put in the log context for the lines it causes."""

from __future__ import annotations

from typing import TYPE_CHECKING, Any

from aiogram import BaseMiddleware
from aiogram.client.session.middlewares.base import (
    BaseRequestMiddleware,
    NextRequestMiddlewareType,
)
from aiogram.exceptions import (
    TelegramBadRequest,
    TelegramConflictError,
    TelegramForbiddenError,
    TelegramNetworkError,
    TelegramNotFound,
    TelegramRetryAfter,
    TelegramServerError,
    TelegramUnauthorizedError,
)
from aiogram.methods.base import TelegramType
from aiogram.types import TelegramObject, Update

from bot.telegram.middlewares import Handler
from core import logs, metrics

if TYPE_CHECKING:
    from aiogram import Bot
    from aiogram.methods import Response, TelegramMethod

# An exception's class -> the status label (HTTP-like where Telegram has one).
_STATUS: dict[type[BaseException], str] = {
    TelegramRetryAfter: "429",
    TelegramBadRequest: "400",
    TelegramUnauthorizedError: "401",
    TelegramForbiddenError: "403",
    TelegramNotFound: "404",
    TelegramConflictError: "409",
    TelegramServerError: "5xx",
    TelegramNetworkError: "network",
}


class CountCalls(BaseRequestMiddleware):
    """Every Bot API call by method and status; for a 429, the wait Telegram asked for."""

    async def __call__(
        self,
        make_request: NextRequestMiddlewareType[TelegramType],
        bot: Bot,
        method: TelegramMethod[TelegramType],
    ) -> Response[TelegramType]:
        name = method.__api_method__
        try:
            response = await make_request(bot, method)
        except BaseException as exc:
            status = _STATUS.get(type(exc))
            if status is None:
                status = next((v for k, v in _STATUS.items() if isinstance(exc, k)), "error")
            metrics.platform_call("telegram", name, status)
            if isinstance(exc, TelegramRetryAfter):
                metrics.rate_limited("telegram", exc.retry_after)
            raise
        metrics.platform_call("telegram", name, "ok")
        return response


class ObserveUpdates(BaseMiddleware):
    """The first of the update middlewares: counts the update and sets the log
    context (platform, update id, sender) for everything that handles it."""

    async def __call__(self, handler: Handler, event: TelegramObject, data: dict[str, Any]) -> Any:
        if isinstance(event, Update):
            metrics.UPDATES.labels("telegram", event.event_type).inc()
            logs.PLATFORM.set("telegram")
            logs.UPDATE_ID.set(event.update_id)
            sender = data.get("event_from_user")
            if sender is not None:
                logs.USER_ID.set(sender.id)
        return await handler(event, data)
