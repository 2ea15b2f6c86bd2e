"""Processes that serve people, and when each last proved it was alive."""

from __future__ import annotations

from datetime import datetime

from sqlalchemy import String
from sqlalchemy.orm import Mapped, mapped_column

from core.clock import utcnow
from core.db.models.base import Base


class Worker(Base):
    """One running process (without Redis; with it, a key with a TTL does this job).

    Streaming rows name their worker; a worker whose heartbeat is older than the
    timeout is gone, and so are the answers it was streaming."""

    __tablename__ = "workers"

    id: Mapped[str] = mapped_column(String(64), primary_key=True)
    # "bot" (`oneai run`) or "cli" (`oneai chat`): without Redis exactly one bot runs.
    role: Mapped[str] = mapped_column(String(16))
    started_at: Mapped[datetime] = mapped_column(default=utcnow)
    heartbeat_at: Mapped[datetime] = mapped_column(default=utcnow)
