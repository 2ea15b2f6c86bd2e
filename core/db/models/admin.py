"""What administrators switch for everyone."""

from __future__ import annotations

from datetime import datetime

from sqlalchemy import String
from sqlalchemy.orm import Mapped, mapped_column

from core.clock import utcnow
from core.db.models.base import Base


class DisabledModel(Base):
    """A catalog model turned off for everyone. Every process reads this table (on
    start and every worker heartbeat), so the switch survives restarts and reaches
    all processes; turning the model back on deletes the row."""

    __tablename__ = "disabled_models"

    model_id: Mapped[str] = mapped_column(String(200), primary_key=True)
    reason: Mapped[str | None] = mapped_column(String(500))
    disabled_at: Mapped[datetime] = mapped_column(default=utcnow)
