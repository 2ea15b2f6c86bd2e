"""Documents people send: read, stored once, and checked against the model's window."""

from __future__ import annotations

import uuid
from dataclasses import dataclass

from sqlalchemy import delete, exists

from core.config import DocumentSettings
from core.conversations.service import ConversationService
from core.db.engine import Database
from core.db.models import Attachment, ChatMessage, User
from core.db.models.attachments import AUDIO
from core.documents.errors import DocumentGone, NotYourDocument
from core.documents.fit import Fit, decide
from core.documents.reader import DocumentReader
from core.i18n import t
from core.llm.catalog import ModelCatalog
from core.llm.tokens import TokenEstimator
from core.tiers import Tier

NAME_CHARS = 255
QUESTION = "question"  # an attachment's metadata key while it waits for a choice


@dataclass(frozen=True)
class Pending:
    """A stored document and the question it came with."""

    attachment: Attachment
    question: str


def attachment_label(lang: str, name: str, pages: int | None) -> str:
    """How history, exports and revisions name a document: 📎 report.pdf (12 pages)."""
    if pages == 1:
        return t(lang, "document.label_page", name=name)
    if pages:
        return t(lang, "document.label_pages", name=name, pages=pages)
    return t(lang, "document.label", name=name)


def stored_label(lang: str, attachment: Attachment) -> str:
    """How history, exports and revisions name what a message came with: a
    document (📎 report.pdf) or a recording (🎤 voice note (12 s))."""
    if attachment.kind == AUDIO:
        meta = attachment.meta if isinstance(attachment.meta, dict) else {}
        return t(lang, "voice.label", seconds=meta.get("seconds", "?"))
    return attachment_label(lang, attachment.name, attachment.pages)


def question_of(caption: str | None, lang: str) -> str:
    """The caption is the question; without one, the model summarizes."""
    caption = (caption or "").strip()
    return caption or t(lang, "document.question")


class DocumentService:
    def __init__(
        self,
        db: Database,
        catalog: ModelCatalog,
        settings: DocumentSettings,
        estimator: TokenEstimator,
        conversations: ConversationService,
    ) -> None:
        self.db = db
        self.catalog = catalog
        self.settings = settings
        self.estimator = estimator
        self.reader = DocumentReader(settings)
        self.conversations = conversations

    def check_size(self, size: int | None) -> None:
        self.reader.check_size(size)

    async def receive(
        self,
        user_id: int,
        name: str,
        declared_mime: str | None,
        data: bytes,
        question: str,
    ) -> Pending:
        """Read a document and store its text. It waits (unreferenced) until a
        message takes it; the person's older waiting document is dropped."""
        extracted = await self.reader.read(data, declared_mime)
        attachment = Attachment(
            id=uuid.uuid4(),
            user_id=user_id,
            name=(name.strip() or "document")[:NAME_CHARS],
            mime_type=extracted.mime_type,
            size_bytes=len(data),
            pages=extracted.pages,
            chars=len(extracted.text),
            content=extracted.text,
            meta={QUESTION: question},
        )
        async with self.db.write() as session:
            unused = ~exists().where(ChatMessage.attachment_id == Attachment.id)
            await session.execute(
                delete(Attachment)
                .where(Attachment.user_id == user_id, unused)
                .execution_options(synchronize_session=False)
            )
            session.add(attachment)
        return Pending(attachment, question)

    async def pending(self, user_id: int, attachment_id: uuid.UUID) -> Pending:
        """A document waiting for its sender's choice; DocumentGone for anyone
        else's, or one replaced or used since."""
        async with self.db.read() as session:
            attachment = await session.get(Attachment, attachment_id)
        if attachment is not None and attachment.user_id != user_id:
            raise NotYourDocument()
        if attachment is None or QUESTION not in attachment.meta:
            raise DocumentGone()
        return Pending(attachment, str(attachment.meta[QUESTION]))

    async def fit(self, user: User, pending: Pending) -> Fit:
        """How the document fits the model the person's next message goes to."""
        from core.conversations.turns import document_text

        conversation = await self.conversations.current(user.id)
        model_id = conversation.model_id if conversation else None
        model = self.catalog.get(model_id or "") or self.catalog.preferred(user.default_model)
        system_prompt = (conversation.system_prompt if conversation else None) or user.system_prompt
        return decide(
            pending.question,
            document_text(pending.attachment),
            model,
            system_prompt,
            self.catalog,
            Tier(user.tier),
            self.estimator,
        )

    async def label_of(self, row: ChatMessage, lang: str) -> str | None:
        """ "📎 report.pdf (12 pages)" (or "🎤 voice note (12 s)") for a prompt with a
        document or a recording, or for the answer to one; None otherwise."""
        async with self.db.read() as session:
            prompt: ChatMessage | None = row
            if row.role == "assistant" and row.parent_message_id is not None:
                prompt = await session.get(ChatMessage, row.parent_message_id)
            if prompt is None or prompt.attachment_id is None:
                return None
            attachment = await session.get(Attachment, prompt.attachment_id)
        if attachment is None:
            return None
        return stored_label(lang, attachment)
