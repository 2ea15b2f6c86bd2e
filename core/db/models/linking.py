"""One-time codes that join two platform accounts into one user, and the count of
wrong codes each person has entered."""

from __future__ import annotations

from datetime import datetime

from sqlalchemy import BigInteger, ForeignKey, Index, String
from sqlalchemy.orm import Mapped, mapped_column

from core.clock import utcnow
from core.db.models.base import Base
from core.db.types import BigIntPK


class LinkCodeRecord(Base):
    """A code shown by `/link`: only its sha256 is stored. One per user (a new code
    replaces the old one); deleted when used."""

    __tablename__ = "link_codes"
    __table_args__ = (Index("ix_link_codes_expires_at", "expires_at"),)

    id: Mapped[int] = mapped_column(BigIntPK, primary_key=True, autoincrement=True)
    user_id: Mapped[int] = mapped_column(
        BigInteger, ForeignKey("users.id", ondelete="CASCADE"), unique=True
    )
    # The platform the code was shown on (the other side must be another one).
    platform: Mapped[str] = mapped_column(String(16))
    code_hash: Mapped[str] = mapped_column(String(64), unique=True)
    created_at: Mapped[datetime] = mapped_column(default=utcnow)
    expires_at: Mapped[datetime]


class LinkAttempt(Base):
    """Wrong codes a person entered: after too many they are locked out for a while."""

    __tablename__ = "link_attempts"

    user_id: Mapped[int] = mapped_column(
        BigInteger,
        ForeignKey("users.id", ondelete="CASCADE"),
        primary_key=True,
        autoincrement=False,
    )
    failures: Mapped[int] = mapped_column(default=0)
    # Failures older than the lock period are forgotten.
    first_failed_at: Mapped[datetime | None]
    locked_until: Mapped[datetime | None]
