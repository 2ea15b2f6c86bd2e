"""Text, photos, documents, edits, replies and /image: everything that makes the
model answer."""

from __future__ import annotations

import re

from aiogram import Bot, F, Router
from aiogram.filters import Command, CommandObject
from aiogram.types import Message

from bot.telegram.answerer import Answerer
from bot.telegram.replies import reply
from core.db.models import User
from core.i18n import t


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


async def document(message: Message, bot: Bot, user: User, lang: str, answerer: Answerer) -> None:
    if message.chat.type != "private":
        me = await bot.me()
        if not _addressed_in_group(message, me.username, me.id):
            return
    await answerer.handle_document(message, user, lang)


async def edited(message: Message, user: User, lang: str, answerer: Answerer) -> None:
    await answerer.handle_edit(message, user, lang)


def create_router() -> Router:
    router = Router(name="chat")
    router.message.register(image, Command("image"))
    router.message.register(text, F.text & ~F.text.startswith("/"))
    router.message.register(photo, F.photo)
    router.message.register(document, F.document)
    router.edited_message.register(edited, F.text | F.document)
    return router
