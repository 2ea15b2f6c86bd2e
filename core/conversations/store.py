"""Queries and writes on conversation rows, run inside the caller's transaction."""

from __future__ import annotations

import uuid
from collections.abc import Sequence
from datetime import datetime
from typing import Any

from sqlalchemy import and_, func, select, update
from sqlalchemy.ext.asyncio import AsyncSession

from core.conversations.errors import BlockingAnswer, ConversationNotFound, MessageNotFound
from core.conversations.tree import Node, Tree
from core.db.models import ChatMessage, Conversation, MessageStatus


async def owned_message(session: AsyncSession, user_id: int, message_id: uuid.UUID) -> ChatMessage:
    """The row, if it belongs to this user; someone else's looks like a missing one."""
    row = await session.get(ChatMessage, message_id)
    if row is None or row.user_id != user_id:
        raise MessageNotFound()
    return row


async def owned_conversation(
    session: AsyncSession, user_id: int, conversation_id: uuid.UUID
) -> Conversation:
    conversation = await session.get(Conversation, conversation_id)
    if conversation is None or conversation.user_id != user_id:
        raise ConversationNotFound()
    return conversation


async def load_active_path(session: AsyncSession, conversation_id: uuid.UUID) -> list[ChatMessage]:
    """The whole current conversation in one indexed query."""
    query = (
        select(ChatMessage)
        .where(ChatMessage.conversation_id == conversation_id, ChatMessage.is_latest.is_(True))
        .order_by(ChatMessage.sequence_number)
    )
    return list((await session.scalars(query)).all())


async def load_tree(session: AsyncSession, conversation_id: uuid.UUID) -> Tree:
    rows = await session.execute(
        select(
            ChatMessage.id,
            ChatMessage.parent_message_id,
            ChatMessage.sequence_number,
            ChatMessage.activated_at,
            ChatMessage.revision_number,
        ).where(ChatMessage.conversation_id == conversation_id)
    )
    return Tree(Node(*row) for row in rows)


async def load_rows(session: AsyncSession, ids: Sequence[uuid.UUID]) -> list[ChatMessage]:
    if not ids:
        return []
    rows = (await session.scalars(select(ChatMessage).where(ChatMessage.id.in_(ids)))).all()
    return sorted(rows, key=lambda r: r.sequence_number)


async def set_active_path(
    session: AsyncSession, conversation_id: uuid.UUID, path: Sequence[uuid.UUID], now: datetime
) -> None:
    """Make exactly `path` the active rows. Old rows are cleared before new ones are
    set: PostgreSQL checks the partial unique index per statement and cannot defer it."""
    await session.execute(
        update(ChatMessage)
        .where(
            ChatMessage.conversation_id == conversation_id,
            ChatMessage.is_latest.is_(True),
            ChatMessage.id.not_in(path) if path else ChatMessage.is_latest.is_(True),
        )
        .values(is_latest=False)
        .execution_options(synchronize_session=False)
    )
    if path:
        await session.execute(
            update(ChatMessage)
            .where(ChatMessage.id.in_(path), ChatMessage.is_latest.is_(False))
            .values(is_latest=True, activated_at=now)
            .execution_options(synchronize_session=False)
        )


async def truncate_after(session: AsyncSession, conversation_id: uuid.UUID, sequence: int) -> None:
    """Take every active row after `sequence` off the active path (they are kept)."""
    await session.execute(
        update(ChatMessage)
        .where(
            and_(
                ChatMessage.conversation_id == conversation_id,
                ChatMessage.is_latest.is_(True),
                ChatMessage.sequence_number > sequence,
            )
        )
        .values(is_latest=False)
        .execution_options(synchronize_session=False)
    )


async def next_revision(session: AsyncSession, original_id: uuid.UUID) -> int:
    current = await session.scalar(
        select(func.max(ChatMessage.revision_number)).where(
            ChatMessage.original_message_id == original_id
        )
    )
    return 0 if current is None else current + 1


async def streaming_answers(session: AsyncSession, *where: Any) -> list[BlockingAnswer]:
    """The `streaming` rows matching `where`, each with the worker named on it."""
    rows = await session.execute(
        select(ChatMessage.id, ChatMessage.worker_id, ChatMessage.heartbeat_at).where(
            ChatMessage.status == MessageStatus.STREAMING, *where
        )
    )
    return [BlockingAnswer(*row) for row in rows]
