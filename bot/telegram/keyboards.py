"""Inline keyboards, built with aiogram's builder and our CallbackData factories."""

from __future__ import annotations

import uuid

from aiogram.types import InlineKeyboardMarkup
from aiogram.utils.keyboard import InlineKeyboardBuilder

from bot.telegram.callbacks import (
    AnswerAction,
    AnswerOp,
    HistoryAction,
    HistoryOp,
    ModelPick,
    SettingsAction,
    SettingsOp,
)
from core.conversations.service import ConversationPage
from core.i18n import LANGUAGES, t
from core.llm.catalog import ModelCatalog
from core.tiers import TIERS, Tier


def streaming(lang: str, message_id: uuid.UUID) -> InlineKeyboardMarkup:
    builder = InlineKeyboardBuilder()
    builder.button(
        text=t(lang, "stop"), callback_data=AnswerAction(op=AnswerOp.STOP, message=message_id.hex)
    )
    return builder.as_markup()


def answer(lang: str, message_id: uuid.UUID, index: int, count: int) -> InlineKeyboardMarkup:
    """Under a finished answer: ◀ n/m ▶ once there are several versions, and 🔄.

    `index` is 1-based, as people count."""
    builder = InlineKeyboardBuilder()
    hexid = message_id.hex
    if count > 1:
        previous = index - 1 if index > 1 else count
        following = index + 1 if index < count else 1
        builder.button(
            text="◀", callback_data=AnswerAction(op=AnswerOp.PAGE, message=hexid, rev=previous)
        )
        builder.button(
            text=f"{index}/{count}",
            callback_data=AnswerAction(op=AnswerOp.PAGE, message=hexid, rev=index),
        )
        builder.button(
            text="▶", callback_data=AnswerAction(op=AnswerOp.PAGE, message=hexid, rev=following)
        )
    builder.button(
        text=t(lang, "regenerate"),
        callback_data=AnswerAction(op=AnswerOp.REGENERATE, message=hexid),
    )
    if count > 1:
        builder.adjust(3, 1)
    return builder.as_markup()


def models(
    lang: str, catalog: ModelCatalog, current: str, tier: Tier, scope: str = "c"
) -> InlineKeyboardMarkup:
    """Grouped by quota class; the current one marked; locked ones show their plan."""
    builder = InlineKeyboardBuilder()
    ordered = catalog.all()
    sizes: list[int] = []
    for key, group in catalog.grouped().items():
        builder.button(
            text=f"— {t(lang, f'quota.{key.value}')} —",
            callback_data=ModelPick(index=-1, scope=scope),
        )
        sizes.append(1)
        for model in group:
            mark = "✅ " if model.id == current else ""
            lock = "" if model.available_to(tier) else f" 🔒 {TIERS[model.min_tier].name}"
            builder.button(
                text=f"{mark}{model.name}{lock}",
                callback_data=ModelPick(index=ordered.index(model), scope=scope),
            )
        sizes += [2] * (len(group) // 2) + ([1] if len(group) % 2 else [])
    builder.adjust(*sizes)
    return builder.as_markup()


def history(lang: str, page: ConversationPage, current: uuid.UUID | None) -> InlineKeyboardMarkup:
    builder = InlineKeyboardBuilder()
    sizes: list[int] = []
    for conversation in page.items:
        mark = "• " if conversation.id == current else ""
        builder.button(
            text=f"{mark}{conversation.title[:40]}",
            callback_data=HistoryAction(
                op=HistoryOp.RESUME, conversation=conversation.id.hex, page=page.page
            ),
        )
        builder.button(
            text="🗑",
            callback_data=HistoryAction(
                op=HistoryOp.DELETE, conversation=conversation.id.hex, page=page.page
            ),
        )
        sizes.append(2)
    nav = 0
    if page.page > 1:
        builder.button(text="◀", callback_data=HistoryAction(op=HistoryOp.PAGE, page=page.page - 1))
        nav += 1
    if page.page < page.pages:
        builder.button(text="▶", callback_data=HistoryAction(op=HistoryOp.PAGE, page=page.page + 1))
        nav += 1
    if nav:
        sizes.append(nav)
    builder.adjust(*sizes)
    return builder.as_markup()


def settings(lang: str) -> InlineKeyboardMarkup:
    builder = InlineKeyboardBuilder()
    builder.button(
        text=t(lang, "settings.prompt"), callback_data=SettingsAction(op=SettingsOp.PROMPT)
    )
    builder.button(
        text=t(lang, "settings.prompt_clear"),
        callback_data=SettingsAction(op=SettingsOp.CLEAR_PROMPT),
    )
    builder.button(
        text=t(lang, "settings.model"), callback_data=SettingsAction(op=SettingsOp.MODEL)
    )
    for code, name in LANGUAGES.items():
        builder.button(
            text=f"🌐 {name}", callback_data=SettingsAction(op=SettingsOp.LANGUAGE, value=code)
        )
    builder.adjust(2, 1, len(LANGUAGES))
    return builder.as_markup()
