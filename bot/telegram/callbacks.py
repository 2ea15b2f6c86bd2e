"""Every button's data, as aiogram CallbackData factories (64 bytes at most).

Ids are compact (uuid hex) and every handler re-checks that the row belongs to the
person who pressed: callback data is client-supplied and can be forged.
"""

from __future__ import annotations

import uuid
from enum import StrEnum

from aiogram.filters.callback_data import CallbackData


class AnswerOp(StrEnum):
    STOP = "s"
    REGENERATE = "r"
    PAGE = "p"  # show revision `rev` (1-based) of the answer


class AnswerAction(CallbackData, prefix="a"):
    op: AnswerOp
    message: str  # uuid hex of the assistant row the buttons are under
    rev: int = 0

    @property
    def message_id(self) -> uuid.UUID:
        return uuid.UUID(hex=self.message)


class ModelPick(CallbackData, prefix="m"):
    index: int  # position in the catalog: model ids can exceed 64 bytes
    scope: str = "c"  # c: this conversation (+ default), d: default only (settings)


class HistoryOp(StrEnum):
    PAGE = "p"
    RESUME = "r"
    DELETE = "d"


class HistoryAction(CallbackData, prefix="h"):
    op: HistoryOp
    conversation: str = ""  # uuid hex
    page: int = 1

    @property
    def conversation_id(self) -> uuid.UUID:
        return uuid.UUID(hex=self.conversation)


class SettingsOp(StrEnum):
    PROMPT = "p"
    CLEAR_PROMPT = "c"
    MODEL = "m"
    LANGUAGE = "l"


class SettingsAction(CallbackData, prefix="st"):
    op: SettingsOp
    value: str = ""


class PayMethod(StrEnum):
    STARS = "s"  # one-off Stars invoice, 30 days
    STARS_MONTHLY = "m"  # Stars subscription link, renews every 30 days
    PROVIDER = "p"  # invoice through the operator's payment provider token
    YOOKASSA = "y"
    RAZORPAY = "r"


class Buy(CallbackData, prefix="b"):
    method: PayMethod
    tier: str
