"""Inline keyboards, built with aiogram's builder and our CallbackData factories.
What they offer is decided in core (core/views, payments/offers.py); these only draw."""

from __future__ import annotations

import uuid

from aiogram.types import InlineKeyboardButton, InlineKeyboardMarkup
from aiogram.utils.keyboard import InlineKeyboardBuilder

from bot.telegram.callbacks import (
    AdminAction,
    AnswerAction,
    AnswerOp,
    Buy,
    DocumentAction,
    DocumentOp,
    HistoryAction,
    HistoryOp,
    ModelPick,
    ModePick,
    SettingsAction,
    SettingsOp,
)
from core.admin.screens import AdminButton
from core.documents.flow import Offer as DocumentOffer
from core.i18n import t
from core.views.history import ConversationAction, HistoryPage
from core.views.models import ModelMenu
from core.views.modes import ModeMenu
from core.views.settings import SettingsView
from payments.offers import Offer

TITLE_CHARS = 40  # of a conversation's title on its button


# The two keyboards every answer shows are drawn without the builder: they are
# drawn for each answer, and the builder's generality costs more than the send.


def _button(text: str, action: AnswerAction) -> InlineKeyboardButton:
    return InlineKeyboardButton(text=text, callback_data=action.pack())


def streaming(lang: str, message_id: uuid.UUID) -> InlineKeyboardMarkup:
    stop = _button(t(lang, "stop"), AnswerAction(op=AnswerOp.STOP, message=message_id.hex))
    return InlineKeyboardMarkup(inline_keyboard=[[stop]])


def answer(lang: str, message_id: uuid.UUID, index: int, count: int) -> InlineKeyboardMarkup:
    """Under a finished answer: ◀ n/m ▶ once there are several versions, and 🔄.

    `index` is 1-based, as people count."""
    hexid = message_id.hex
    rows: list[list[InlineKeyboardButton]] = []
    if count > 1:
        previous = index - 1 if index > 1 else count
        following = index + 1 if index < count else 1
        rows.append(
            [
                _button("◀", AnswerAction(op=AnswerOp.PAGE, message=hexid, rev=previous)),
                _button(
                    f"{index}/{count}", AnswerAction(op=AnswerOp.PAGE, message=hexid, rev=index)
                ),
                _button("▶", AnswerAction(op=AnswerOp.PAGE, message=hexid, rev=following)),
            ]
        )
    regenerate = AnswerAction(op=AnswerOp.REGENERATE, message=hexid)
    rows.append([_button(t(lang, "regenerate"), regenerate)])
    return InlineKeyboardMarkup(inline_keyboard=rows)


def models(menu: ModelMenu) -> InlineKeyboardMarkup:
    """Grouped by quota class; the current one marked; locked ones show their plan."""
    builder = InlineKeyboardBuilder()
    sizes: list[int] = []
    for group in menu.groups:
        builder.button(
            text=f"— {group.label} —", callback_data=ModelPick(index=-1, scope=menu.scope)
        )
        sizes.append(1)
        for model in group.models:
            mark = "✅ " if model.current else ""
            lock = f" 🔒 {model.required_plan}" if model.locked else ""
            builder.button(
                text=f"{mark}{model.name}{lock}",
                callback_data=ModelPick(index=model.index, scope=menu.scope),
            )
        count = len(group.models)
        sizes += [2] * (count // 2) + ([1] if count % 2 else [])
    builder.adjust(*sizes)
    return builder.as_markup()


def modes(menu: ModeMenu) -> InlineKeyboardMarkup:
    """Two modes a row, the one in use marked; "My prompt" last."""
    builder = InlineKeyboardBuilder()
    conversation = menu.conversation_id.hex if menu.conversation_id else ""
    for choice in menu.choices:
        builder.button(
            text=f"✅ {choice.label}" if choice.current else choice.label,
            callback_data=ModePick(mode=choice.id, conversation=conversation),
        )
    builder.adjust(2)
    return builder.as_markup()


def history(page: HistoryPage) -> InlineKeyboardMarkup | None:
    """Per conversation its title (resume) and 🗑 (delete); ◀ ▶ between pages."""
    if page.empty:
        return None
    builder = InlineKeyboardBuilder()
    sizes: list[int] = []
    for entry in page.entries:
        mark = "• " if entry.current else ""
        row = 0
        if ConversationAction.OPEN in entry.actions:
            builder.button(
                text=f"{mark}{entry.title[:TITLE_CHARS]}",
                callback_data=HistoryAction(
                    op=HistoryOp.RESUME, conversation=entry.id.hex, page=page.page
                ),
            )
            row += 1
        if ConversationAction.DELETE in entry.actions:
            builder.button(
                text="🗑",
                callback_data=HistoryAction(
                    op=HistoryOp.DELETE, conversation=entry.id.hex, page=page.page
                ),
            )
            row += 1
        if row:
            sizes.append(row)
    nav = 0
    for target, arrow in ((page.previous_page, "◀"), (page.next_page, "▶")):
        if target is not None:
            builder.button(text=arrow, callback_data=HistoryAction(op=HistoryOp.PAGE, page=target))
            nav += 1
    if nav:
        sizes.append(nav)
    builder.adjust(*sizes)
    return builder.as_markup()


def settings(view: SettingsView) -> InlineKeyboardMarkup:
    """Prompt and clear side by side, the default model, then the languages in a row."""
    builder = InlineKeyboardBuilder()
    for button in view.buttons:
        builder.button(
            text=button.label, callback_data=SettingsAction(op=button.op, value=button.value)
        )
    languages = sum(button.op is SettingsOp.LANGUAGE for button in view.buttons)
    if any(button.op is SettingsOp.WEB_SEARCH for button in view.buttons):
        builder.adjust(2, 1, 1, languages)  # web search on a row of its own
    else:
        builder.adjust(2, 1, languages)
    return builder.as_markup()


def offers(items: list[Offer]) -> InlineKeyboardMarkup | None:
    """One buy button a row."""
    rows = [
        [
            InlineKeyboardButton(
                text=offer.label,
                callback_data=Buy(method=offer.method, tier=offer.tier.value).pack(),
            )
        ]
        for offer in items
    ]
    return InlineKeyboardMarkup(inline_keyboard=rows) if rows else None


def link(text: str, url: str) -> InlineKeyboardMarkup:
    """One button that opens `url`."""
    return InlineKeyboardMarkup(inline_keyboard=[[InlineKeyboardButton(text=text, url=url)]])


def admin(*rows: list[AdminButton], width: int = 2) -> InlineKeyboardMarkup | None:
    """An admin screen: each group of buttons `width` to a row, groups apart."""
    builder = InlineKeyboardBuilder()
    for buttons in rows:
        group = InlineKeyboardBuilder()
        for button in buttons:
            group.button(
                text=button.label,
                callback_data=AdminAction(
                    op=button.op, user=button.user_id, arg=button.arg, page=button.page
                ),
            )
        group.adjust(width)
        builder.attach(group)
    return builder.as_markup() if any(True for _ in builder.buttons) else None


def document_offer(offer: DocumentOffer) -> InlineKeyboardMarkup | None:
    """Under the reply to a document too large for the model: its two ways on."""
    builder = InlineKeyboardBuilder()
    doc = offer.attachment_id.hex
    if offer.first_part is not None:
        builder.button(
            text=offer.first_part,
            callback_data=DocumentAction(op=DocumentOp.FIRST_PART, doc=doc),
        )
    if offer.bigger_label is not None and offer.bigger_index is not None:
        builder.button(
            text=offer.bigger_label,
            callback_data=DocumentAction(op=DocumentOp.MODEL, doc=doc, model=offer.bigger_index),
        )
    builder.adjust(1)
    return builder.as_markup() if offer.first_part or offer.bigger_label else None
