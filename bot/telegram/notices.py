"""Delivers outbox messages (plan changes, reminders) to people on Telegram."""

from __future__ import annotations

import asyncio
import logging
import uuid
from collections.abc import Awaitable, Callable

from aiogram import Bot
from aiogram.exceptions import TelegramForbiddenError

from bot.telegram.replies import patiently
from core.i18n import pick_language
from core.liveness import LATE_KINDS
from core.notices import render_notice
from core.outbox import OutgoingMessage, Undeliverable
from core.services import Services
from core.tasks import cancel_and_wait

log = logging.getLogger(__name__)

PLATFORM = "telegram"


# Shows the end of an answer cut off because its worker stopped (row id, user id).
ShowInterrupted = Callable[[uuid.UUID, int], Awaitable[None]]


class TelegramNotices:
    def __init__(
        self,
        bot: Bot,
        services: Services,
        poll_seconds: float = 5.0,
        show_interrupted: ShowInterrupted | None = None,
    ) -> None:
        self.bot = bot
        self.services = services
        self.poll_seconds = poll_seconds
        self.show_interrupted = show_interrupted
        self._task: asyncio.Task[None] | None = None

    async def deliver(self, message: OutgoingMessage) -> None:
        if message.kind in LATE_KINDS:  # an answer cut, or saved but not shown
            if self.show_interrupted is not None:
                row_id = uuid.UUID(str(message.payload["message_id"]))
                await self.show_interrupted(row_id, message.user_id)
            return
        recipient = await self.services.outbox.recipient(message, PLATFORM)
        chat_id = int(recipient.platform_user_id)  # the private chat
        text = render_notice(pick_language(recipient.language), message.kind, message.payload)
        try:
            await patiently(lambda: self.bot.send_message(chat_id, text))
        except TelegramForbiddenError as exc:
            if "blocked" in exc.message:
                await self.services.accounts.mark_blocked(PLATFORM, recipient.platform_user_id)
            raise Undeliverable(exc.message) from None

    async def start(self) -> None:
        if self._task is None:
            self._task = asyncio.create_task(
                self.services.outbox.run({PLATFORM, None}, self.deliver, self.poll_seconds),
                name="telegram-notices",
            )

    async def stop(self) -> None:
        await cancel_and_wait(self._task)
        self._task = None
