"""Who may use a private deployment (ACCESS_MODE allowlist or invite): the
allowlist, the invites admins make, who used them, and when a refused account
was last told that the bot is private."""

from __future__ import annotations

from datetime import date, datetime

from sqlalchemy import BigInteger, Date, ForeignKey, String
from sqlalchemy.orm import Mapped, mapped_column

from core.clock import utcnow
from core.db.models.base import Base
from core.db.types import BigIntPK


class AccessEntry(Base):
    """One allowlist line: `telegram:ID`, `discord:ID` or `@username` (a Telegram
    username, lowercased). ACCESS_ALLOWLIST seeds rows (`source` "config");
    admins add and remove them with /admin (`source` "admin")."""

    __tablename__ = "access_entries"

    id: Mapped[int] = mapped_column(BigIntPK, primary_key=True, autoincrement=True)
    entry: Mapped[str] = mapped_column(String(64), unique=True)
    source: Mapped[str] = mapped_column(String(16))
    added_by_user_id: Mapped[int | None] = mapped_column(
        BigInteger, ForeignKey("users.id", ondelete="SET NULL")
    )
    created_at: Mapped[datetime] = mapped_column(default=utcnow)


class AccessInvite(Base):
    """An invite: only the code's sha256 is stored (like link codes), so the table
    gives nobody a working code. `uses_left` only ever goes down, one use per
    statement (`UPDATE ... WHERE uses_left > 0 AND expires_at > now`)."""

    __tablename__ = "access_invites"

    id: Mapped[int] = mapped_column(BigIntPK, primary_key=True, autoincrement=True)
    code_hash: Mapped[str] = mapped_column(String(64), unique=True)
    uses_total: Mapped[int]
    uses_left: Mapped[int]
    expires_at: Mapped[datetime]
    created_by_user_id: Mapped[int | None] = mapped_column(
        BigInteger, ForeignKey("users.id", ondelete="SET NULL")
    )
    created_at: Mapped[datetime] = mapped_column(default=utcnow)


class AccessRedemption(Base):
    """A person who used an invite: they have access for good (in invite mode).
    Tied to our user, so every platform account linked to them has it; `/link`
    moves the row like any other of the user's."""

    __tablename__ = "access_redemptions"

    id: Mapped[int] = mapped_column(BigIntPK, primary_key=True, autoincrement=True)
    invite_id: Mapped[int | None] = mapped_column(
        BigInteger, ForeignKey("access_invites.id", ondelete="SET NULL"), index=True
    )
    user_id: Mapped[int] = mapped_column(
        BigInteger, ForeignKey("users.id", ondelete="CASCADE"), index=True
    )
    redeemed_at: Mapped[datetime] = mapped_column(default=utcnow)


class AccessNote(Base):
    """The day (UTC) a refused account was last told the bot is private: one note a
    day, whichever process sees their message. Keyed by the account, not the user,
    so `/link` has nothing to move here."""

    __tablename__ = "access_notes"

    account: Mapped[str] = mapped_column(String(40), primary_key=True)
    told_on: Mapped[date] = mapped_column(Date)
