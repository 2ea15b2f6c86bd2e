"""Broadcasts: one message an admin sends to many people, and one row per person
it goes to. The per-person row is what makes a broadcast reach a person at most
once, across crashes and restarts (see core/broadcast/engine.py)."""

from __future__ import annotations

from datetime import datetime
from typing import Any

from sqlalchemy import BigInteger, ForeignKey, Index, String, Text
from sqlalchemy.orm import Mapped, mapped_column

from core.clock import utcnow
from core.db.models.base import Base, Timestamps
from core.db.types import BigIntPK


class Broadcast(Timestamps, Base):
    __tablename__ = "broadcasts"
    __table_args__ = (Index("ix_broadcasts_status", "status"),)

    id: Mapped[int] = mapped_column(BigIntPK, primary_key=True, autoincrement=True)
    created_by: Mapped[int | None] = mapped_column(
        BigInteger, ForeignKey("users.id", ondelete="SET NULL")
    )
    # Markdown, rendered by each platform (Telegram entities, Discord as is).
    text: Mapped[str] = mapped_column(Text)
    # A platform's file id (`photo_platform` names the platform) or an http(s) URL.
    photo: Mapped[str | None] = mapped_column(String(1024))
    photo_platform: Mapped[str | None] = mapped_column(String(16))
    # all | tier | active; `audience_tier` for tier, `active_days` for active.
    audience: Mapped[str] = mapped_column(String(16), default="all", server_default="all")
    audience_tier: Mapped[str | None] = mapped_column(String(16))
    active_days: Mapped[int | None]
    # draft | running | paused | cancelled | done
    status: Mapped[str] = mapped_column(String(16), default="draft", server_default="draft")
    # Counts written when the broadcast starts (total) and whenever it stops;
    # live progress is counted from the recipient rows.
    total: Mapped[int] = mapped_column(default=0, server_default="0")
    sent: Mapped[int] = mapped_column(default=0, server_default="0")
    blocked: Mapped[int] = mapped_column(default=0, server_default="0")
    failed: Mapped[int] = mapped_column(default=0, server_default="0")
    unconfirmed: Mapped[int] = mapped_column(default=0, server_default="0")
    # 429 answers the platforms gave while sending it.
    floods: Mapped[int] = mapped_column(default=0, server_default="0")
    # The process sending it (a worker id) and until when its claim holds without
    # being renewed; another process takes over a running broadcast after that.
    runner_id: Mapped[str | None] = mapped_column(String(64))
    lease_until: Mapped[datetime | None]
    # The message that shows progress (platform, chat, message id), so a resumed
    # broadcast keeps editing it after a restart.
    report_to: Mapped[dict[str, Any] | None]
    started_at: Mapped[datetime | None]
    finished_at: Mapped[datetime | None]


class BroadcastRecipient(Base):
    """One person a broadcast goes to, on the one platform chosen when it started.

    state: pending -> sending (claimed, committed before the platform call) ->
    sent | blocked | failed; a row left `sending` by a process that died becomes
    `unconfirmed` and is never sent again.
    """

    __tablename__ = "broadcast_recipients"
    __table_args__ = (
        # Claiming the next pending row of a platform; counting the pending ones.
        Index(
            "ix_broadcast_recipients_queue",
            "broadcast_id",
            "state",
            "platform",
            "user_id",
        ),
    )

    broadcast_id: Mapped[int] = mapped_column(
        BigInteger, ForeignKey("broadcasts.id", ondelete="CASCADE"), primary_key=True
    )
    user_id: Mapped[int] = mapped_column(
        BigInteger, ForeignKey("users.id", ondelete="CASCADE"), primary_key=True, index=True
    )
    platform: Mapped[str] = mapped_column(String(16))
    platform_user_id: Mapped[str] = mapped_column(String(64))
    chat_id: Mapped[str | None] = mapped_column(String(64))
    state: Mapped[str] = mapped_column(String(16), default="pending", server_default="pending")
    attempts: Mapped[int] = mapped_column(default=0, server_default="0")
    claimed_by: Mapped[str | None] = mapped_column(String(64))
    claimed_at: Mapped[datetime | None]
    done_at: Mapped[datetime | None]
    error: Mapped[str | None] = mapped_column(String(500))
    created_at: Mapped[datetime] = mapped_column(default=utcnow)
