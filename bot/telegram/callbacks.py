"""Every button's data, as aiogram CallbackData factories (64 bytes at most).

Ids are compact (uuid hex) and every handler re-checks that the row belongs to the
person who pressed: callback data is client-supplied and can be forged.
"""

from __future__ import annotations

import uuid
from enum import StrEnum

from aiogram.filters.callback_data import CallbackData

from core.admin.screens import AdminOp
from core.views.models import ModelScope
from core.views.settings import SettingsOp
from payments.offers import PayMethod

__all__ = [
    "AdminAction",
    "AdminOp",
    "AnswerAction",
    "AnswerOp",
    "Buy",
    "HistoryAction",
    "HistoryOp",
    "ModePick",
    "ModelPick",
    "PayMethod",
    "SettingsAction",
    "SettingsOp",
    "VoiceEdit",
]


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
    scope: ModelScope = ModelScope.CONVERSATION


class ModePick(CallbackData, prefix="md"):
    """A chat mode (core/views/modes.py) for the conversation the menu was drawn for."""

    mode: str  # a mode id (at most 24 characters) or MY_PROMPT
    conversation: str = ""  # uuid hex; empty: the current conversation, or a new one


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


class SettingsAction(CallbackData, prefix="st"):
    op: SettingsOp
    value: str = ""


class Buy(CallbackData, prefix="b"):
    method: PayMethod
    tier: str


class AdminAction(CallbackData, prefix="ad"):
    """An admin screen's button (core/admin/screens.py). Whoever presses it is
    checked to be an admin first; anyone else gets the unknown-button answer."""

    op: AdminOp
    user: int = 0  # whose card
    arg: str = ""
    page: int = 0


class VoiceEdit(CallbackData, prefix="v"):
    """✏️ under a voice note's transcript. It carries no row: the transcript
    message is linked to its prompt row, which is checked against the presser."""

    op: str = "e"


class DocumentOp(StrEnum):
    FIRST_PART = "f"  # answer from the part that fits
    MODEL = "m"  # switch to a model with a larger window and ask again


class DocumentAction(CallbackData, prefix="dc"):
    """A button under the offer for a document too large for the model. The
    document is checked to be the presser's by the core flow."""

    op: DocumentOp
    doc: str  # uuid hex of the attachment
    model: int = -1  # catalog position of the model to switch to

    @property
    def attachment_id(self) -> uuid.UUID:
        return uuid.UUID(hex=self.doc)
