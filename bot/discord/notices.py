"""Delivers outbox messages (plan changes, reminders, answers cut by a restart) to
people on Discord, by DM."""

from __future__ import annotations

import logging
import uuid
from typing import Any

import discord
from discord.ext import tasks

from bot.discord.chat import DiscordAnswers
from bot.discord.sink import translate
from core.i18n import pick_language
from core.liveness import LATE_KINDS
from core.notices import render_notice
from core.outbox import OutgoingMessage, Undeliverable
from core.services import Services
from core.streaming import ChatUnavailable

log = logging.getLogger(__name__)

PLATFORM = "discord"


class DiscordNotices:
    def __init__(
        self,
        client: discord.Client,
        services: Services,
        answers: DiscordAnswers,
        poll_seconds: float = 5.0,
    ) -> None:
        self.client = client
        self.services = services
        self.answers = answers
        self.poll_seconds = poll_seconds
        self._loop: tasks.Loop[Any] | None = None

    async def deliver(self, message: OutgoingMessage) -> None:
        if message.kind in LATE_KINDS:  # an answer cut, or saved but not shown
            row_id = uuid.UUID(str(message.payload["message_id"]))
            await self.answers.flow.show_interrupted(row_id, message.user_id)
            return
        recipient = await self.services.outbox.recipient(message, PLATFORM)
        text = render_notice(pick_language(recipient.language), message.kind, message.payload)
        account_id = int(recipient.platform_user_id)
        try:
            user = self.client.get_user(account_id) or await self.client.fetch_user(account_id)
            await user.send(text)
        except discord.HTTPException as exc:
            if isinstance(translate(exc), ChatUnavailable) or isinstance(exc, discord.NotFound):
                await self.services.accounts.mark_blocked(PLATFORM, recipient.platform_user_id)
                raise Undeliverable(str(exc)) from None
            raise

    async def _deliver_due(self) -> None:
        try:
            await self.services.outbox.deliver_pending({PLATFORM, None}, self.deliver)
        except Exception:
            log.exception("outbox delivery pass failed")

    async def start(self) -> None:
        # Every process sends, whatever shards it runs: a DM is a REST call, not a
        # gateway event, and each outbox row is claimed by one sender at a time, so
        # several senders never send one message twice.
        if self._loop is None:
            # discord.py's own periodic task: it runs with the client's lifecycle.
            self._loop = tasks.loop(seconds=self.poll_seconds)(self._deliver_due)
            self._loop.start()

    async def stop(self) -> None:
        if self._loop is not None:
            self._loop.cancel()
            self._loop = None
