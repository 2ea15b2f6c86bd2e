"""Whether a document fits a model's window, and if not, how much does and which
model it would fit whole. Never a silent cut: a document too large gets an offer."""

from __future__ import annotations

import math
from dataclasses import dataclass

from core.llm.catalog import ModelCatalog, ModelInfo
from core.llm.context import DocumentText, HistoryMessage, message_cost, newest_room
from core.llm.tokens import TokenEstimator
from core.tiers import Tier

# "The first part" ends at a line break when one is this close to the cut.
_BREAK_WINDOW = 0.05


@dataclass(frozen=True)
class Fit:
    fits: bool
    chars: int  # characters of the document that fit (all of them when it fits)
    total_chars: int
    pages: int | None
    bigger: ModelInfo | None = None  # a model the person may use that takes it whole

    @property
    def percent(self) -> int:
        return min(100, 100 * self.chars // max(1, self.total_chars))

    @property
    def pages_fit(self) -> int | None:
        """About how many pages fit (pages are told apart by their share of text)."""
        if self.pages is None:
            return None
        return min(self.pages, self.pages * self.chars // max(1, self.total_chars))


def fits_whole(
    question: str,
    document: DocumentText,
    model: ModelInfo,
    system_prompt: str | None,
    estimator: TokenEstimator,
) -> bool:
    message = HistoryMessage("user", question, document=document)
    return message_cost(message, model, estimator) <= newest_room(model, system_prompt, estimator)


def first_part(
    question: str,
    document: DocumentText,
    model: ModelInfo,
    system_prompt: str | None,
    estimator: TokenEstimator,
) -> int:
    """How many leading characters of the document fit with the question (0 if none)."""
    room = newest_room(model, system_prompt, estimator)
    text = document.text

    def cost(limit: int) -> int:
        part = DocumentText(document.name, text, document.pages, limit)
        return message_cost(HistoryMessage("user", question, document=part), model, estimator)

    bare = cost(0)
    if bare >= room:
        return 0
    whole = cost(len(text)) - bare
    limit = math.floor(len(text) * (room - bare) / max(1, whole))
    # The estimate is proportional; text is not uniform, so shrink until it fits.
    while limit > 0 and cost(limit) > room:
        limit = math.floor(limit * 0.97)
    if limit <= 0:
        return 0
    cut = text.rfind("\n", math.floor(limit * (1 - _BREAK_WINDOW)), limit)
    return cut if cut > 0 else limit


def bigger_model(
    question: str,
    document: DocumentText,
    current: ModelInfo,
    system_prompt: str | None,
    catalog: ModelCatalog,
    tier: Tier,
    estimator: TokenEstimator,
) -> ModelInfo | None:
    """The model with the smallest window that takes the whole document, among those
    the person's plan allows (of the same quota as the current one first)."""
    candidates = [
        model
        for group in catalog.grouped().values()
        for model in group
        if model.id != current.id
        and not model.image_output
        and model.available_to(tier)
        and model.context_length > current.context_length
    ]
    candidates.sort(
        key=lambda m: (m.quota_key != current.quota_key, m.context_length, m.name.lower())
    )
    for model in candidates:
        if fits_whole(question, document, model, system_prompt, estimator):
            return model
    return None


def decide(
    question: str,
    document: DocumentText,
    model: ModelInfo,
    system_prompt: str | None,
    catalog: ModelCatalog,
    tier: Tier,
    estimator: TokenEstimator,
) -> Fit:
    total = len(document.text)
    if fits_whole(question, document, model, system_prompt, estimator):
        return Fit(True, total, total, document.pages)
    chars = first_part(question, document, model, system_prompt, estimator)
    bigger = bigger_model(question, document, model, system_prompt, catalog, tier, estimator)
    return Fit(False, chars, total, document.pages, bigger)
