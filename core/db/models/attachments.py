"""Documents sent with a message (their extracted text) and recordings, stored once."""

from __future__ import annotations

import uuid
from datetime import datetime
from typing import Any

from sqlalchemy import BigInteger, ForeignKey, String, Text
from sqlalchemy.orm import Mapped, mapped_column

from core.clock import utcnow
from core.db.models.base import Base

# What an attachment row holds (`kind`).
DOCUMENT = "document"  # a document's extracted text
AUDIO = "audio"  # a voice note or audio file, base64, for a model that listens


class Attachment(Base):
    """One document's text, or one recording. User message rows point to it
    (`attachment_id`): an edit or a regeneration of that message points to the same
    row, never a copy. A document row no message points to yet is waiting for its
    sender's choice (it did not fit the model); each person has at most one such row.

    A recording (`kind` audio) is written with the message it came with: `content`
    is the base64 of its bytes, `chars` that text's length, and `meta` holds its
    `format` (ogg, mp3, ...) and its `seconds`."""

    __tablename__ = "attachments"

    id: Mapped[uuid.UUID] = mapped_column(primary_key=True, default=uuid.uuid4)
    user_id: Mapped[int] = mapped_column(
        BigInteger, ForeignKey("users.id", ondelete="CASCADE"), index=True
    )
    kind: Mapped[str] = mapped_column(String(16), default=DOCUMENT, server_default=DOCUMENT)
    name: Mapped[str] = mapped_column(String(255))
    mime_type: Mapped[str] = mapped_column(String(127))
    size_bytes: Mapped[int] = mapped_column(BigInteger)
    pages: Mapped[int | None]
    chars: Mapped[int]
    content: Mapped[str] = mapped_column(Text)
    # The question it came with, while it waits for the sender's choice.
    meta: Mapped[dict[str, Any]] = mapped_column("metadata", default=dict)
    created_at: Mapped[datetime] = mapped_column(default=utcnow)
