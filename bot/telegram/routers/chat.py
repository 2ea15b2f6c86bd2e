"""Text, photos, documents, voice notes, edits, replies and /image: everything
that makes the model answer."""

from __future__ import annotations

import re
import uuid

from aiogram import Bot, F, Router
from aiogram.filters import Command, CommandObject
from aiogram.fsm.context import FSMContext
from aiogram.types import CallbackQuery, Message

from bot.telegram.answerer import Answerer
from bot.telegram.callbacks import VoiceEdit
from bot.telegram.replies import reply
from bot.telegram.states import VoiceStates
from core.db.models import User
from core.i18n import t
from core.services import Services
from core.views.search import search_refusal


def _addressed_in_group(message: Message, bot_username: str | None, bot_id: int) -> bool:
    """In groups the bot answers only when mentioned or replied to."""
    replied = message.reply_to_message
    if replied and replied.from_user and replied.from_user.id == bot_id:
        return True
    text = message.text or message.caption or ""
    return bool(bot_username) and f"@{bot_username}".lower() in text.lower()


async def image(
    message: Message, command: CommandObject, user: User, lang: str, answerer: Answerer
) -> None:
    prompt = (command.args or "").strip()
    if not prompt:
        await reply(message, t(lang, "image.usage"))
        return
    await answerer.image(message, user, lang, prompt)


async def search(
    message: Message,
    command: CommandObject,
    user: User,
    lang: str,
    services: Services,
    answerer: Answerer,
) -> None:
    question = (command.args or "").strip()
    refusal = search_refusal(services, lang, question)
    if refusal is not None:
        await reply(message, refusal)
        return
    await answerer.handle_text(message, user, lang, text=question, web_search=True)


async def text(message: Message, bot: Bot, user: User, lang: str, answerer: Answerer) -> None:
    text = message.text or ""
    if message.chat.type != "private":
        me = await bot.me()
        if not _addressed_in_group(message, me.username, me.id):
            return
        if me.username:  # the mention addresses the bot; it is not part of the question
            text = re.sub(rf"@{re.escape(me.username)}\b", "", text, flags=re.IGNORECASE)
            text = " ".join(text.split())
    await answerer.handle_text(message, user, lang, text=text)


async def photo(message: Message, bot: Bot, user: User, lang: str, answerer: Answerer) -> None:
    if message.chat.type != "private":
        me = await bot.me()
        if not _addressed_in_group(message, me.username, me.id):
            return
    await answerer.handle_photo(message, user, lang)


# An edited "/search QUESTION" is a new version of QUESTION (the answer searches again).
_SEARCH_COMMAND = re.compile(r"^/search(?:@\w+)?(?:\s+|$)", re.IGNORECASE)


async def voice(message: Message, bot: Bot, user: User, lang: str, answerer: Answerer) -> None:
    if message.chat.type != "private":
        me = await bot.me()
        if not _addressed_in_group(message, me.username, me.id):
            return
    await answerer.handle_voice(message, user, lang)


async def edit_transcript(
    query: CallbackQuery, user: User, lang: str, answerer: Answerer, state: FSMContext
) -> None:
    """✏️ under a transcript: ask for the corrected text (the next text message)."""
    message = query.message if isinstance(query.message, Message) else None
    row_id = await answerer.edit_transcript(query, user, lang)
    if message is None or row_id is None:
        await query.answer(t(lang, "stale_button"), show_alert=True)
        return
    await state.set_state(VoiceStates.correction)
    await state.update_data(row=row_id.hex, chat=message.chat.id, message=message.message_id)
    await query.answer()
    await answerer.ask_correction(message.chat.id, message.message_id, lang)


async def correction(
    message: Message, user: User, lang: str, answerer: Answerer, state: FSMContext
) -> None:
    data = await state.get_data()
    await state.clear()
    try:
        row_id = uuid.UUID(hex=str(data["row"]))
        transcript = (int(data["chat"]), int(data["message"]))
    except (KeyError, ValueError):
        await reply(message, t(lang, "stale_button"))
        return
    await answerer.correct_transcript(message, user, lang, row_id, transcript)


async def document(message: Message, bot: Bot, user: User, lang: str, answerer: Answerer) -> None:
    if message.chat.type != "private":
        me = await bot.me()
        if not _addressed_in_group(message, me.username, me.id):
            return
    await answerer.handle_document(message, user, lang)


async def edited(message: Message, user: User, lang: str, answerer: Answerer) -> None:
    text = _SEARCH_COMMAND.sub("", message.text or "", count=1)
    await answerer.handle_edit(message, user, lang, text=text)


def create_router() -> Router:
    router = Router(name="chat")
    router.message.register(image, Command("image"))
    router.message.register(search, Command("search"))
    router.message.register(correction, VoiceStates.correction, F.text, ~F.text.startswith("/"))
    router.message.register(text, F.text & ~F.text.startswith("/"))
    router.message.register(photo, F.photo)
    router.message.register(voice, F.voice | F.audio | F.video_note)
    router.callback_query.register(edit_transcript, VoiceEdit.filter())
    router.message.register(document, F.document)
    router.edited_message.register(edited, F.text | F.document | F.voice | F.audio)
    return router
