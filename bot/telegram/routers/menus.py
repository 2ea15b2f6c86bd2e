"""Callbacks of the /model picker, /history list and /settings menu. The choices and
what they change are in core/views; this draws them."""

from __future__ import annotations

from aiogram import Router
from aiogram.fsm.context import FSMContext
from aiogram.types import CallbackQuery, Message

from bot.telegram import keyboards
from bot.telegram.callbacks import (
    HistoryAction,
    HistoryOp,
    ModelPick,
    SettingsAction,
    SettingsOp,
)
from bot.telegram.replies import redraw, reply
from bot.telegram.routers.commands import send_history, send_models
from bot.telegram.states import SettingsStates
from core.conversations.errors import ConversationNotFound
from core.db.models import User
from core.errors import OneAIError
from core.i18n import error_text, t
from core.llm.catalog import ModelLocked
from core.services import Services
from core.views.history import delete_conversation, open_conversation
from core.views.models import ModelScope, locked_notice, menu_for, model_at, switch_model
from core.views.search import toggle_web_search, web_search_state
from core.views.settings import choose_language, clear_system_prompt, settings_view


def _message(query: CallbackQuery) -> Message | None:
    return query.message if isinstance(query.message, Message) else None


async def pick_model(
    query: CallbackQuery, callback_data: ModelPick, user: User, lang: str, services: Services
) -> None:
    model = model_at(services.catalog, callback_data.index)
    if model is None:
        await query.answer()  # a group header, or a stale index
        return
    try:
        switched = await switch_model(services, user, model.id, lang, callback_data.scope)
    except ModelLocked as exc:
        await query.answer(locked_notice(lang, exc.model), show_alert=True)
        return
    await query.answer(switched.notice)
    message = _message(query)
    if message is not None:
        menu = await menu_for(services, user, lang, callback_data.scope)
        await redraw(message, menu.header, keyboards.models(menu))


async def history_action(
    query: CallbackQuery, callback_data: HistoryAction, user: User, lang: str, services: Services
) -> None:
    message = _message(query)
    if message is None:
        await query.answer()
        return
    try:
        if callback_data.op is HistoryOp.RESUME:
            conversation = await open_conversation(services, user.id, callback_data.conversation_id)
            await query.answer(t(lang, "history.resumed", title=conversation.title))
            await reply(message, t(lang, "history.resumed", title=conversation.title))
        elif callback_data.op is HistoryOp.DELETE:
            conversation = await delete_conversation(
                services, user.id, callback_data.conversation_id
            )
            await query.answer(t(lang, "history.deleted", title=conversation.title))
            await send_history(message, user, lang, services, callback_data.page, edit=True)
        else:
            await query.answer()
            await send_history(message, user, lang, services, callback_data.page, edit=True)
    except ValueError:  # a forged uuid
        await query.answer(t(lang, "stale_button"), show_alert=True)
    except ConversationNotFound:
        await query.answer(t(lang, "stale_button"), show_alert=True)
    except OneAIError as exc:
        await query.answer(error_text(lang, exc), show_alert=True)


async def settings_action(
    query: CallbackQuery,
    callback_data: SettingsAction,
    state: FSMContext,
    user: User,
    lang: str,
    services: Services,
) -> None:
    message = _message(query)
    if callback_data.op is SettingsOp.PROMPT:
        await state.set_state(SettingsStates.prompt)
        await query.answer()
        if message is not None:
            await reply(message, t(lang, "settings.ask_prompt"))
        return
    if callback_data.op is SettingsOp.MODEL:
        await query.answer()
        if message is not None:
            await send_models(message, user, lang, services, ModelScope.DEFAULT)
        return
    if callback_data.op is SettingsOp.CLEAR_PROMPT:
        await query.answer(await clear_system_prompt(services, user, lang))
    elif callback_data.op is SettingsOp.WEB_SEARCH:
        await query.answer(await toggle_web_search(services, user, lang))
    elif callback_data.op is SettingsOp.LANGUAGE:
        notice = await choose_language(services, user, callback_data.value)
        if notice is None:
            await query.answer(t(lang, "stale_button"), show_alert=True)
            return
        lang = callback_data.value
        await query.answer(notice)
    if message is not None:
        view = settings_view(services, user, lang, await web_search_state(services, user))
        await redraw(message, view.text, keyboards.settings(view))


def create_router() -> Router:
    router = Router(name="menus")
    router.callback_query.register(pick_model, ModelPick.filter())
    router.callback_query.register(history_action, HistoryAction.filter())
    router.callback_query.register(settings_action, SettingsAction.filter())
    return router
