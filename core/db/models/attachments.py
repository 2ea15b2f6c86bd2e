"""Documents sent with a message: their extracted text, stored once."""

from __future__ import annotations

import uuid
from datetime import datetime
from typing import Any

from sqlalchemy import BigInteger, ForeignKey, String, Text
from sqlalchemy.orm import Mapped, mapped_column

from core.clock import utcnow
from core.db.models.base import Base


class Attachment(Base):
    """One document's text. User message rows point to it (`attachment_id`): an
    edit or a regeneration of that message points to the same row, never a copy.
    A row no message points to yet is a document waiting for its sender's choice
    (it did not fit the model); each person has at most one such row."""

    __tablename__ = "attachments"

    id: Mapped[uuid.UUID] = mapped_column(primary_key=True, default=uuid.uuid4)
    user_id: Mapped[int] = mapped_column(
        BigInteger, ForeignKey("users.id", ondelete="CASCADE"), index=True
    )
    name: Mapped[str] = mapped_column(String(255))
    mime_type: Mapped[str] = mapped_column(String(127))
    size_bytes: Mapped[int] = mapped_column(BigInteger)
    pages: Mapped[int | None]
    chars: Mapped[int]
    content: Mapped[str] = mapped_column(Text)
    # The question it came with, while it waits for the sender's choice.
    meta: Mapped[dict[str, Any]] = mapped_column("metadata", default=dict)
    created_at: Mapped[datetime] = mapped_column(default=utcnow)
