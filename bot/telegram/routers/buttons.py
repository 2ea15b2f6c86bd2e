"""The buttons under answers (Stop, Regenerate, ◀ n/m ▶) and under a document's offer."""

from __future__ import annotations

from aiogram import Router
from aiogram.types import CallbackQuery

from bot.telegram.answerer import Answerer
from bot.telegram.callbacks import AnswerAction, AnswerOp, DocumentAction
from core.db.models import User


async def answer_button(
    query: CallbackQuery, callback_data: AnswerAction, user: User, lang: str, answerer: Answerer
) -> None:
    if callback_data.op is AnswerOp.STOP:
        await answerer.stop(query, user, lang, callback_data)
    elif callback_data.op is AnswerOp.REGENERATE:
        await answerer.regenerate(query, user, lang, callback_data)
    else:
        await answerer.page(query, user, lang, callback_data)


async def document_button(
    query: CallbackQuery, callback_data: DocumentAction, user: User, lang: str, answerer: Answerer
) -> None:
    await answerer.document_button(query, user, lang, callback_data)


def create_router() -> Router:
    router = Router(name="answer-buttons")
    router.callback_query.register(answer_button, AnswerAction.filter())
    router.callback_query.register(document_button, DocumentAction.filter())
    return router
