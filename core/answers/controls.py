"""What the buttons under an answer offer; each platform draws them its way."""

from __future__ import annotations

import uuid
from dataclasses import dataclass

from core.conversations.service import ConversationService


@dataclass(frozen=True)
class Controls:
    """The buttons of one answer: ⏹ while it streams; when finished, 🔄 and, once
    it has several versions, ◀ index/count ▶ (1-based, wrapping around)."""

    row_id: uuid.UUID
    index: int = 1
    count: int = 1
    streaming: bool = False

    @property
    def paged(self) -> bool:
        return self.count > 1

    @property
    def previous(self) -> int:
        return self.index - 1 if self.index > 1 else self.count

    @property
    def following(self) -> int:
        return self.index + 1 if self.index < self.count else 1


def newest_controls(row_id: uuid.UUID, revision_number: int) -> Controls:
    """A new answer is the newest of its group: its buttons need no query."""
    newest = revision_number + 1
    return Controls(row_id, newest, newest)


async def answer_controls(
    conversations: ConversationService, user_id: int, row_id: uuid.UUID
) -> Controls:
    revisions = await conversations.revisions(user_id, row_id)
    index = next((i for i, r in enumerate(revisions.items) if r.id == row_id), revisions.index)
    return Controls(row_id, index + 1, len(revisions.items))
