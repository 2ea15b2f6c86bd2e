"""Provider events seen once, by their own id, in the transaction that applies them."""

from __future__ import annotations

from sqlalchemy import update
from sqlalchemy.ext.asyncio import AsyncSession

from core.clock import utcnow
from core.db.models import WebhookEvent
from core.db.upsert import insert_new


async def first_sighting(
    session: AsyncSession, provider: str, event_id: str, event_type: str
) -> bool:
    """Record the event; False if it was recorded before (a replay)."""
    values = {
        "provider": provider,
        "event_id": event_id[:191],
        "event_type": event_type[:64],
        "received_at": utcnow(),
    }
    return await insert_new(session, WebhookEvent, values, ["provider", "event_id"]) is not None


async def mark_processed(session: AsyncSession, provider: str, event_id: str) -> None:
    await session.execute(
        update(WebhookEvent)
        .where(WebhookEvent.provider == provider, WebhookEvent.event_id == event_id[:191])
        .values(processed_at=utcnow())
    )
