"""Conversations and their messages, with revisions and branches."""

from __future__ import annotations

import uuid
from datetime import datetime
from typing import Any

from sqlalchemy import (
    BigInteger,
    ForeignKey,
    Index,
    String,
    Text,
    UniqueConstraint,
    false,
    text,
)
from sqlalchemy.orm import Mapped, mapped_column

from core.clock import utcnow
from core.db.models.base import Base, Timestamps
from core.db.types import BigIntPK


class Conversation(Timestamps, Base):
    __tablename__ = "conversations"
    __table_args__ = (Index("ix_conversations_user_recent", "user_id", "last_message_at"),)

    id: Mapped[uuid.UUID] = mapped_column(primary_key=True, default=uuid.uuid4)
    user_id: Mapped[int] = mapped_column(BigInteger, ForeignKey("users.id", ondelete="CASCADE"))
    title: Mapped[str] = mapped_column(String(200), default="New chat")
    model_id: Mapped[str] = mapped_column(String(200))
    system_prompt: Mapped[str | None] = mapped_column(Text)
    # The chat mode picked with /mode (its prompt is `system_prompt`); None: the
    # person's own prompt from /settings.
    mode: Mapped[str | None] = mapped_column(String(32))
    platform: Mapped[str | None] = mapped_column(String(16))
    last_message_at: Mapped[datetime | None]
    # Rows of every revision and branch; bounds what one conversation can cost.
    message_count: Mapped[int] = mapped_column(default=0, server_default="0")
    meta: Mapped[dict[str, Any]] = mapped_column("metadata", default=dict)


class MessageStatus:
    STREAMING = "streaming"
    COMPLETE = "complete"
    FAILED = "failed"
    CANCELLED = "cancelled"
    INTERRUPTED = "interrupted"


class ChatMessage(Base):
    """One version of one message.

    Invariant: the rows with `is_latest` are exactly the active path of the
    conversation, one per sequence number. A revision group is the rows sharing
    `original_message_id`; the first row of a group points to itself.
    """

    __tablename__ = "chat_messages"
    __table_args__ = (
        # Declared for both dialects; PostgreSQL cannot defer it, so writers clear
        # the old active rows before they set the new ones.
        Index(
            "uq_chat_messages_active_seq",
            "conversation_id",
            "sequence_number",
            unique=True,
            sqlite_where=text("is_latest"),
            postgresql_where=text("is_latest"),
        ),
        UniqueConstraint("original_message_id", "revision_number"),
        Index("ix_chat_messages_conv_seq", "conversation_id", "sequence_number"),
        Index(
            "ix_chat_messages_streaming",
            "heartbeat_at",
            sqlite_where=text("status = 'streaming'"),
            postgresql_where=text("status = 'streaming'"),
        ),
        # A person's answers streaming now, counted under the lock on their row at
        # every message: the query names the status as a literal, so both
        # databases read only these rows.
        Index(
            "ix_chat_messages_user_streaming",
            "user_id",
            sqlite_where=text("status = 'streaming'"),
            postgresql_where=text("status = 'streaming'"),
        ),
        # Answers saved but maybe not shown yet (see `display_pending`).
        Index(
            "ix_chat_messages_display_pending",
            "worker_id",
            sqlite_where=text("display_pending"),
            postgresql_where=text("display_pending"),
        ),
        # The admin stats (answers, tokens, models and failures per day) read only
        # this index. Queries must name the role as a literal for SQLite to use it.
        Index(
            "ix_chat_messages_answer_stats",
            "created_at",
            "status",
            "model_id",
            "error_code",
            "prompt_tokens",
            "completion_tokens",
            "role",
            sqlite_where=text("role = 'assistant'"),
            postgresql_where=text("role = 'assistant'"),
        ),
    )

    id: Mapped[uuid.UUID] = mapped_column(primary_key=True, default=uuid.uuid4)
    conversation_id: Mapped[uuid.UUID] = mapped_column(
        ForeignKey("conversations.id", ondelete="CASCADE")
    )
    user_id: Mapped[int] = mapped_column(
        BigInteger, ForeignKey("users.id", ondelete="CASCADE"), index=True
    )
    role: Mapped[str] = mapped_column(String(16))
    content: Mapped[str] = mapped_column(Text, default="")
    model_id: Mapped[str | None] = mapped_column(String(200))
    sequence_number: Mapped[int]
    parent_message_id: Mapped[uuid.UUID | None] = mapped_column(
        ForeignKey("chat_messages.id", ondelete="CASCADE"), index=True
    )
    original_message_id: Mapped[uuid.UUID] = mapped_column(
        ForeignKey("chat_messages.id", ondelete="CASCADE")
    )
    revision_number: Mapped[int] = mapped_column(default=0)
    revision_type: Mapped[str | None] = mapped_column(String(16))
    is_latest: Mapped[bool] = mapped_column(default=True)
    # When this row last became part of the active path (picks branches on switch).
    activated_at: Mapped[datetime] = mapped_column(default=utcnow)
    status: Mapped[str] = mapped_column(String(16), default=MessageStatus.COMPLETE)
    error_code: Mapped[str | None] = mapped_column(String(32))
    prompt_tokens: Mapped[int | None]
    completion_tokens: Mapped[int | None]
    # The quota unit this generation reserved, and the window it came from.
    quota_key: Mapped[str | None] = mapped_column(String(32))
    quota_window_start: Mapped[datetime | None]
    # Which worker streams this row and when it last proved it was alive.
    worker_id: Mapped[str | None] = mapped_column(String(64))
    heartbeat_at: Mapped[datetime | None]
    # The final state is saved but the worker has not shown it yet (it waits for
    # the platform's limits): if the worker dies now, another one shows it.
    display_pending: Mapped[bool] = mapped_column(default=False, server_default=false())
    platform_message_ids: Mapped[dict[str, Any]] = mapped_column(default=dict)
    meta: Mapped[dict[str, Any]] = mapped_column("metadata", default=dict)
    created_at: Mapped[datetime] = mapped_column(default=utcnow)
    finished_at: Mapped[datetime | None]
    # A document sent with this user message (shared by its edits).
    attachment_id: Mapped[uuid.UUID | None] = mapped_column(
        ForeignKey("attachments.id", ondelete="SET NULL"), index=True
    )


class MessageLink(Base):
    """Which platform message shows which row: the user's own messages (so an edit
    finds its row) and every part of a displayed answer (so buttons, replies and
    paging find theirs). A displayed answer's parts move to the revision shown."""

    __tablename__ = "message_links"
    __table_args__ = (
        UniqueConstraint("platform", "chat_id", "platform_message_id"),
        Index("ix_message_links_row", "chat_message_id", "part"),
    )

    id: Mapped[int] = mapped_column(BigIntPK, primary_key=True, autoincrement=True)
    platform: Mapped[str] = mapped_column(String(16))
    chat_id: Mapped[str] = mapped_column(String(64))
    platform_message_id: Mapped[str] = mapped_column(String(64))
    chat_message_id: Mapped[uuid.UUID] = mapped_column(
        ForeignKey("chat_messages.id", ondelete="CASCADE")
    )
    part: Mapped[int] = mapped_column(default=0)
    created_at: Mapped[datetime] = mapped_column(default=utcnow)
