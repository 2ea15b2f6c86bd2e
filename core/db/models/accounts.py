"""People and the platform accounts that map to them."""

from __future__ import annotations

import uuid
from datetime import datetime
from typing import Any

from sqlalchemy import BigInteger, ForeignKey, Index, String, Text, UniqueConstraint, false
from sqlalchemy.orm import Mapped, mapped_column, relationship

from core.clock import utcnow
from core.db.models.base import Base, Timestamps
from core.db.types import BigIntPK


class User(Timestamps, Base):
    __tablename__ = "users"
    # The admin stats count people seen lately.
    __table_args__ = (Index("ix_users_last_seen_at", "last_seen_at"),)

    id: Mapped[int] = mapped_column(BigIntPK, primary_key=True, autoincrement=True)
    display_name: Mapped[str | None] = mapped_column(String(255))
    language: Mapped[str | None] = mapped_column(String(8))
    # A copy of the active subscription's tier, written in the same transaction.
    tier: Mapped[str] = mapped_column(String(16), default="free", server_default="free")
    tier_status: Mapped[str] = mapped_column(String(16), default="active", server_default="active")
    is_banned: Mapped[bool] = mapped_column(default=False, server_default=false())
    ban_reason: Mapped[str | None] = mapped_column(String(500))
    default_model: Mapped[str | None] = mapped_column(String(200))
    system_prompt: Mapped[str | None] = mapped_column(Text)
    # No foreign key: users and conversations would reference each other, which
    # SQLite cannot create in one pass. Deleting a conversation clears it.
    current_conversation_id: Mapped[uuid.UUID | None]
    preferences: Mapped[dict[str, Any]] = mapped_column(default=dict)
    last_seen_at: Mapped[datetime | None]

    identities: Mapped[list[Identity]] = relationship(
        back_populates="user", cascade="all, delete-orphan", passive_deletes=True
    )


class Identity(Base):
    """(platform, platform user id) -> user; several platforms can share one user."""

    __tablename__ = "identities"
    __table_args__ = (
        UniqueConstraint("platform", "platform_user_id"),
        # Admin stats (people seen lately, index only) and finding a person by @username.
        Index("ix_identities_last_seen_at", "last_seen_at", "user_id"),
        Index("ix_identities_username", "username"),
    )

    id: Mapped[int] = mapped_column(BigIntPK, primary_key=True, autoincrement=True)
    user_id: Mapped[int] = mapped_column(
        BigInteger, ForeignKey("users.id", ondelete="CASCADE"), index=True
    )
    platform: Mapped[str] = mapped_column(String(16))
    platform_user_id: Mapped[str] = mapped_column(String(64))
    username: Mapped[str | None] = mapped_column(String(255))
    chat_id: Mapped[str | None] = mapped_column(String(64))
    # The person blocked the bot (Telegram 403): write to them no more.
    is_blocked: Mapped[bool] = mapped_column(default=False, server_default=false())
    created_at: Mapped[datetime] = mapped_column(default=utcnow)
    last_seen_at: Mapped[datetime | None]

    user: Mapped[User] = relationship(back_populates="identities")
