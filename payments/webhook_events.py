"""Provider events seen once, by their own id, in the transaction that applies them."""

from __future__ import annotations

from sqlalchemy import update
from sqlalchemy.dialects import postgresql, sqlite
from sqlalchemy.ext.asyncio import AsyncSession

from core.clock import utcnow
from core.db.models import WebhookEvent


async def first_sighting(
    session: AsyncSession, provider: str, event_id: str, event_type: str
) -> bool:
    """Record the event; False if it was recorded before (a replay)."""
    dialect = session.bind.dialect.name if session.bind is not None else "sqlite"
    insert = postgresql.insert if dialect == "postgresql" else sqlite.insert
    stmt = (
        insert(WebhookEvent)
        .values(
            provider=provider,
            event_id=event_id[:191],
            event_type=event_type[:64],
            received_at=utcnow(),
        )
        .on_conflict_do_nothing(index_elements=["provider", "event_id"])
        .returning(WebhookEvent.id)
    )
    return (await session.execute(stmt)).scalar_one_or_none() is not None


async def mark_processed(session: AsyncSession, provider: str, event_id: str) -> None:
    await session.execute(
        update(WebhookEvent)
        .where(WebhookEvent.provider == provider, WebhookEvent.event_id == event_id[:191])
        .values(processed_at=utcnow())
    )
