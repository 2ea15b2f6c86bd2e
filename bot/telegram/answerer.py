"""Telegram's side of the answer flow (`core.answers`): it turns messages and
button presses into flow calls and draws what the flow decides (sinks, buttons,
notices) with the Bot API."""

from __future__ import annotations

import base64
import html
import logging
import secrets
import uuid
from collections.abc import Awaitable, Callable, Sequence
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
    ForceReply,
    InlineKeyboardButton,
    InlineKeyboardMarkup,
    Message,
    ReplyParameters,
)

from bot.telegram import keyboards
from bot.telegram.callbacks import AnswerAction, DocumentAction, DocumentOp, VoiceEdit
from bot.telegram.draft_sink import DraftSink
from bot.telegram.replies import FLOOD_ATTEMPTS, patiently, reply
from bot.telegram.sink import TelegramSink
from core.answers import AnswerFlow, ButtonCheck, Controls, Origin
from core.answers.flow import AnswerView, ShowFailed
from core.answers.voice import VoiceFlow, shown_transcript
from core.conversations.links import MessageLinks
from core.db.models import User
from core.documents.flow import DocumentFlow
from core.documents.service import question_of
from core.errors import OneAIError
from core.i18n import error_text, t
from core.llm.citations import Citation
from core.outbox import Undeliverable
from core.services import Services
from core.streaming import StreamDriver, show_text
from core.tiers import Tier
from core.views.models import model_at
from core.voice import VoiceNote

log = logging.getLogger(__name__)

T = TypeVar("T")

# The photo size sent to vision models: big enough to read, small enough to store.
PHOTO_MAX_SIDE = 1280
# What getFile lets a bot download.
BOT_API_MAX_BYTES = 20 * 1024 * 1024


def transcript_html(text: str) -> str:
    return f"🎤 <i>{html.escape(shown_transcript(text))}</i>"


def transcript_markup(lang: str) -> InlineKeyboardMarkup:
    button = InlineKeyboardButton(text=t(lang, "voice.edit"), callback_data=VoiceEdit().pack())
    return InlineKeyboardMarkup(inline_keyboard=[[button]])


def voice_note_of(message: Message) -> tuple[str, VoiceNote] | None:
    """The file id and what the update says of a voice note, audio file or round
    video; None for any other message."""
    if message.voice is not None:
        v = message.voice
        note = VoiceNote(
            v.duration, v.file_size, BOT_API_MAX_BYTES, "voice.ogg", v.mime_type or "audio/ogg"
        )
        return v.file_id, note
    if message.audio is not None:
        a = message.audio
        mime = a.mime_type or "audio/mpeg"
        name = a.file_name or "audio." + (mime.rsplit("/", 1)[-1] or "mp3")
        return a.file_id, VoiceNote(a.duration, a.file_size, BOT_API_MAX_BYTES, name, mime)
    if message.video_note is not None:
        n = message.video_note
        note = VoiceNote(n.duration, n.file_size, BOT_API_MAX_BYTES, "video_note.mp4", "video/mp4")
        return n.file_id, note
    return None


def draw(lang: str, controls: Controls) -> InlineKeyboardMarkup:
    if controls.streaming:
        return keyboards.streaming(lang, controls.row_id)
    return keyboards.answer(lang, controls.row_id, controls.index, controls.count)


def origin_of(message: Message) -> Origin[Message]:
    sender = message.from_user
    return Origin(
        chat_id=message.chat.id,
        platform_user_id=str(sender.id) if sender is not None else "",
        event=message,
        message_id=message.message_id,
    )


class TelegramSurface:
    """How the flow's decisions look on Telegram."""

    platform = "telegram"

    def __init__(
        self,
        bot: Bot,
        services: Services,
        driver: StreamDriver,
        *,
        edit_interval: float,
        stream_mode: str,
    ) -> None:
        self.bot = bot
        self.services = services
        self.driver = driver
        self.edit_interval = edit_interval
        self.stream_mode = stream_mode

    async def say(self, origin: Origin[Message], text: str) -> None:
        """A short reply that a refusal or a queue notice must not lose to a 429."""
        chat_id = origin.chat_id
        try:
            await self.in_turn(chat_id, lambda: self.bot.send_message(chat_id, text))
        except TelegramForbiddenError:
            if origin.platform_user_id:
                await self.services.accounts.mark_blocked("telegram", origin.platform_user_id)
        except TelegramAPIError as exc:
            log.warning("could not answer %s: %s", chat_id, exc)

    async def in_turn(self, chat_id: int, call: Callable[[], Awaitable[T]]) -> T:
        """One call to a chat outside a stream, taking the chat's turn and a global
        token as the streams do (so it neither meets nor causes a flood limit) and
        waiting one out."""
        refused = 0
        while True:
            async with self.driver.chats.turn(("telegram", chat_id)) as gate:
                await self.driver.limiter.acquire()
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

    def answer_sink(self, origin: Origin[Message], view: AnswerView) -> TelegramSink:
        lang = view.lang

        async def final_markup() -> InlineKeyboardMarkup | None:
            return draw(lang, await view.final())

        message = origin.event
        if self.stream_mode == "draft" and not view.existing and message.chat.type == "private":
            return DraftSink(
                self.bot,
                view.chat_id,
                draft_id=secrets.randbelow(2**31 - 1) + 1,
                min_interval=self.edit_interval,
                final_markup=final_markup,
                reply_to=view.reply_to,
                note=view.note,
                on_new_part=view.on_new_part,
                citations=view.citations,
            )
        return TelegramSink(
            self.bot,
            view.chat_id,
            min_interval=self.edit_interval,
            streaming_markup=draw(lang, view.live),
            final_markup=final_markup,
            existing=view.existing,
            reply_to=view.reply_to,
            note=view.note,
            on_new_part=view.on_new_part,
            citations=view.citations,
        )

    async def show_row(
        self,
        chat_id: int,
        message_ids: Sequence[int],
        *,
        text: str,
        controls: Controls,
        note: str | None,
        lang: str,
        reply_to: int | None = None,
        citations: Sequence[Citation] = (),
    ) -> list[int]:
        async def markup() -> InlineKeyboardMarkup | None:
            return draw(lang, controls)

        sink = TelegramSink(
            self.bot,
            chat_id,
            min_interval=self.edit_interval,
            existing=message_ids,
            reply_to=reply_to,
            final_markup=markup,
            note=lambda _outcome, _text: note,
            citations=lambda: citations,
        )
        try:
            await show_text(sink, text, chats=self.driver.chats, limiter=self.driver.limiter)
        except TelegramForbiddenError as exc:
            raise Undeliverable(exc.message) from None
        except TelegramBadRequest as exc:
            raise ShowFailed(exc.message) from None
        return sink.message_ids

    async def mark_cut(
        self, chat_id: int, message_id: int, controls: Controls, note: str, lang: str
    ) -> bool:
        markup = draw(lang, controls)
        try:
            try:
                await self.in_turn(
                    chat_id,
                    lambda: self.bot.edit_message_reply_markup(
                        chat_id=chat_id, message_id=message_id, reply_markup=markup
                    ),
                )
            except TelegramBadRequest as exc:
                if "message to edit not found" in exc.message:
                    return False
                if "message is not modified" not in exc.message:
                    raise
            reply_to = ReplyParameters(message_id=message_id, allow_sending_without_reply=True)
            await self.in_turn(
                chat_id, lambda: self.bot.send_message(chat_id, note, reply_parameters=reply_to)
            )
        except TelegramForbiddenError as exc:
            raise Undeliverable(exc.message) from None
        except TelegramBadRequest as exc:
            raise ShowFailed(exc.message) from None
        return True

    async def show_transcript(self, origin: Origin[Message], text: str, lang: str) -> int | None:
        chat_id = origin.chat_id
        reply_to = _reply_to(origin)
        sent = await self.in_turn(
            chat_id,
            lambda: self.bot.send_message(
                chat_id,
                transcript_html(text),
                parse_mode="HTML",
                reply_parameters=reply_to,
                reply_markup=transcript_markup(lang),
            ),
        )
        return sent.message_id

    async def show_heard(self, origin: Origin[Message], text: str) -> int | None:
        chat_id = origin.chat_id
        reply_to = _reply_to(origin)
        sent = await self.in_turn(
            chat_id, lambda: self.bot.send_message(chat_id, text, reply_parameters=reply_to)
        )
        return sent.message_id

    async def update_transcript(self, chat_id: int, message_id: int, text: str, lang: str) -> None:
        async def edit() -> object:
            try:
                return await self.bot.edit_message_text(
                    transcript_html(text),
                    chat_id=chat_id,
                    message_id=message_id,
                    parse_mode="HTML",
                    reply_markup=transcript_markup(lang),
                )
            except TelegramBadRequest as exc:
                if "message is not modified" not in exc.message:
                    raise
                return None

        await self.in_turn(chat_id, edit)


class Answerer:
    """Telegram events in, flow calls out."""

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
        self.surface = TelegramSurface(
            bot, services, driver, edit_interval=edit_interval, stream_mode=stream_mode
        )
        self.flow: AnswerFlow[Message] = AnswerFlow(services, self.surface)
        self.voice: VoiceFlow[Message] = VoiceFlow(self.flow, self.surface)
        self.documents: DocumentFlow[Message] = DocumentFlow(self.flow)

    @property
    def links(self) -> MessageLinks:
        return self.flow.links

    @property
    def _busy(self) -> bool:
        return not self.flow.idle()

    async def wait_idle(self) -> None:
        await self.flow.wait_idle()

    async def say(self, message: Message, text: str) -> None:
        await self.surface.say(origin_of(message), text)

    async def show_interrupted(self, row_id: uuid.UUID, user_id: int) -> None:
        await self.flow.show_interrupted(row_id, user_id)

    # -- incoming messages ------------------------------------------------------

    async def handle_text(
        self,
        message: Message,
        user: User,
        lang: str,
        *,
        text: str | None = None,
        web_search: bool = False,
    ) -> None:
        replied = message.reply_to_message
        replied_to = (
            replied.message_id
            if replied is not None and replied.from_user is not None and replied.from_user.is_bot
            else None
        )
        text = (message.text or "") if text is None else text
        await self.flow.send(
            origin_of(message), user, lang, text, replied_to=replied_to, web_search=web_search
        )

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
        await self.flow.send(origin_of(message), user, lang, message.caption or "", images=[image])

    async def handle_voice(self, message: Message, user: User, lang: str) -> None:
        """A voice note, an audio file or a round video: transcribed (or, with
        VOICE_MODE=model, sent as audio), then answered."""
        found = voice_note_of(message)
        if found is None:
            return
        file_id, note = found

        async def fetch() -> bytes | None:
            try:
                # In memory: Bot.download without a destination returns a BytesIO.
                data = await self.bot.download(file_id)
            except (TelegramBadRequest, OSError) as exc:
                log.info("voice note %s could not be fetched: %s", file_id, exc)
                return None
            return data.read() if data is not None else None

        replied = message.reply_to_message
        replied_to = (
            replied.message_id
            if replied is not None and replied.from_user is not None and replied.from_user.is_bot
            else None
        )
        await self.voice.note(
            origin_of(message),
            user,
            lang,
            note,
            fetch,
            replied_to=replied_to,
            caption=message.caption or "",
        )

    async def edit_transcript(
        self, query: CallbackQuery, user: User, lang: str
    ) -> uuid.UUID | None:
        """✏️ on a transcript: the prompt row it shows, if the presser may edit it."""
        message = query.message if isinstance(query.message, Message) else None
        if message is None:
            return None
        row = await self.voice.transcript_row(user, message.chat.id, message.message_id)
        return row.id if row is not None else None

    async def correct_transcript(
        self,
        message: Message,
        user: User,
        lang: str,
        row_id: uuid.UUID,
        transcript: tuple[int, int],
    ) -> None:
        await self.voice.correct(
            origin_of(message), user, lang, row_id, transcript, message.text or ""
        )

    async def ask_correction(self, chat_id: int, transcript_id: int, lang: str) -> None:
        reply_to = ReplyParameters(message_id=transcript_id, allow_sending_without_reply=True)
        await self.surface.in_turn(
            chat_id,
            lambda: self.bot.send_message(
                chat_id,
                t(lang, "voice.edit_ask"),
                reply_parameters=reply_to,
                reply_markup=ForceReply(),
            ),
        )

    async def handle_document(self, message: Message, user: User, lang: str) -> None:
        document = message.document
        assert document is not None
        origin = origin_of(message)

        async def download() -> bytes:
            # getFile refuses files over 20 MB; the size was checked before anyway.
            data = await self.bot.download(document.file_id)
            if data is None:
                raise OSError("no data")
            return data.read()

        offer = await self.documents.receive(
            origin,
            user,
            lang,
            name=document.file_name or "document",
            declared_mime=document.mime_type,
            size=document.file_size,
            download=download,
            caption=message.caption,
        )
        if offer is None:
            return
        markup = keyboards.document_offer(offer)
        reply_to = ReplyParameters(message_id=message.message_id, allow_sending_without_reply=True)
        chat_id = message.chat.id
        await self.surface.in_turn(
            chat_id,
            lambda: self.bot.send_message(
                chat_id, offer.text, reply_markup=markup, reply_parameters=reply_to
            ),
        )

    async def handle_edit(
        self, message: Message, user: User, lang: str, *, text: str | None = None
    ) -> None:
        if message.voice is not None or message.audio is not None:
            await self.voice.caption_edited(origin_of(message), user, lang, message.caption or "")
            return
        if message.document is not None:  # a document's caption is its question
            text = question_of(message.caption, lang)
        elif text is None:
            text = message.text or ""
        await self.flow.edit(origin_of(message), user, lang, text)

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

    async def _pressed(
        self, query: CallbackQuery, user: User, lang: str, data: AnswerAction
    ) -> tuple[Origin[Message], uuid.UUID] | None:
        """The pressed message and the row it shows, or None after an alert."""
        message = query.message if isinstance(query.message, Message) else None
        try:
            row_id: uuid.UUID | None = data.message_id
        except ValueError:
            row_id = None
        if message is None or row_id is None:
            await query.answer(t(lang, "stale_button"), show_alert=True)
            return None
        check = await self.flow.check_button(user, row_id, message.chat.id, message.message_id)
        if check is not ButtonCheck.OK:
            await query.answer(t(lang, check.value), show_alert=True)
            return None
        origin = Origin(
            chat_id=message.chat.id,
            platform_user_id=str(query.from_user.id),
            event=message,
            message_id=message.message_id,
        )
        return origin, row_id

    @staticmethod
    def _ack(query: CallbackQuery) -> Callable[[str], Awaitable[None]]:
        async def ack(refusal: str) -> None:
            if refusal:
                await query.answer(refusal, show_alert=True)
            else:
                await query.answer()

        return ack

    async def stop(self, query: CallbackQuery, user: User, lang: str, data: AnswerAction) -> None:
        pressed = await self._pressed(query, user, lang, data)
        if pressed is None:
            return
        stopped = await self.flow.stop(user, pressed[1])
        await query.answer(t(lang, "stopped") if stopped else "")

    async def regenerate(
        self, query: CallbackQuery, user: User, lang: str, data: AnswerAction
    ) -> None:
        pressed = await self._pressed(query, user, lang, data)
        if pressed is None:
            return
        origin, row_id = pressed
        await self.flow.regenerate(origin, user, lang, row_id, self._ack(query))

    async def page(self, query: CallbackQuery, user: User, lang: str, data: AnswerAction) -> None:
        pressed = await self._pressed(query, user, lang, data)
        if pressed is None:
            return
        origin, row_id = pressed
        await self.flow.page(origin, user, lang, row_id, data.rev, self._ack(query))

    async def document_button(
        self, query: CallbackQuery, user: User, lang: str, data: DocumentAction
    ) -> None:
        """A button of the offer under a document too large for the model."""
        message = query.message if isinstance(query.message, Message) else None
        try:
            attachment_id = data.attachment_id
        except ValueError:
            message = None
        if message is None:
            await query.answer(t(lang, "stale_button"), show_alert=True)
            return
        # The answer replies to (and is linked with) the person's document message.
        replied = message.reply_to_message
        origin = Origin(
            chat_id=message.chat.id,
            platform_user_id=str(query.from_user.id),
            event=message,
            message_id=replied.message_id if replied is not None else None,
        )

        async def ack(refusal: str) -> None:
            if refusal:
                await query.answer(refusal, show_alert=True)
                return
            await query.answer()
            # One way on is taken: the offer's buttons go.
            try:
                await self.surface.in_turn(
                    message.chat.id, lambda: message.edit_reply_markup(reply_markup=None)
                )
            except TelegramBadRequest as exc:
                log.info("could not clear the document offer's buttons: %s", exc)

        if data.op is DocumentOp.FIRST_PART:
            await self.documents.use_first_part(origin, user, lang, attachment_id, ack)
            return
        model = model_at(self.services.catalog, data.model)
        if model is None:
            await query.answer(t(lang, "stale_button"), show_alert=True)
            return
        await self.documents.use_model(origin, user, lang, attachment_id, model.id, ack)


def _reply_to(origin: Origin[Message]) -> ReplyParameters | None:
    """A reply to the person's message, if there is one (sent even if it is gone)."""
    if origin.message_id is None:
        return None
    return ReplyParameters(message_id=origin.message_id, allow_sending_without_reply=True)
