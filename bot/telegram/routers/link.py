"""/link: one account on Telegram and Discord.

`/link` shows a one-time code to enter on the other platform, and the accounts
already linked, each other platform with an Unlink button (asked twice).
`/link CODE` enters a code shown on the other platform. The rules live in
core/linking.py; this file only draws them.
"""

from __future__ import annotations

from enum import StrEnum
from typing import Any

from aiogram import F, Router
from aiogram.filters import Command, CommandObject
from aiogram.filters.callback_data import CallbackData
from aiogram.types import CallbackQuery, InlineKeyboardButton, InlineKeyboardMarkup, Message
from aiogram.utils.formatting import Code, Text

from bot.telegram.replies import patiently, redraw, reply
from core.db.models import User
from core.errors import OneAIError
from core.i18n import error_text, t
from core.link_view import accounts_text, done_text, link_page, unlinkable
from core.linking import LinkedIdentity, platform_name
from core.services import Services

PLATFORM = "telegram"


class LinkOp(StrEnum):
    ASK = "a"  # ask before unlinking `platform`
    UNLINK = "u"  # unlink it
    BACK = "b"  # keep it: back to the list


class LinkAction(CallbackData, prefix="lk"):
    op: LinkOp
    platform: str
    user: int  # our user id the buttons were drawn for: re-checked against the presser


# -- drawing ------------------------------------------------------------------------


def _unlink_buttons(
    lang: str, user_id: int, identities: list[LinkedIdentity]
) -> InlineKeyboardMarkup | None:
    others = unlinkable(identities, PLATFORM)
    if not others:
        return None
    return InlineKeyboardMarkup(
        inline_keyboard=[
            [_button(t(lang, "link.unlink", platform=platform_name(p)), LinkOp.ASK, p, user_id)]
            for p in others
        ]
    )


def _button(text: str, op: LinkOp, platform: str, user_id: int) -> InlineKeyboardButton:
    data = LinkAction(op=op, platform=platform, user=user_id)
    return InlineKeyboardButton(text=text, callback_data=data.pack())


def _with_code(text: str, code: str) -> dict[str, Any]:
    """`text` with every `code` in it set as code (tap to copy), as send kwargs."""
    parts: list[Any] = []
    for index, piece in enumerate(text.split(code)):
        if index:
            parts.append(Code(code))
        parts.append(piece)
    return Text(*parts).as_kwargs()


# -- /link ----------------------------------------------------------------------------


async def link(
    message: Message, command: CommandObject, user: User, lang: str, services: Services
) -> None:
    entered = (command.args or "").strip()
    if entered:
        await redeem(message, entered, user, lang, services)
        return
    identities = await services.linking.linked(user.id)
    code = await services.linking.issue_code(user.id, PLATFORM)
    page = link_page(lang, code, identities, PLATFORM)
    markup = _unlink_buttons(lang, user.id, identities)
    kwargs = _with_code(page.text, page.code)
    await patiently(lambda: message.answer(**kwargs, reply_markup=markup))


async def redeem(message: Message, entered: str, user: User, lang: str, services: Services) -> None:
    try:
        result = await services.linking.redeem(user.id, PLATFORM, entered)
    except OneAIError as exc:
        await reply(message, error_text(lang, exc))
        return
    await reply(message, done_text(lang, result))


# -- the buttons ------------------------------------------------------------------------


async def link_action(
    query: CallbackQuery, callback_data: LinkAction, user: User, lang: str, services: Services
) -> None:
    message = query.message if isinstance(query.message, Message) else None
    if callback_data.user != user.id:
        await query.answer(t(lang, "not_yours"), show_alert=True)
        return
    identities = await services.linking.linked(user.id)
    platform = callback_data.platform
    if (
        message is None
        or platform == PLATFORM
        or platform not in {i.platform for i in identities}
        or len(identities) < 2
    ):
        await query.answer(t(lang, "stale_button"), show_alert=True)
        return
    name = platform_name(platform)
    if callback_data.op is LinkOp.ASK:
        buttons = [
            [_button(t(lang, "link.yes_unlink", platform=name), LinkOp.UNLINK, platform, user.id)],
            [_button(t(lang, "link.keep"), LinkOp.BACK, platform, user.id)],
        ]
        await query.answer()
        await redraw(
            message,
            t(lang, "link.confirm_unlink", platform=name),
            InlineKeyboardMarkup(inline_keyboard=buttons),
        )
        return
    if callback_data.op is LinkOp.BACK:
        await query.answer()
        await redraw(
            message,
            accounts_text(lang, identities, PLATFORM),
            _unlink_buttons(lang, user.id, identities),
        )
        return
    try:
        await services.linking.unlink(user.id, platform)
    except OneAIError as exc:
        await query.answer(error_text(lang, exc), show_alert=True)
        return
    await query.answer()
    await redraw(message, t(lang, "link.unlinked", platform=name), None)


def create_router() -> Router:
    router = Router(name="link")
    router.message.filter(F.chat.type == "private")
    router.message.register(link, Command("link"))
    router.callback_query.register(link_action, LinkAction.filter())
    return router
