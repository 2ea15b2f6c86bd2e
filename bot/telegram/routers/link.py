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
from core.linking import CODE_TTL, LinkedIdentity, platform_name
from core.services import Services
from core.tiers import TIERS

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


def _identity_line(lang: str, identity: LinkedIdentity) -> str:
    name = f" @{identity.username}" if identity.username else ""
    if identity.platform == PLATFORM:
        name += t(lang, "link.here")
    return t(lang, "link.identity", platform=platform_name(identity.platform), name=name)


def _accounts_text(lang: str, identities: list[LinkedIdentity]) -> str:
    """The linked accounts, or nothing when there is only this one."""
    if len(identities) < 2:
        return ""
    return "\n".join([t(lang, "link.header"), *(_identity_line(lang, i) for i in identities)])


def _unlink_buttons(
    lang: str, user_id: int, identities: list[LinkedIdentity]
) -> InlineKeyboardMarkup | None:
    others = [i.platform for i in identities if i.platform != PLATFORM]
    if len(identities) < 2 or not others:
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
    minutes = int(CODE_TTL.total_seconds() // 60)
    text = t(lang, "link.code", code=code.code, minutes=minutes)
    accounts = _accounts_text(lang, identities)
    if accounts:
        text = f"{accounts}\n\n{text}"
    markup = _unlink_buttons(lang, user.id, identities)
    kwargs = _with_code(text, code.code)
    await patiently(lambda: message.answer(**kwargs, reply_markup=markup))


async def redeem(message: Message, entered: str, user: User, lang: str, services: Services) -> None:
    try:
        result = await services.linking.redeem(user.id, PLATFORM, entered)
    except OneAIError as exc:
        await reply(message, error_text(lang, exc))
        return
    text = t(
        lang,
        "link.done",
        platforms=" + ".join(platform_name(p) for p in result.platforms),
        plan=TIERS[result.tier].name,
        conversations=result.conversations,
    )
    if result.ended_recurring and result.ended_tier is not None:
        text += "\n\n" + t(lang, "link.ended_recurring", plan=TIERS[result.ended_tier].name)
    await reply(message, text)


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
            message, _accounts_text(lang, identities), _unlink_buttons(lang, user.id, identities)
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
