"""Helpers for driving the core chat services in tests."""

from __future__ import annotations

import uuid
from collections import defaultdict

from sqlalchemy import select

from core.accounts import PlatformProfile
from core.chat import Generation, GenerationResult
from core.db.engine import Database
from core.db.models import ChatMessage
from core.services import Services


async def new_user(services: Services, name: str | None = None) -> int:
    user = await services.accounts.upsert(
        PlatformProfile("test", name or uuid.uuid4().hex[:12], display_name="Tester")
    )
    return user.id


async def finish(generation: Generation) -> GenerationResult:
    return await generation.run()


async def all_rows(db: Database, conversation_id: uuid.UUID) -> list[ChatMessage]:
    async with db.read() as session:
        return list(
            (
                await session.scalars(
                    select(ChatMessage)
                    .where(ChatMessage.conversation_id == conversation_id)
                    .order_by(ChatMessage.sequence_number, ChatMessage.revision_number)
                )
            ).all()
        )


def check_invariants(rows: list[ChatMessage]) -> list[ChatMessage]:
    """The data-model invariants; returns the active path.

    - the `is_latest` rows are one per sequence number, 1..n without gaps;
    - they form a chain of parents from the root, alternating user/assistant;
    - each revision group shares role and sequence number, numbered 0..m-1, and its
      first row points to itself.
    """
    active = sorted((r for r in rows if r.is_latest), key=lambda r: r.sequence_number)
    assert [r.sequence_number for r in active] == list(range(1, len(active) + 1))
    for index, row in enumerate(active):
        expected_parent = active[index - 1].id if index else None
        assert row.parent_message_id == expected_parent
        assert row.role == ("user" if index % 2 == 0 else "assistant")
    groups: dict[uuid.UUID, list[ChatMessage]] = defaultdict(list)
    for row in rows:
        groups[row.original_message_id].append(row)
    for original, members in groups.items():
        members.sort(key=lambda r: r.revision_number)
        assert [m.revision_number for m in members] == list(range(len(members)))
        assert members[0].id == original
        assert len({(m.role, m.sequence_number) for m in members}) == 1
    by_id = {r.id: r for r in rows}
    for row in rows:  # every row's parent sits one step above it
        if row.parent_message_id is not None:
            parent = by_id[row.parent_message_id]
            assert parent.sequence_number == row.sequence_number - 1
        else:
            assert row.sequence_number == 1
    return active
