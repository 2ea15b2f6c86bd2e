"""Turns Telegram events into generations and streams them into messages.

One generation per person at a time in this process: one further message waits in
a queue of one; anything else meanwhile gets "still answering — press Stop". The
database refuses a second generation in a conversation across processes too.
"""

from __future__ import annotations

import asyncio
import base64
import logging
import secrets
import uuid
from collections.abc import Awaitable, Callable
from dataclasses import dataclass
from functools import partial
from typing import TypeVar

from aiogram import Bot
from aiogram.exceptions import (
    TelegramAPIError,
    TelegramBadRequest,
    TelegramForbiddenError,
    TelegramRetryAfter,
)
from aiogram.types import (
    BufferedInputFile,
    CallbackQuery,
    InlineKeyboardMarkup,
    Message,
    ReplyParameters,
)

from bot.telegram import keyboards
from bot.telegram.callbacks import AnswerAction
from bot.telegram.draft_sink import DraftSink
from bot.telegram.render import Part
from bot.telegram.replies import FLOOD_ATTEMPTS, patiently, reply
from bot.telegram.sink import TelegramSink, show_text
from core.chat import Generation
from core.conversations.errors import ConversationBusy, DuplicateMessage, MessageNotFound
from core.conversations.links import MessageLinks, PlatformMessage
from core.db.models import ChatMessage, User
from core.errors import OneAIError
from core.i18n import error_text, pick_language, t
from core.outbox import Undeliverable
from core.services import Services
from core.streaming import DriverResult, StreamDriver
from core.tiers import Tier

log = logging.getLogger(__name__)

T = TypeVar("T")

# The photo size sent to vision models: big enough to read, small enough to store.
PHOTO_MAX_SIDE = 1280


@dataclass
class Pending:
    """The one message that waits for the answer in progress, ready to start."""

    message: Message
    user: User
    lang: str
    start: Callable[[], Awaitable[Generation]]


class Answerer:
    def __init__(
        self,
        bot: Bot,
        services: Services,
        driver: StreamDriver,
        *,
        edit_interval: float = 1.0,
        stream_mode: str = "edit",
    ) -> None:
        self.bot = bot
        self.services = services
        self.driver = driver
        self.edit_interval = edit_interval
        self.stream_mode = stream_mode
        self.links = MessageLinks(services.db, "telegram")
        self._busy: set[int] = set()
        self._pending: dict[int, Pending] = {}
        self._idle = asyncio.Event()
        self._idle.set()

    # -- incoming messages ------------------------------------------------------

    async def handle_text(
        self, message: Message, user: User, lang: str, *, text: str | None = None
    ) -> None:
        reply_row: uuid.UUID | None = None
        replied = message.reply_to_message
        if replied is not None and replied.from_user is not None and replied.from_user.is_bot:
            linked = await self.links.resolve(message.chat.id, replied.message_id)
            if linked is not None:
                reply_row = linked.row_id
        text = (message.text or "") if text is None else text

        async def start() -> Generation:
            return await self.services.chat.send(
                user.id,
                text,
                reply_to=reply_row,
                platform="telegram",
                prompt_link=_ref(message),
            )

        await self._generate(message, user, lang, start, queue_if_busy=True)

    async def handle_photo(self, message: Message, user: User, lang: str) -> None:
        model_id = await self.services.current_model_id(user)
        model = self.services.catalog.get(model_id) or self.services.catalog.default
        if not model.vision:
            await reply(message, t(lang, "no_vision", model=model.name))
            return
        assert message.photo
        photo = next(
            (p for p in reversed(message.photo) if max(p.width, p.height) <= PHOTO_MAX_SIDE),
            message.photo[0],
        )
        try:
            data = await self.bot.download(photo.file_id)
        except (TelegramBadRequest, OSError) as exc:
            # Too big for the Bot API, expired, or the download broke off.
            log.info("photo %s could not be fetched: %s", photo.file_id, exc)
            data = None
        if data is None:
            await self.say(message, t(lang, "photo_unavailable"))
            return
        image = "data:image/jpeg;base64," + base64.b64encode(data.read()).decode()
        caption = message.caption or ""

        async def start() -> Generation:
            return await self.services.chat.send(
                user.id, caption, images=[image], platform="telegram", prompt_link=_ref(message)
            )

        await self._generate(message, user, lang, start, queue_if_busy=False)

    async def handle_edit(self, message: Message, user: User, lang: str) -> None:
        linked = await self.links.resolve(message.chat.id, message.message_id)
        if linked is None:
            return  # a message we never answered (a command, say)
        text = message.text or ""

        async def start() -> Generation:
            return await self.services.chat.edit(
                user.id, linked.row_id, text, prompt_link=_ref(message)
            )

        await self._generate(message, user, lang, start, queue_if_busy=False)

    async def image(self, message: Message, user: User, lang: str, prompt: str) -> None:
        await self.bot.send_chat_action(message.chat.id, "upload_photo")
        try:
            images = await self.services.images.generate(user.id, Tier(user.tier), prompt)
        except OneAIError as exc:
            await reply(message, t(lang, "image.failed", reason=error_text(lang, exc)))
            return
        for index, picture in enumerate(images):
            photo = BufferedInputFile(picture, filename=f"image-{index + 1}.png")
            caption = prompt[:1024] if index == 0 else None
            await patiently(partial(message.answer_photo, photo, caption=caption))

    # -- buttons ------------------------------------------------------------------

    async def _check_button(
        self, query: CallbackQuery, user: User, lang: str, data: AnswerAction
    ) -> tuple[Message, uuid.UUID] | None:
        """The pressed message and the row it shows, or None after an alert. Forged
        data, someone else's answer or a button of a message that shows another
        row all change nothing."""
        message = query.message if isinstance(query.message, Message) else None
        try:
            row_id = data.message_id
        except ValueError:
            row_id = None
        if message is None or row_id is None:
            await query.answer(t(lang, "stale_button"), show_alert=True)
            return None
        try:
            row = await self.services.conversations.message(user.id, row_id)
        except MessageNotFound:
            await query.answer(t(lang, "not_yours"), show_alert=True)
            return None
        linked = await self.links.resolve(message.chat.id, message.message_id)
        if linked is None or linked.row_id != row.id:
            await query.answer(t(lang, "stale_button"), show_alert=True)
            return None
        return message, row.id

    async def stop(self, query: CallbackQuery, user: User, lang: str, data: AnswerAction) -> None:
        checked = await self._check_button(query, user, lang, data)
        if checked is None:
            return
        stopped = await self.services.chat.request_stop(user.id, checked[1])
        await query.answer(t(lang, "stopped") if stopped else "")

    async def regenerate(
        self, query: CallbackQuery, user: User, lang: str, data: AnswerAction
    ) -> None:
        checked = await self._check_button(query, user, lang, data)
        if checked is None:
            return
        message, row_id = checked
        if user.id in self._busy:
            await query.answer(t(lang, "busy"), show_alert=True)
            return
        await query.answer()
        parts = [int(m) for m in await self.links.parts(message.chat.id, row_id)]

        async def start() -> Generation:
            return await self.services.chat.regenerate(user.id, row_id)

        await self._generate(message, user, lang, start, queue_if_busy=False, existing=parts)

    async def page(self, query: CallbackQuery, user: User, lang: str, data: AnswerAction) -> None:
        checked = await self._check_button(query, user, lang, data)
        if checked is None:
            return
        message, row_id = checked
        if user.id in self._busy:
            await query.answer(t(lang, "busy"), show_alert=True)
            return
        try:
            revisions = await self.services.conversations.revisions(user.id, row_id)
            target = data.rev
            if not 1 <= target <= len(revisions.items):
                await query.answer(t(lang, "stale_button"), show_alert=True)
                return
            await self.services.conversations.switch_revision(user.id, row_id, target)
        except OneAIError as exc:
            await query.answer(error_text(lang, exc), show_alert=True)
            return
        await query.answer()
        parts = [int(m) for m in await self.links.parts(message.chat.id, row_id)]
        await self._show_final(revisions.items[target - 1], lang, message.chat.id, parts)

    # -- generating and streaming ------------------------------------------------

    async def _generate(
        self,
        message: Message,
        user: User,
        lang: str,
        start: Callable[[], Awaitable[Generation]],
        *,
        queue_if_busy: bool,
        existing: list[int] | None = None,
    ) -> None:
        if user.id in self._busy:
            if queue_if_busy and user.id not in self._pending:
                self._pending[user.id] = Pending(message, user, lang, start)
                await self.say(message, t(lang, "queued"))
            else:
                await self.say(message, t(lang, "busy"))
            return
        self._busy.add(user.id)
        self._idle.clear()
        try:
            await self._run(message, user, lang, start, existing)
        finally:
            # The queued message is answered even if the one before it failed.
            try:
                while (pending := self._pending.pop(user.id, None)) is not None:
                    try:
                        await self._run(
                            pending.message, pending.user, pending.lang, pending.start, None
                        )
                    except Exception:
                        log.exception("answering a queued message failed")
                        await self.say(pending.message, t(pending.lang, "error.resend"))
            finally:
                self._busy.discard(user.id)
                self._pending.pop(user.id, None)
                if not self._busy:
                    self._idle.set()

    async def wait_idle(self) -> None:
        """Until no answer is in progress here (each delivered its final state)."""
        await self._idle.wait()

    async def _run(
        self,
        message: Message,
        user: User,
        lang: str,
        start: Callable[[], Awaitable[Generation]],
        existing: list[int] | None,
    ) -> None:
        try:
            generation = await start()
        except DuplicateMessage:
            log.info("message %s was answered before", _ref(message))
            return
        except ConversationBusy:
            await self.say(message, t(lang, "busy"))
            return
        except OneAIError as exc:
            await self.say(message, error_text(lang, exc))
            return
        try:
            result = await self._stream(message, user, lang, generation, existing)
        finally:
            if not generation.started:  # failed before streaming: the unit goes back now
                await self.services.chat.abandon(generation)
        if result.abandoned:
            log.info("user %s blocked the bot; the answer was dropped", user.id)
            if message.from_user is not None:
                await self.services.accounts.mark_blocked("telegram", str(message.from_user.id))

    async def _stream(
        self,
        message: Message,
        user: User,
        lang: str,
        generation: Generation,
        existing: list[int] | None,
    ) -> DriverResult[Part]:
        chat_id = message.chat.id
        # The person's own message was linked to the prompt row in the same
        # transaction that wrote it. Regenerating streams into the parts that showed
        # the old revision: link them to the new row now, so Stop works meanwhile.
        if existing is not None:
            await self.links.show(chat_id, generation.message_id, existing)
        answer_id = generation.message_id
        linked: list[int] = list(existing or ())

        async def link_parts(ids: list[int]) -> None:
            if ids[:-1] == linked:  # one more part: the earlier links stand
                await self.links.add(chat_id, answer_id, ids[-1], len(ids) - 1)
            else:
                await self.links.show(chat_id, answer_id, ids)
            linked[:] = ids

        # A new answer is the newest of its group: its buttons need no query.
        newest = generation.turn.answer.revision_number + 1

        async def final_markup() -> InlineKeyboardMarkup | None:
            return keyboards.answer(lang, answer_id, newest, newest)

        sink: TelegramSink
        if self.stream_mode == "draft" and existing is None and message.chat.type == "private":
            sink = DraftSink(
                self.bot,
                chat_id,
                draft_id=secrets.randbelow(2**31 - 1) + 1,
                min_interval=self.edit_interval,
                final_markup=final_markup,
                reply_to=message.message_id,
                note=lambda _status: _note(lang, *self._outcome(generation), generation.text),
                on_new_part=link_parts,
            )
        else:
            sink = TelegramSink(
                self.bot,
                chat_id,
                min_interval=self.edit_interval,
                streaming_markup=keyboards.streaming(lang, answer_id),
                final_markup=final_markup,
                existing=existing or (),
                reply_to=message.message_id if existing is None else None,
                note=lambda _status: _note(lang, *self._outcome(generation), generation.text),
                on_new_part=link_parts,
            )
        result = await self.driver.run(sink, generation.stream())
        if not result.abandoned and sink.message_ids != linked:
            # Parts were reused, replaced or deleted. The answer is shown either
            # way; a failure here only leaves its buttons pointing at old parts.
            try:
                await self.links.show(chat_id, answer_id, sink.message_ids)
            except Exception:
                log.exception("could not link the parts of answer %s", answer_id)
        return result

    @staticmethod
    def _outcome(generation: Generation) -> tuple[str, OneAIError | None]:
        result = generation.result
        if result is None:
            return "streaming", None
        return result.status, result.error

    async def _answer_markup(
        self, user_id: int, lang: str, row_id: uuid.UUID
    ) -> InlineKeyboardMarkup | None:
        revisions = await self.services.conversations.revisions(user_id, row_id)
        index = next((i for i, r in enumerate(revisions.items) if r.id == row_id), revisions.index)
        return keyboards.answer(lang, row_id, index + 1, len(revisions.items))

    async def say(self, message: Message, text: str) -> None:
        """A short reply that a refusal or a queue notice must not lose to a 429."""
        chat_id = message.chat.id
        try:
            await self._in_turn(chat_id, lambda: self.bot.send_message(chat_id, text))
        except TelegramForbiddenError:
            if message.from_user is not None:
                await self.services.accounts.mark_blocked("telegram", str(message.from_user.id))
        except TelegramAPIError as exc:
            log.warning("could not answer %s: %s", chat_id, exc)

    async def _in_turn(self, chat_id: int, call: Callable[[], Awaitable[T]]) -> T:
        """One call to a chat outside a stream, taking the chat's turn as the streams
        do (so it neither meets nor causes a flood limit) and waiting one out."""
        refused = 0
        while True:
            async with self.driver.chats.turn(("telegram", chat_id)) as gate:
                try:
                    result = await call()
                except TelegramRetryAfter as exc:
                    gate.hold(exc.retry_after)
                    refused += 1
                    if refused == FLOOD_ATTEMPTS:
                        raise
                    continue
                gate.hold(self.edit_interval)
                return result

    # -- answers whose worker was gone ----------------------------------------------

    async def show_interrupted(self, row_id: uuid.UUID, user_id: int) -> None:
        """Tell the person an answer was cut off (its worker stopped). Where it is
        shown, its text stays as they saw it (the row may hold less: it is saved
        only now and then while streaming), ⏹ becomes 🔄 and a note below says it
        was cut; if it never showed, a new message below their prompt says so.
        Delivered from the outbox."""
        user = await self.services.accounts.get(user_id)
        lang = pick_language(user.language if user is not None else None)
        try:
            row = await self.services.conversations.message(user_id, row_id)
        except MessageNotFound:
            return
        note = _note(lang, row.status, None, row.content) or t(lang, "cut")
        try:
            shown = await self.links.displays(row.id)
            for chat_id, message_ids in shown:
                if not await self._mark_cut(row, lang, int(chat_id), int(message_ids[-1]), note):
                    await self._show_final(row, lang, int(chat_id), [int(m) for m in message_ids])
            if shown or row.parent_message_id is None:
                return
            for chat_id, prompt_ids in await self.links.displays(row.parent_message_id):
                await self._show_final(row, lang, int(chat_id), [], reply_to=int(prompt_ids[0]))
        except TelegramForbiddenError as exc:
            raise Undeliverable(exc.message) from None
        except TelegramBadRequest as exc:
            log.info("could not show the end of answer %s: %s", row.id, exc)

    async def _mark_cut(
        self, row: ChatMessage, lang: str, chat_id: int, last: int, note: str
    ) -> bool:
        """🔄 under the last part shown and the note below it; False if that message
        is gone."""
        markup = await self._answer_markup(row.user_id, lang, row.id)
        try:
            await self._in_turn(
                chat_id,
                lambda: self.bot.edit_message_reply_markup(
                    chat_id=chat_id, message_id=last, reply_markup=markup
                ),
            )
        except TelegramBadRequest as exc:
            if "message to edit not found" in exc.message:
                return False
            if "message is not modified" not in exc.message:
                raise
        reply_to = ReplyParameters(message_id=last, allow_sending_without_reply=True)
        await self._in_turn(
            chat_id, lambda: self.bot.send_message(chat_id, note, reply_parameters=reply_to)
        )
        return True

    async def _show_final(
        self,
        row: ChatMessage,
        lang: str,
        chat_id: int,
        message_ids: list[int],
        *,
        reply_to: int | None = None,
    ) -> None:
        """Show a finished row in the messages `message_ids` (or new ones below
        `reply_to`), with its buttons and the note on how it ended; they are then
        linked to it."""

        async def markup() -> InlineKeyboardMarkup | None:
            return await self._answer_markup(row.user_id, lang, row.id)

        sink = TelegramSink(
            self.bot,
            chat_id,
            min_interval=self.edit_interval,
            existing=message_ids,
            reply_to=reply_to,
            final_markup=markup,
            note=lambda _status: _note(lang, row.status, None, row.content),
        )
        await show_text(sink, row.content)
        await self.links.show(chat_id, row.id, sink.message_ids)


def _ref(message: Message) -> PlatformMessage:
    return PlatformMessage("telegram", str(message.chat.id), str(message.message_id))


def _note(lang: str, status: str, error: OneAIError | None, text: str) -> str | None:
    """What the final message says below the answer, by how it ended."""
    if status == "cancelled":
        return t(lang, "stopped")
    if status == "interrupted":
        return t(lang, "cut")
    if status == "failed":
        reason = error_text(lang, error) if error else t(lang, "error.generic")
        return t(lang, "failed", reason=reason)
    if status == "complete" and not text.strip():
        return t(lang, "empty_answer")
    return None
