"""Platform messages <-> conversation rows (see MessageLink)."""

from __future__ import annotations

import logging
import uuid
from collections.abc import Sequence
from dataclasses import dataclass

from sqlalchemy import delete, select
from sqlalchemy.ext.asyncio import AsyncSession

from core.db.engine import Database
from core.db.held import HeldWrites
from core.db.models import ChatMessage, MessageLink
from core.db.models.base import table_of
from core.db.upsert import insert_ignore, insert_new, insert_or_update


@dataclass(frozen=True)
class PlatformMessage:
    """A message on a platform: which row it shows is kept in MessageLink."""

    platform: str
    chat_id: str
    message_id: str


log = logging.getLogger(__name__)

_KEY = ("platform", "chat_id", "platform_message_id")


async def link_in(
    session: AsyncSession, ref: PlatformMessage, row_id: uuid.UUID, part: int = 0
) -> None:
    """Point a platform message at (part `part` of) a row, inside the caller's
    transaction."""
    await insert_or_update(
        session,
        table_of(MessageLink),
        [
            {
                "platform": ref.platform,
                "chat_id": ref.chat_id,
                "platform_message_id": ref.message_id,
                "chat_message_id": row_id,
                "part": part,
            }
        ],
        _KEY,
        ["chat_message_id", "part"],
    )


async def link_new(session: AsyncSession, ref: PlatformMessage, row_id: uuid.UUID) -> bool:
    """Point a platform message that no row shows yet at `row_id`; False when one
    already does (the same message delivered again), inside the caller's transaction."""
    values = {
        "platform": ref.platform,
        "chat_id": ref.chat_id,
        "platform_message_id": ref.message_id,
        "chat_message_id": row_id,
        "part": 0,
    }
    return await insert_new(session, MessageLink, values, _KEY) is not None


@dataclass(frozen=True)
class Linked:
    row_id: uuid.UUID
    part: int


class MessageLinks:
    """The links of one platform. `add` (a streaming answer's next part) is written
    with the others that come within ADD_DELAY, in one statement off the answer's
    path, carried by an answer's settling transaction when one comes within
    RIDE_WAIT (core/db/held.py); every read here writes what waits first, so this
    process never misses its own links. A crash in between loses only where a cut
    answer was shown (its end is then posted below its prompt instead of into its
    message)."""

    ADD_DELAY = 0.2  # seconds
    BATCH = 500  # links in one statement at most

    def __init__(self, db: Database, platform: str) -> None:
        self.db = db
        self.platform = platform
        # (chat, platform message) -> (row, part)
        self.held: HeldWrites[tuple[str, str], tuple[uuid.UUID, int]] = HeldWrites(
            db, self._write, delay=self.ADD_DELAY, batch=self.BATCH, what="message links"
        )

    async def _write(
        self, session: AsyncSession, batch: dict[tuple[str, str], tuple[uuid.UUID, int]]
    ) -> None:
        await insert_or_update(
            session,
            table_of(MessageLink),
            [
                {
                    "platform": self.platform,
                    "chat_id": chat,
                    "platform_message_id": message,
                    "chat_message_id": row_id,
                    "part": part,
                }
                for (chat, message), (row_id, part) in batch.items()
            ],
            _KEY,
            ["chat_message_id", "part"],
        )

    async def flush(self) -> None:
        """Write the links `add` took so far (kept for the next try if it fails)."""
        try:
            await self.held.flush()
        except Exception:
            log.warning("could not write %d message links", len(self.held), exc_info=True)
            raise

    async def aclose(self) -> None:
        """Write what waits, with no writer left behind (the process stops)."""
        await self.held.aclose()

    async def _settled(self) -> None:
        if self.held:
            await self.flush()

    async def resolve(self, chat_id: int | str, message_id: int | str) -> Linked | None:
        await self._settled()
        async with self.db.read() as session:
            row = (
                await session.execute(
                    select(MessageLink.chat_message_id, MessageLink.part).where(
                        MessageLink.platform == self.platform,
                        MessageLink.chat_id == str(chat_id),
                        MessageLink.platform_message_id == str(message_id),
                    )
                )
            ).one_or_none()
        return Linked(row[0], row[1]) if row else None

    async def reply_anchor(self, row_id: uuid.UUID) -> uuid.UUID | None:
        """Where a reply to a message showing `row_id` continues: after that row, or
        for a prompt (a voice note's transcript shows one) after the answer that
        followed it, the one made active last; None if it has none yet."""
        await self._settled()
        async with self.db.read() as session:
            role = await session.scalar(select(ChatMessage.role).where(ChatMessage.id == row_id))
            if role != "user":
                return row_id
            return (
                await session.execute(
                    select(ChatMessage.id)
                    .where(
                        ChatMessage.parent_message_id == row_id,
                        ChatMessage.role == "assistant",
                    )
                    .order_by(ChatMessage.activated_at.desc(), ChatMessage.revision_number.desc())
                    .limit(1)
                )
            ).scalar_one_or_none()

    async def parts(self, chat_id: int | str, row_id: uuid.UUID) -> list[str]:
        """The platform messages showing a row, in order."""
        await self._settled()
        async with self.db.read() as session:
            return list(
                (
                    await session.scalars(
                        select(MessageLink.platform_message_id)
                        .where(
                            MessageLink.platform == self.platform,
                            MessageLink.chat_id == str(chat_id),
                            MessageLink.chat_message_id == row_id,
                        )
                        .order_by(MessageLink.part)
                    )
                ).all()
            )

    async def show(
        self, chat_id: int | str, row_id: uuid.UUID, message_ids: Sequence[int | str]
    ) -> None:
        """These platform messages (in order) now show `row_id`: links of these
        messages to any other row, and of the row to other messages, are replaced."""
        chat = str(chat_id)
        ids = [str(m) for m in message_ids]
        await self._settled()
        async with self.db.write() as session:
            await session.execute(
                delete(MessageLink).where(
                    MessageLink.platform == self.platform,
                    MessageLink.chat_id == chat,
                    (MessageLink.platform_message_id.in_(ids))
                    | (MessageLink.chat_message_id == row_id),
                )
            )
            await insert_ignore(
                session,
                table_of(MessageLink),
                [
                    {
                        "platform": self.platform,
                        "chat_id": chat,
                        "platform_message_id": message_id,
                        "chat_message_id": row_id,
                        "part": part,
                    }
                    for part, message_id in enumerate(ids)
                ],
                _KEY,
            )

    async def add(
        self, chat_id: int | str, row_id: uuid.UUID, message_id: int | str, part: int
    ) -> None:
        """One more platform message shows part `part` of `row_id`, whose earlier
        parts are linked already: `show` without rewriting their links. Written
        within ADD_DELAY (see the class)."""
        self.held.put((str(chat_id), str(message_id)), (row_id, part))

    async def displays(self, row_id: uuid.UUID) -> list[tuple[str, list[str]]]:
        """Every chat showing a row, with its messages in order."""
        await self._settled()
        async with self.db.read() as session:
            rows = (
                await session.execute(
                    select(MessageLink.chat_id, MessageLink.platform_message_id)
                    .where(
                        MessageLink.platform == self.platform,
                        MessageLink.chat_message_id == row_id,
                    )
                    .order_by(MessageLink.chat_id, MessageLink.part)
                )
            ).all()
        chats: dict[str, list[str]] = {}
        for chat_id, message_id in rows:
            chats.setdefault(chat_id, []).append(message_id)
        return list(chats.items())

    async def chat_conversation(self, chat_id: int | str) -> uuid.UUID | None:
        """The conversation a chat showed last (a Discord thread belongs to one)."""
        await self._settled()
        async with self.db.read() as session:
            return (
                await session.execute(
                    select(ChatMessage.conversation_id)
                    .join(MessageLink, MessageLink.chat_message_id == ChatMessage.id)
                    .where(
                        MessageLink.platform == self.platform,
                        MessageLink.chat_id == str(chat_id),
                    )
                    .order_by(MessageLink.id.desc())
                    .limit(1)
                )
            ).scalar_one_or_none()
