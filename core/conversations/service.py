"""Reading and managing conversations: the active path, paging, revisions and
branch switching, rename, delete."""

from __future__ import annotations

import math
import uuid
from collections.abc import Awaitable, Callable
from dataclasses import dataclass
from datetime import datetime
from typing import TYPE_CHECKING, TypeVar

from sqlalchemy import delete, exists, func, select, update
from sqlalchemy.ext.asyncio import AsyncSession

from core.clock import utcnow
from core.conversations import store
from core.conversations.errors import (
    ConversationBusy,
    ConversationNotFound,
    NotARevisionTarget,
    RevisionNotFound,
)
from core.db.engine import Database
from core.db.models import Attachment, ChatMessage, Conversation, User
from core.text import storable

if TYPE_CHECKING:
    from core.liveness import Liveness

T = TypeVar("T")

TITLE_MAX = 200


@dataclass(frozen=True)
class ConversationPage:
    items: list[Conversation]
    page: int
    pages: int
    total: int


@dataclass(frozen=True)
class RevisionList:
    """The versions of one message, oldest first; `index` is the one shown (0-based)."""

    items: list[ChatMessage]
    index: int

    @property
    def current(self) -> ChatMessage:
        return self.items[self.index]

    @property
    def label(self) -> str:
        """As people see it: 2/3."""
        return f"{self.index + 1}/{len(self.items)}"


class ConversationService:
    def __init__(self, db: Database, now: Callable[[], datetime] = utcnow) -> None:
        self.db = db
        self._now = now
        # Ends answers of gone workers that would make a conversation look busy.
        self.liveness: Liveness | None = None

    async def _unblocked(self, operation: Callable[[], Awaitable[T]]) -> T:
        return await (self.liveness.unblocked(operation) if self.liveness else operation())

    async def get(self, user_id: int, conversation_id: uuid.UUID) -> Conversation:
        async with self.db.read() as session:
            return await store.owned_conversation(session, user_id, conversation_id)

    async def current(self, user_id: int) -> Conversation | None:
        async with self.db.read() as session:
            row = await session.execute(
                select(Conversation)
                .join(User, User.current_conversation_id == Conversation.id)
                .where(User.id == user_id, Conversation.user_id == user_id)
            )
            return row.scalar_one_or_none()

    async def active_path(self, conversation_id: uuid.UUID) -> list[ChatMessage]:
        """The current state of a conversation: exactly one query."""
        async with self.db.read() as session:
            return await store.load_active_path(session, conversation_id)

    async def message(self, user_id: int, message_id: uuid.UUID) -> ChatMessage:
        async with self.db.read() as session:
            return await store.owned_message(session, user_id, message_id)

    async def last_answer(self, user_id: int, conversation_id: uuid.UUID) -> ChatMessage | None:
        """The last answer: the highest-sequence assistant row on the active path."""
        return await self._last_on_path(user_id, conversation_id, "assistant")

    async def last_user_message(
        self, user_id: int, conversation_id: uuid.UUID
    ) -> ChatMessage | None:
        return await self._last_on_path(user_id, conversation_id, "user")

    async def _last_on_path(
        self, user_id: int, conversation_id: uuid.UUID, role: str
    ) -> ChatMessage | None:
        async with self.db.read() as session:
            await store.owned_conversation(session, user_id, conversation_id)
            return await session.scalar(
                select(ChatMessage)
                .where(
                    ChatMessage.conversation_id == conversation_id,
                    ChatMessage.is_latest.is_(True),
                    ChatMessage.role == role,
                )
                .order_by(ChatMessage.sequence_number.desc())
                .limit(1)
            )

    async def page(self, user_id: int, page: int = 1, per_page: int = 10) -> ConversationPage:
        """The user's conversations, most recently active first."""
        per_page = max(1, min(per_page, 50))
        async with self.db.read() as session:
            total = int(
                await session.scalar(
                    select(func.count())
                    .select_from(Conversation)
                    .where(Conversation.user_id == user_id)
                )
                or 0
            )
            pages = max(1, math.ceil(total / per_page))
            page = max(1, min(page, pages))
            items = (
                await session.scalars(
                    select(Conversation)
                    .where(Conversation.user_id == user_id)
                    .order_by(
                        func.coalesce(Conversation.last_message_at, Conversation.created_at).desc(),
                        Conversation.id,
                    )
                    .offset((page - 1) * per_page)
                    .limit(per_page)
                )
            ).all()
        return ConversationPage(list(items), page, pages, total)

    async def rename(self, user_id: int, conversation_id: uuid.UUID, title: str) -> str:
        title = " ".join(storable(title).split())[:TITLE_MAX]
        if not title:
            raise ValueError("empty title")
        async with self.db.write() as session:
            await store.owned_conversation(session, user_id, conversation_id)
            await session.execute(
                update(Conversation)
                .where(Conversation.id == conversation_id)
                .values(title=title, updated_at=self._now())
            )
        return title

    async def set_model(self, user_id: int, conversation_id: uuid.UUID, model_id: str) -> None:
        async with self.db.write() as session:
            await store.owned_conversation(session, user_id, conversation_id)
            await session.execute(
                update(Conversation)
                .where(Conversation.id == conversation_id)
                .values(model_id=model_id, updated_at=self._now())
            )

    async def set_web_search(self, user_id: int, conversation_id: uuid.UUID, on: bool) -> None:
        """Every answer in the conversation searches the web (`on`), or none by itself.
        Kept in the conversation's metadata, beside whatever else is there."""
        async with self.db.write() as session:
            conversation = await store.owned_conversation(session, user_id, conversation_id)
            meta = dict(conversation.meta or {})
            meta["web_search"] = on
            await session.execute(
                update(Conversation)
                .where(Conversation.id == conversation_id)
                .values(meta=meta, updated_at=self._now())
            )

    async def set_system_prompt(
        self, user_id: int, conversation_id: uuid.UUID, prompt: str | None
    ) -> None:
        async with self.db.write() as session:
            await store.owned_conversation(session, user_id, conversation_id)
            await session.execute(
                update(Conversation)
                .where(Conversation.id == conversation_id)
                .values(system_prompt=storable(prompt) if prompt else None, updated_at=self._now())
            )

    async def set_mode(
        self,
        user_id: int,
        conversation_id: uuid.UUID | None,
        mode: str | None,
        prompt: str | None,
        *,
        model_id: str | None,
        new_model_id: str,
        platform: str | None,
    ) -> Conversation:
        """Give a conversation a chat mode and the mode's prompt (None: the person's
        own prompt), and `model_id` unless None. Without `conversation_id`: the
        person's current conversation, or a new empty one (on `new_model_id`) made
        current, so the mode is there for their next message."""
        now = self._now()
        async with self.db.write() as session:
            if conversation_id is not None:
                conversation = await store.owned_conversation(session, user_id, conversation_id)
            else:
                # Locked: two picks at once make one conversation, not two.
                user = await session.scalar(
                    select(User).where(User.id == user_id).with_for_update()
                )
                if user is None:
                    raise ConversationNotFound()
                current = user.current_conversation_id
                found = await session.get(Conversation, current) if current else None
                if found is None or found.user_id != user_id:
                    found = Conversation(
                        id=uuid.uuid4(),
                        user_id=user_id,
                        title="New chat",
                        model_id=new_model_id,
                        platform=platform,
                        message_count=0,
                        created_at=now,
                        updated_at=now,
                        meta={},
                    )
                    session.add(found)
                    await session.flush()
                    user.current_conversation_id = found.id
                conversation = found
            conversation.mode = mode
            conversation.system_prompt = storable(prompt) if prompt else None
            if model_id is not None:
                conversation.model_id = model_id
            conversation.updated_at = now
        return conversation

    async def delete(self, user_id: int, conversation_id: uuid.UUID) -> None:
        await self._unblocked(lambda: self._delete(user_id, conversation_id))

    async def _delete(self, user_id: int, conversation_id: uuid.UUID) -> None:
        async with self.db.write() as session:
            conversation = await store.owned_conversation(session, user_id, conversation_id)
            await self._check_idle(session, conversation_id)
            # Its documents and recordings go with it (every message that points to
            # one is in this conversation: edits and regenerations share the row).
            attached = select(ChatMessage.attachment_id).where(
                ChatMessage.conversation_id == conversation_id,
                ChatMessage.attachment_id.is_not(None),
            )
            attachment_ids = set((await session.scalars(attached)).all())
            # Rows reference each other; drop the links, then the rows.
            await session.execute(
                update(ChatMessage)
                .where(ChatMessage.conversation_id == conversation_id)
                .values(parent_message_id=None)
                .execution_options(synchronize_session=False)
            )
            await session.execute(
                delete(ChatMessage)
                .where(ChatMessage.conversation_id == conversation_id)
                .execution_options(synchronize_session=False)
            )
            if attachment_ids:
                await session.execute(
                    delete(Attachment)
                    .where(
                        Attachment.id.in_(attachment_ids),
                        ~exists().where(ChatMessage.attachment_id == Attachment.id),
                    )
                    .execution_options(synchronize_session=False)
                )
            await session.delete(conversation)
            await session.execute(
                update(User)
                .where(User.id == user_id, User.current_conversation_id == conversation_id)
                .values(current_conversation_id=None)
            )

    async def revisions(self, user_id: int, message_id: uuid.UUID) -> RevisionList:
        """Every version of the message, and which one is shown."""
        async with self.db.read() as session:
            row = await store.owned_message(session, user_id, message_id)
            items = list(
                (
                    await session.scalars(
                        select(ChatMessage)
                        .where(ChatMessage.original_message_id == row.original_message_id)
                        .order_by(ChatMessage.revision_number)
                    )
                ).all()
            )
        latest = next((i for i, r in enumerate(items) if r.is_latest), None)
        index = latest if latest is not None else items.index(row)
        return RevisionList(items, index)

    async def switch_revision(
        self, user_id: int, message_id: uuid.UUID, number: int
    ) -> list[ChatMessage]:
        """Show version `number` (1-based, as people count) of the message's group and
        make its branch the active path: it, its ancestors and, below it, the most
        recently active child at each step. Returns the new active path."""
        return await self._unblocked(lambda: self._switch_revision(user_id, message_id, number))

    async def _switch_revision(
        self, user_id: int, message_id: uuid.UUID, number: int
    ) -> list[ChatMessage]:
        async with self.db.write() as session:
            row = await store.owned_message(session, user_id, message_id)
            target = await session.scalar(
                select(ChatMessage).where(
                    ChatMessage.original_message_id == row.original_message_id,
                    ChatMessage.revision_number == number - 1,
                )
            )
            if target is None:
                raise RevisionNotFound()
            return await self._activate(session, target)

    async def branch_from(self, user_id: int, message_id: uuid.UUID) -> list[ChatMessage]:
        """Continue the conversation from an earlier answer: the path ends there; what
        followed it is kept and comes back by switching to it."""
        return await self._unblocked(lambda: self._branch_from(user_id, message_id))

    async def _branch_from(self, user_id: int, message_id: uuid.UUID) -> list[ChatMessage]:
        async with self.db.write() as session:
            row = await store.owned_message(session, user_id, message_id)
            if row.role != "assistant":
                raise NotARevisionTarget()
            await self._check_idle(session, row.conversation_id)
            tree = await store.load_tree(session, row.conversation_id)
            path = tree.ancestors(row.id)
            await store.set_active_path(session, row.conversation_id, path, self._now())
            await self._touch(session, user_id, row.conversation_id)
            return await store.load_active_path(session, row.conversation_id)

    async def activate(self, user_id: int, message_id: uuid.UUID) -> list[ChatMessage]:
        """Make the branch through a given row the active path (an old answer's
        buttons act on that answer's branch)."""
        return await self._unblocked(lambda: self._activate_row(user_id, message_id))

    async def _activate_row(self, user_id: int, message_id: uuid.UUID) -> list[ChatMessage]:
        async with self.db.write() as session:
            row = await store.owned_message(session, user_id, message_id)
            return await self._activate(session, row)

    async def _activate(self, session: AsyncSession, target: ChatMessage) -> list[ChatMessage]:
        await self._check_idle(session, target.conversation_id)
        # Recomputed even for a row already shown: a path cut short by branch_from
        # grows back to the most recently active branch below it.
        tree = await store.load_tree(session, target.conversation_id)
        path = tree.path_through(target.id)
        await store.set_active_path(session, target.conversation_id, path, self._now())
        await self._touch(session, target.user_id, target.conversation_id)
        return await store.load_active_path(session, target.conversation_id)

    async def _touch(self, session: AsyncSession, user_id: int, conversation_id: uuid.UUID) -> None:
        await session.execute(
            update(User).where(User.id == user_id).values(current_conversation_id=conversation_id)
        )

    @staticmethod
    async def _check_idle(session: AsyncSession, conversation_id: uuid.UUID) -> None:
        busy = await store.streaming_answers(
            session, ChatMessage.conversation_id == conversation_id
        )
        if busy:
            raise ConversationBusy(busy)
