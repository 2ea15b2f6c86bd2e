"""Text, edits, replies and /image: everything that makes the model answer."""

from __future__ import annotations

from aiogram import Bot, F, Router
from aiogram.filters import Command, CommandObject
from aiogram.types import Message

from bot.telegram.answerer import Answerer
from core.db.models import User
from core.i18n import t

router = Router(name="chat")


def _addressed_in_group(message: Message, bot_username: str | None, bot_id: int) -> bool:
    """In groups the bot answers only when mentioned or replied to."""
    replied = message.reply_to_message
    if replied and replied.from_user and replied.from_user.id == bot_id:
        return True
    text = message.text or message.caption or ""
    return bool(bot_username) and f"@{bot_username}".lower() in text.lower()


@router.message(Command("image"))
async def image(
    message: Message, command: CommandObject, user: User, lang: str, answerer: Answerer
) -> None:
    prompt = (command.args or "").strip()
    if not prompt:
        await message.answer(t(lang, "image.usage"))
        return
    await answerer.image(message, user, lang, prompt)


@router.message(F.text & ~F.text.startswith("/"))
async def text(message: Message, bot: Bot, user: User, lang: str, answerer: Answerer) -> None:
    if message.chat.type != "private":
        me = await bot.me()
        if not _addressed_in_group(message, me.username, me.id):
            return
    await answerer.handle_text(message, user, lang)


@router.message(F.photo)
async def photo(message: Message, bot: Bot, user: User, lang: str, answerer: Answerer) -> None:
    if message.chat.type != "private":
        me = await bot.me()
        if not _addressed_in_group(message, me.username, me.id):
            return
    await answerer.handle_photo(message, user, lang)


@router.edited_message(F.text)
async def edited(message: Message, user: User, lang: str, answerer: Answerer) -> None:
    await answerer.handle_edit(message, user, lang)
