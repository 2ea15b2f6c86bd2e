"""Update middlewares: was this update taken already, who is this (upsert on every
update), are they allowed, are they flooding. Payment updates pass straight
through: Telegram gives 10 seconds."""

from __future__ import annotations

import logging
from collections.abc import Awaitable, Callable
from typing import TYPE_CHECKING, Any

from aiogram import BaseMiddleware
from aiogram.types import CallbackQuery, Message, TelegramObject, Update
from aiogram.types import User as TgUser

from bot.telegram.replies import patiently
from core.access import looks_like_code
from core.accounts import AccountService, PlatformProfile
from core.admin.banned import banned_note, should_tell_banned
from core.flood import FloodGuard, Verdict
from core.i18n import pick_language, t
from core.once import SeenDeliveries

if TYPE_CHECKING:
    from bot.telegram.answerer import Answerer

log = logging.getLogger(__name__)

Handler = Callable[[TelegramObject, dict[str, Any]], Awaitable[Any]]


def is_payment(update: Update) -> bool:
    """Telegram gives these 10 seconds: no throttle, lock or queue may hold them up."""
    if update.pre_checkout_query is not None:
        return True
    message = update.message
    return message is not None and (
        message.successful_payment is not None or message.refunded_payment is not None
    )


def delivery_keys(bot_id: int, update: Update) -> list[str]:
    """What makes an update the same one again: its id, and for a new message its
    chat and message id (an edit is new each time it is edited)."""
    keys = [f"tg:{bot_id}:u:{update.update_id}"]
    if update.message is not None:
        keys.append(f"tg:{bot_id}:m:{update.message.chat.id}:{update.message.message_id}")
    elif update.edited_message is not None:
        edited = update.edited_message
        keys.append(f"tg:{bot_id}:e:{edited.chat.id}:{edited.message_id}:{edited.edit_date}")
    return keys


class OnceMiddleware(BaseMiddleware):
    """An update delivered again (webhook redelivery, a second poller) is dropped:
    one answer and one charge per message. Payment updates have their own
    idempotency (the ledger) and are never held up here."""

    def __init__(self, seen: SeenDeliveries) -> None:
        self.seen = seen

    async def __call__(self, handler: Handler, event: TelegramObject, data: dict[str, Any]) -> Any:
        if isinstance(event, Update) and not is_payment(event):
            bot = data.get("bot")
            bot_id = bot.id if bot is not None else 0
            if not await self.seen.first(delivery_keys(bot_id, event)):
                log.info("update %s was delivered before; ignored", event.update_id)
                return None
        return await handler(event, data)


class IdentityMiddleware(BaseMiddleware):
    """Puts `user` (our row) and `lang` into the handler data."""

    def __init__(self, accounts: AccountService) -> None:
        self.accounts = accounts

    async def __call__(self, handler: Handler, event: TelegramObject, data: dict[str, Any]) -> Any:
        sender: TgUser | None = data.get("event_from_user")
        if sender is None or sender.is_bot:
            return await handler(event, data)
        chat = data.get("event_chat")
        user = await self.accounts.upsert(
            PlatformProfile(
                "telegram",
                str(sender.id),
                username=sender.username,
                display_name=sender.full_name,
                language=sender.language_code,
                chat_id=str(chat.id) if chat is not None else None,
            )
        )
        data["user"] = user
        data["lang"] = pick_language(user.language or sender.language_code)
        return await handler(event, data)


class BanMiddleware(BaseMiddleware):
    """A banned person's updates go nowhere (never to the model): a button press is
    answered (Telegram waits for that), a private message at most once an hour."""

    async def __call__(self, handler: Handler, event: TelegramObject, data: dict[str, Any]) -> Any:
        user = data.get("user")
        if user is None or not user.is_banned or (isinstance(event, Update) and is_payment(event)):
            return await handler(event, data)
        text = banned_note(data.get("lang"))
        if isinstance(event, Update):
            if event.callback_query is not None:
                await event.callback_query.answer(text, show_alert=True)
            elif (
                event.message is not None
                and event.message.chat.type == "private"
                and should_tell_banned(user.id)
            ):
                # Often right after their stopped answer's last edit: a 429 then
                # delays the note instead of losing it.
                message = event.message
                await patiently(lambda: message.answer(text))
        return None


def way_in(update: Update, invites: bool) -> bool:
    """A private message that may let a person without access in: `/link` (joining
    an account that has access) and, with invites, `/start CODE` (an invite's t.me
    link). The commands themselves decide."""
    message = update.message
    if message is None or message.chat.type != "private" or not message.text:
        return False
    command, _, rest = message.text.strip().partition(" ")
    name = command.split("@", 1)[0]
    return name == "/link" or (invites and name == "/start" and looks_like_code(rest))


class AccessMiddleware(BaseMiddleware):
    """A private deployment (ACCESS_MODE allowlist or invite): someone without
    access goes nowhere (never to a model, no quota, no conversation); a private
    message of theirs gets "this bot is private" once a day, a button press is
    answered with it (Telegram waits for that). Payments, the bot's own
    membership updates and the ways in (`way_in`) pass."""

    async def __call__(self, handler: Handler, event: TelegramObject, data: dict[str, Any]) -> Any:
        user = data.get("user")
        services = data.get("services")
        if (
            user is None
            or services is None
            or not services.access.private
            or not isinstance(event, Update)
            or is_payment(event)
            or event.my_chat_member is not None
            or way_in(event, services.access.invites_on)
            or await services.access.allowed(user.id)
        ):
            return await handler(event, data)
        text = t(data.get("lang"), "access.private")
        sender: TgUser | None = data.get("event_from_user")
        if event.callback_query is not None:
            await event.callback_query.answer(text, show_alert=True)
        elif (
            event.message is not None
            and event.message.chat.type == "private"
            and sender is not None
            and await services.access.should_note("telegram", sender.id)
        ):
            message = event.message
            await patiently(lambda: message.answer(text))
        return None


class ThrottleMiddleware(BaseMiddleware):
    """At most `limit` updates per `window` seconds per person; the first update
    over the limit gets a polite note, later ones are dropped silently."""

    def __init__(self, guard: FloodGuard | None = None) -> None:
        self.guard = guard or FloodGuard()

    async def __call__(self, handler: Handler, event: TelegramObject, data: dict[str, Any]) -> Any:
        sender: TgUser | None = data.get("event_from_user")
        if sender is None or (isinstance(event, Update) and is_payment(event)):
            return await handler(event, data)
        verdict = await self.guard.check(sender.id)
        if verdict is Verdict.WARN:
            await _notify(event, t(data.get("lang"), "slow_down"), data.get("answerer"))
        if verdict is not Verdict.PASS:
            return None
        return await handler(event, data)


async def _notify(event: TelegramObject, text: str, answerer: Answerer | None) -> None:
    if not isinstance(event, Update):
        return
    if isinstance(event.callback_query, CallbackQuery):
        await event.callback_query.answer(text)
    elif isinstance(event.message, Message) and event.message.chat.type == "private":
        if answerer is not None:
            # The chat is flooding: this note must wait its turn like the streams.
            await answerer.say(event.message, text)
        else:
            await event.message.answer(text)
