"""What every process picks up from the database on its own, so an admin's change
reaches it whichever process (or `oneai admin` at a shell) made it:

- the models turned off for everyone (the catalog refuses and hides them);
- bans: an answer this process streams for a person banned meanwhile stops.

`Services.go_live` runs `AdminSync.once` at start and then every worker heartbeat.
Both reads are small: the `disabled_models` table, and only while answers stream
here, the owners of those answers that are banned.
"""

from __future__ import annotations

import asyncio
import logging

from sqlalchemy import select
from sqlalchemy.ext.asyncio import AsyncSession

from core.chat import ChatService
from core.db.engine import Database
from core.db.models import ChatMessage, DisabledModel, User
from core.llm.catalog import ModelCatalog

log = logging.getLogger(__name__)


async def load_disabled(session: AsyncSession) -> dict[str, str | None]:
    """The models turned off for everyone, with the reason given."""
    rows = await session.execute(select(DisabledModel.model_id, DisabledModel.reason))
    return {model_id: reason for model_id, reason in rows}


class AdminSync:
    def __init__(self, db: Database, catalog: ModelCatalog, chat: ChatService) -> None:
        self.db = db
        self.catalog = catalog
        self.chat = chat
        self._loaded = False

    async def refresh_models(self) -> frozenset[str]:
        async with self.db.read() as session:
            disabled = frozenset(await load_disabled(session))
        if disabled != self.catalog.disabled:
            level = logging.INFO if self._loaded else logging.DEBUG
            log.log(level, "models turned off: %s", ", ".join(sorted(disabled)) or "none")
            self.catalog.set_disabled(disabled)
        self._loaded = True
        return disabled

    async def stop_banned(self) -> int:
        """Stop the answers this process streams for people who are banned now."""
        running = list(self.chat.running_ids())
        if not running:
            return 0
        async with self.db.read() as session:
            rows = (
                await session.execute(
                    select(ChatMessage.id, ChatMessage.user_id)
                    .join(User, User.id == ChatMessage.user_id)
                    .where(ChatMessage.id.in_(running), User.is_banned)
                )
            ).all()
        stopped = sum(self.chat.stop(user_id, message_id) for message_id, user_id in rows)
        if stopped:
            log.info("stopped %d answers of banned people", stopped)
        return stopped

    async def once(self) -> None:
        await self.refresh_models()
        await self.stop_banned()

    async def run(self, interval: float) -> None:
        """`once` every `interval` seconds until cancelled."""
        while True:
            await asyncio.sleep(interval)
            try:
                await self.once()
            except Exception:
                log.warning("reading admin changes failed", exc_info=True)
