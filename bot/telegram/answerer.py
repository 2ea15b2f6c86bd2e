"""Turns Telegram events into generations and streams them into messages.

One generation per person at a time in this process: one further message waits in
a queue of one; anything else meanwhile gets "still answering — press Stop". The
database refuses a second generation in a conversation across processes too.
"""

from __future__ import annotations

import base64
import logging
import secrets
import uuid
from collections.abc import Awaitable, Callable
from dataclasses import dataclass
from functools import partial

from aiogram import Bot
from aiogram.exceptions import TelegramBadRequest, TelegramForbiddenError, TelegramRetryAfter
from aiogram.types import BufferedInputFile, CallbackQuery, InlineKeyboardMarkup, Message

from bot.telegram import keyboards
from bot.telegram.callbacks import AnswerAction
from bot.telegram.draft_sink import DraftSink
from bot.telegram.replies import patiently, reply
from bot.telegram.sink import TelegramSink, show_text
from core.chat import Generation, InterruptedAnswer
from core.conversations.errors import ConversationBusy, MessageNotFound
from core.conversations.links import MessageLinks, PlatformMessage
from core.db.models import User
from core.errors import OneAIError
from core.i18n import error_text, t
from core.services import Services
from core.streaming import StreamDriver
from core.tiers import Tier

log = logging.getLogger(__name__)

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
        data = await self.bot.download(photo.file_id)
        if data is None:
            await reply(message, t(lang, "error.generic"))
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
        shown = revisions.items[target - 1]
        parts = [int(m) for m in await self.links.parts(message.chat.id, row_id)]
        sink = TelegramSink(
            self.bot,
            message.chat.id,
            min_interval=self.edit_interval,
            existing=parts,
            final_markup=lambda: self._answer_markup(user.id, lang, shown.id),
            note=lambda _status: _note(lang, shown.status, None, shown.content),
        )
        await show_text(sink, shown.content)
        await self.links.show(message.chat.id, shown.id, sink.message_ids)

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
                await self._say(message, t(lang, "queued"))
            else:
                await self._say(message, t(lang, "busy"))
            return
        self._busy.add(user.id)
        try:
            await self._run(message, user, lang, start, existing)
            while (pending := self._pending.pop(user.id, None)) is not None:
                await self._run(pending.message, pending.user, pending.lang, pending.start, None)
        finally:
            self._busy.discard(user.id)
            self._pending.pop(user.id, None)

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
        except ConversationBusy:
            await self._say(message, t(lang, "busy"))
            return
        except OneAIError as exc:
            await self._say(message, error_text(lang, exc))
            return
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
        if result.abandoned:
            log.info("user %s blocked the bot; the answer was dropped", user.id)
            if message.from_user is not None:
                await self.services.accounts.mark_blocked("telegram", str(message.from_user.id))
            return
        if sink.message_ids != linked:  # parts were reused, replaced or deleted
            await self.links.show(chat_id, answer_id, sink.message_ids)

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

    async def _say(self, message: Message, text: str) -> None:
        """A short reply, taking the chat's turn like the streams do and waiting out
        a flood limit: a refusal or a queue notice must not be lost to a 429."""
        chat_id = message.chat.id
        for _ in range(5):
            async with self.driver.chats.turn(("telegram", chat_id)) as gate:
                try:
                    await self.bot.send_message(chat_id, text)
                except TelegramRetryAfter as exc:
                    gate.hold(exc.retry_after)
                    continue
                except TelegramForbiddenError:
                    if message.from_user is not None:
                        await self.services.accounts.mark_blocked(
                            "telegram", str(message.from_user.id)
                        )
                    return
                except TelegramBadRequest as exc:
                    log.warning("could not answer %s: %s", chat_id, exc)
                    return
                gate.hold(self.edit_interval)
                return

    # -- after a restart --------------------------------------------------------------

    async def announce_interrupted(self, answers: list[InterruptedAnswer]) -> None:
        """Show the person that an answer was cut by a restart, where it stands."""
        for answer in answers:
            user = await self.services.accounts.get(answer.user_id)
            lang = user.language if user is not None and user.language else "en"
            for chat_id, message_ids in await self.links.displays(answer.message_id):
                await self._show_cut(answer, lang, int(chat_id), [int(m) for m in message_ids])

    async def _show_cut(
        self, answer: InterruptedAnswer, lang: str, chat_id: int, message_ids: list[int]
    ) -> None:
        async def markup() -> InlineKeyboardMarkup | None:
            return await self._answer_markup(answer.user_id, lang, answer.message_id)

        sink = TelegramSink(
            self.bot,
            chat_id,
            min_interval=self.edit_interval,
            existing=message_ids,
            final_markup=markup,
            note=lambda _status: t(lang, "cut"),
        )
        try:
            await show_text(sink, answer.content)
        except (TelegramForbiddenError, TelegramBadRequest) as exc:
            log.info("could not mark answer %s as cut: %s", answer.message_id, exc)


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
