"""A document from any platform: size check, download, extraction, then either an
answer (it fits) or an offer (it does not): "use the first part" or "switch to a
model that takes it whole". The platform only downloads and draws the offer's
buttons; nothing is charged until an answer starts."""

from __future__ import annotations

import logging
import uuid
from collections.abc import Awaitable, Callable
from dataclasses import dataclass
from typing import Generic, TypeVar

from core.answers.flow import Ack, AnswerFlow, Origin
from core.conversations.turns import AttachmentUse
from core.db.models import User
from core.documents.errors import DocumentDoesNotFit, DocumentUnavailable
from core.documents.fit import Fit
from core.documents.service import DocumentService, Pending, question_of
from core.errors import OneAIError
from core.i18n import error_text, t
from core.llm.catalog import ModelInfo
from core.views.models import ModelScope, switch_model

log = logging.getLogger(__name__)

E = TypeVar("E")


@dataclass(frozen=True)
class Offer:
    """What to show for a document too large for the model: the text, and the
    buttons (None: not offered)."""

    attachment_id: uuid.UUID
    text: str
    first_part: str | None  # the button's label
    bigger: ModelInfo | None
    bigger_label: str | None
    bigger_index: int | None  # the model's catalog position, for compact button data


def offer_text(lang: str, name: str, model: ModelInfo, fit: Fit) -> str:
    if fit.pages is not None and fit.pages_fit is not None:
        head = t(
            lang,
            "document.too_large_pages",
            name=name,
            model=model.name,
            fit=fit.pages_fit,
            pages=fit.pages,
            percent=fit.percent,
        )
    else:
        head = t(lang, "document.too_large", name=name, model=model.name, percent=fit.percent)
    lines = [head]
    if fit.chars > 0:
        lines.append(t(lang, "document.offer_first"))
    if fit.bigger is not None:
        lines.append(t(lang, "document.offer_bigger", model=fit.bigger.name))
    else:
        lines.append(t(lang, "document.no_bigger"))
    return "\n".join(lines)


@dataclass
class DocumentFlow(Generic[E]):
    answers: AnswerFlow[E]

    @property
    def documents(self) -> DocumentService:
        return self.answers.services.documents

    async def _say_error(self, origin: Origin[E], lang: str, exc: OneAIError) -> None:
        await self.answers.surface.say(origin, error_text(lang, exc))

    async def receive(
        self,
        origin: Origin[E],
        user: User,
        lang: str,
        *,
        name: str,
        declared_mime: str | None,
        size: int | None,
        download: Callable[[], Awaitable[bytes]],
        caption: str | None,
    ) -> Offer | None:
        """Answer the document, or return the offer to draw when it does not fit.
        Bad input gets its reply here and changes nothing."""
        question = question_of(caption, lang)
        try:
            self.documents.check_size(size)  # before any download
            try:
                data = await download()
            except OneAIError:
                raise
            except Exception as exc:
                log.info("document %r could not be downloaded: %s", name, exc)
                raise DocumentUnavailable() from None
            pending = await self.documents.receive(user.id, name, declared_mime, data, question)
            fit = await self.documents.fit(user, pending)
        except OneAIError as exc:
            await self._say_error(origin, lang, exc)
            return None
        if fit.fits:
            await self._send(origin, user, lang, pending, None)
            return None
        return await self._offer(user, lang, pending, fit)

    async def _offer(self, user: User, lang: str, pending: Pending, fit: Fit) -> Offer:
        model_id = await self.answers.services.current_model_id(user)
        catalog = self.answers.services.catalog
        model = catalog.get(model_id) or catalog.default
        bigger = fit.bigger
        index = None
        if bigger is not None:
            index = next((i for i, m in enumerate(catalog.all()) if m.id == bigger.id), None)
        return Offer(
            pending.attachment.id,
            offer_text(lang, pending.attachment.name, model, fit),
            t(lang, "document.first_button") if fit.chars > 0 else None,
            bigger if index is not None else None,
            t(lang, "document.bigger_button", model=bigger.name) if bigger is not None else None,
            index,
        )

    async def _send(
        self, origin: Origin[E], user: User, lang: str, pending: Pending, limit: int | None
    ) -> None:
        await self.answers.send(
            origin,
            user,
            lang,
            pending.question,
            attachment=AttachmentUse(pending.attachment.id, limit),
        )

    async def use_first_part(
        self, origin: Origin[E], user: User, lang: str, attachment_id: uuid.UUID, ack: Ack
    ) -> None:
        """The "first part" button. `ack` answers the press first: "" when it goes
        ahead, else the refusal for the presser (someone else's, replaced, used)."""
        try:
            pending = await self.documents.pending(user.id, attachment_id)
            fit = await self.documents.fit(user, pending)
        except OneAIError as exc:
            await ack(error_text(lang, exc))
            return
        if not fit.fits and fit.chars <= 0:
            await ack(error_text(lang, DocumentDoesNotFit()))
            return
        await ack("")
        if fit.fits:  # the model changed meanwhile: the whole of it goes
            await self._send(origin, user, lang, pending, None)
            return
        name = pending.attachment.name
        if fit.pages is not None:
            note = t(
                lang,
                "document.first_part_pages",
                name=name,
                fit=fit.pages_fit,
                pages=fit.pages,
                percent=fit.percent,
            )
        else:
            note = t(lang, "document.first_part", name=name, percent=fit.percent)
        await self.answers.surface.say(origin, note)
        await self._send(origin, user, lang, pending, fit.chars)

    async def use_model(
        self,
        origin: Origin[E],
        user: User,
        lang: str,
        attachment_id: uuid.UUID,
        model_id: str,
        ack: Ack,
    ) -> None:
        """The "switch model" button: the conversation moves to `model_id` (if the
        plan allows it) and the document is asked again, whole."""
        try:
            pending = await self.documents.pending(user.id, attachment_id)
            switched = await switch_model(
                self.answers.services, user, model_id, lang, ModelScope.CONVERSATION
            )
            fit = await self.documents.fit(user, pending)
        except OneAIError as exc:
            await ack(error_text(lang, exc))
            return
        if not fit.fits:
            await ack(error_text(lang, DocumentDoesNotFit()))
            return
        await ack("")
        await self.answers.surface.say(origin, switched.notice)
        await self._send(origin, user, lang, pending, None)
