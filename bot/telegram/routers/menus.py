"""Callbacks of the /model picker, /history list and /settings menu."""

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
from bot.telegram.routers.commands import (
    model_name,
    send_history,
    settings_text,
)
from bot.telegram.states import SettingsStates
from core.conversations.errors import ConversationNotFound
from core.db.models import User
from core.errors import OneAIError
from core.i18n import LANGUAGES, error_text, t
from core.services import Services
from core.tiers import TIERS, Tier


def _message(query: CallbackQuery) -> Message | None:
    return query.message if isinstance(query.message, Message) else None


async def pick_model(
    query: CallbackQuery, callback_data: ModelPick, user: User, lang: str, services: Services
) -> None:
    models = services.catalog.all()
    if not 0 <= callback_data.index < len(models):
        await query.answer()  # a group header, or a stale index
        return
    model = models[callback_data.index]
    tier = Tier(user.tier)
    if not model.available_to(tier):
        await query.answer(
            t(lang, "model.locked", model=model.name, plan=TIERS[model.min_tier].name),
            show_alert=True,
        )
        return
    await services.accounts.set_default_model(user.id, model.id)
    if callback_data.scope == "c":
        conversation = await services.conversations.current(user.id)
        if conversation is not None:
            await services.conversations.set_model(user.id, conversation.id, model.id)
    user.default_model = model.id
    await query.answer(t(lang, "model.set", model=model.name))
    message = _message(query)
    if message is not None:
        current = await services.current_model_id(user) if callback_data.scope == "c" else model.id
        await redraw(
            message,
            t(lang, "model.header", model=model.name),
            keyboards.models(lang, services.catalog, current, tier, callback_data.scope),
        )


async def history_action(
    query: CallbackQuery, callback_data: HistoryAction, user: User, lang: str, services: Services
) -> None:
    message = _message(query)
    if message is None:
        await query.answer()
        return
    try:
        if callback_data.op is HistoryOp.RESUME:
            conversation = await services.conversations.get(user.id, callback_data.conversation_id)
            await services.accounts.set_current_conversation(user.id, conversation.id)
            user.current_conversation_id = conversation.id
            await query.answer(t(lang, "history.resumed", title=conversation.title))
            await reply(message, t(lang, "history.resumed", title=conversation.title))
        elif callback_data.op is HistoryOp.DELETE:
            conversation = await services.conversations.get(user.id, callback_data.conversation_id)
            await services.conversations.delete(user.id, conversation.id)
            if user.current_conversation_id == conversation.id:
                user.current_conversation_id = None
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
    if callback_data.op is SettingsOp.CLEAR_PROMPT:
        await services.accounts.set_system_prompt(user.id, None)
        user.system_prompt = None
        await query.answer(t(lang, "settings.prompt_cleared"))
    elif callback_data.op is SettingsOp.MODEL:
        await query.answer()
        if message is not None:
            current = services.catalog.preferred(user.default_model).id
            await reply(
                message,
                t(lang, "model.header", model=model_name(services, current)),
                keyboards.models(lang, services.catalog, current, Tier(user.tier), scope="d"),
            )
        return
    elif callback_data.op is SettingsOp.LANGUAGE:
        if callback_data.value not in LANGUAGES:
            await query.answer(t(lang, "stale_button"), show_alert=True)
            return
        await services.accounts.set_language(user.id, callback_data.value)
        lang = callback_data.value
        user.language = lang
        await query.answer(t(lang, "settings.language_set"))
    if message is not None:
        await redraw(message, await settings_text(user, lang, services), keyboards.settings(lang))


def create_router() -> Router:
    router = Router(name="menus")
    router.callback_query.register(pick_model, ModelPick.filter())
    router.callback_query.register(history_action, HistoryAction.filter())
    router.callback_query.register(settings_action, SettingsAction.filter())
    return router
