"""/admin → Broadcast: write the text (Markdown, a photo if wanted), see it as
people will (a sample in the admin's chat), pick the audience, send; then one
message shows the progress, edited every few seconds by the engine's reporter
(also after a restart), with Pause / Resume / Cancel under it. Sending, pacing,
retries and resuming are core/broadcast's."""

from __future__ import annotations

import asyncio
from collections.abc import Callable
from typing import TYPE_CHECKING, Any

from aiogram import F, Router
from aiogram.fsm.context import FSMContext
from aiogram.types import InlineKeyboardMarkup, Message

from bot.telegram import keyboards
from bot.telegram.callbacks import AdminOp
from bot.telegram.composed import markdown_of
from bot.telegram.replies import FLOOD_ATTEMPTS, reply
from bot.telegram.states import AdminStates
from core.admin import screens
from core.admin.access import Actor
from core.broadcast import (
    BroadcastInfo,
    Photo,
    Progress,
    ProgressRef,
    Rejected,
    RetryAfter,
    Status,
    Transient,
    Unreachable,
)
from core.errors import OneAIError
from core.i18n import DEFAULT_LANGUAGE, error_text, t
from core.services import Services

if TYPE_CHECKING:
    from bot.telegram.routers.admin import Press

PLATFORM = "telegram"
NOTICE_CHARS = 200

OPS = frozenset(
    {
        AdminOp.BROADCAST,
        AdminOp.BC_AUDIENCE,
        AdminOp.BC_SEND,
        AdminOp.BC_EDIT,
        AdminOp.BC_DISCARD,
        AdminOp.BC_PAUSE,
        AdminOp.BC_RESUME,
        AdminOp.BC_CANCEL,
    }
)


def progress_markup(progress: Progress) -> InlineKeyboardMarkup | None:
    """The buttons under a progress message (the reporter does not know whose
    language the message is in: the progress line itself is English too)."""
    return keyboards.admin(screens.progress_buttons(DEFAULT_LANGUAGE, progress))


def progress_screen(progress: Progress, lang: str) -> tuple[str, InlineKeyboardMarkup | None]:
    return progress.line(), keyboards.admin(screens.progress_buttons(lang, progress))


async def ask_text(message: Message, state: FSMContext, lang: str, broadcast_id: int = 0) -> None:
    await state.set_state(AdminStates.broadcast)
    await state.update_data(broadcast=broadcast_id)
    await reply(message, t(lang, "admin.broadcast.ask"))


async def text_typed(
    message: Message, state: FSMContext, actor: Actor, lang: str, services: Services
) -> None:
    """The broadcast's text (or a photo and its caption): a new draft, or the
    draft being changed."""
    text = markdown_of(message)
    photo = Photo(message.photo[-1].file_id, PLATFORM) if message.photo else None
    if not text.strip() and photo is None:
        await reply(message, t(lang, "admin.broadcast.empty"))
        return
    engine = services.broadcasts
    draft_id = int((await state.get_data()).get("broadcast") or 0)
    try:
        if draft_id:
            info = await engine.edit_draft(
                draft_id, text=text, photo=photo, remove_photo=photo is None
            )
        else:
            info = await engine.create_draft(actor.user_id, text, photo=photo)
    except OneAIError as exc:
        await reply(message, error_text(lang, exc))  # still waiting for a text that fits
        return
    await state.clear()
    await _show_draft(message, info, lang, services)


async def _show_draft(message: Message, info: BroadcastInfo, lang: str, services: Services) -> None:
    """The sample as people will see it, then the draft's controls below it."""
    sample = await _sample(info, message.chat.id, services)
    text, markup = await draft_screen(info.id, lang, services)
    await reply(message, f"{sample}\n\n{text}" if sample else text, markup)


async def _sample(info: BroadcastInfo, chat_id: int, services: Services) -> str:
    """Send the admin the sample; what went wrong with it, or "" (shown it). It
    follows the admin's own message closely, so a 429 is waited out."""
    for attempt in range(FLOOD_ATTEMPTS):
        try:
            await services.broadcasts.send_sample(info.id, PLATFORM, str(chat_id))
        except RetryAfter as exc:
            if attempt == FLOOD_ATTEMPTS - 1:
                return f"⚠️ {exc}"
            await asyncio.sleep(exc.seconds)
        except (Rejected, Transient, Unreachable) as exc:
            return f"⚠️ {exc}"
        else:
            return ""
    return ""


async def draft_screen(
    broadcast_id: int, lang: str, services: Services
) -> tuple[str, InlineKeyboardMarkup | None]:
    preview = await services.broadcasts.preview(broadcast_id)
    text = f"{t(lang, 'admin.broadcast.sample')}\n\n{preview.describe()}"
    return text, keyboards.admin(
        screens.audience_buttons(lang, preview.broadcast.audience, broadcast_id),
        screens.draft_buttons(lang, broadcast_id, preview.ready and preview.audience.total > 0),
    )


async def pressed(p: Press) -> tuple[str, InlineKeyboardMarkup | None] | None:
    """A broadcast button: the screen it leads to (None: nothing to redraw)."""
    engine, op, lang = p.services.broadcasts, p.data.op, p.lang
    if op is AdminOp.BROADCAST:
        await p.ok()
        await ask_text(p.message, p.state, lang)
        return None
    choice = screens.parse_audience_choice(p.data.arg) if op is AdminOp.BC_AUDIENCE else None
    broadcast_id = choice[0] if choice else screens.parse_id(p.data.arg)
    if broadcast_id is None or (op is AdminOp.BC_AUDIENCE and choice is None):
        await p.stale()
        return None
    if choice is not None:
        await engine.edit_draft(broadcast_id, audience=choice[1])
        await p.ok()
        return await draft_screen(broadcast_id, lang, p.services)
    if op is AdminOp.BC_EDIT:
        await p.ok()
        await ask_text(p.message, p.state, lang, broadcast_id)
        return None
    if op is AdminOp.BC_DISCARD:
        if (await engine.get(broadcast_id)).status is not Status.DRAFT:
            await p.stale()
            return None
        await engine.cancel(broadcast_id, actor=p.actor)
        await p.ok()
        return t(lang, "admin.broadcast.discarded"), None
    if op is AdminOp.BC_SEND:
        where = ProgressRef(PLATFORM, str(p.message.chat.id), str(p.message.message_id))
        progress = await engine.start(broadcast_id, report_to=where, actor=p.actor)
    elif op is AdminOp.BC_PAUSE:
        progress = await engine.pause(broadcast_id, actor=p.actor)
    elif op is AdminOp.BC_RESUME:
        progress = await engine.resume(broadcast_id, actor=p.actor)
    else:
        progress = await engine.cancel(broadcast_id, actor=p.actor)
    await p.ok()
    return progress_screen(progress, lang)


def register(router: Router, admin_only: Callable[..., Any]) -> None:
    router.message.register(
        text_typed,
        AdminStates.broadcast,
        F.text | F.photo,
        ~F.text.startswith("/"),
        admin_only,
    )
