"""Answers whose worker is gone: found, ended and announced, all the time.

A `streaming` row names the worker that streams it. The row's worker is gone when
it is another process that no longer proves it is alive (`core/workers.py`), or
this process while no generation of it runs here (a start that never streamed, a
final save that never landed). Such a row is ended `interrupted`, its unit goes
back, and in the same transaction a notice goes to the outbox of every platform
that shows the answer or its prompt, so the person is told even if this process
dies right after.

Every worker sweeps on its own schedule; requests that meet such a row (a new
message, Regenerate, paging, Stop) end it on the spot instead of reporting busy.
"""

from __future__ import annotations

import asyncio
import logging
import time
import uuid
from collections.abc import Awaitable, Callable, Collection, Sequence
from datetime import datetime, timedelta
from typing import TypeVar

from sqlalchemy import select, text, update
from sqlalchemy.ext.asyncio import AsyncSession

from core.clock import utcnow
from core.conversations.errors import BlockingAnswer, ConversationBusy, TooManyGenerations
from core.conversations.store import streaming_answers
from core.db.engine import Database
from core.db.models import ChatMessage, MessageLink, MessageStatus
from core.db.models.base import table_of
from core.outbox import Outbox
from core.quotas import QuotaService
from core.workers import WorkerRegistry

log = logging.getLogger(__name__)

T = TypeVar("T")

NOTICE_KIND = "answer.interrupted"
# An answer saved in full whose worker died before the platform showed it.
UNSHOWN_KIND = "answer.unshown"
LATE_KINDS = frozenset({NOTICE_KIND, UNSHOWN_KIND})
_UNSHOWN_BATCH = 200

_MESSAGES = table_of(ChatMessage)


class Liveness:
    def __init__(
        self,
        db: Database,
        registry: WorkerRegistry,
        quotas: QuotaService,
        outbox: Outbox,
        *,
        heartbeat_seconds: float,
        now: Callable[[], datetime] = utcnow,
    ) -> None:
        self.db = db
        self.registry = registry
        self.quotas = quotas
        self.outbox = outbox
        self.heartbeat_seconds = heartbeat_seconds
        self._now = now
        # What runs in this process; set by the chat service.
        self.running: Callable[[], Collection[uuid.UUID]] = frozenset
        # Rows seen gone by a sweep, and when: a second sweep confirms them where
        # the registry asks for it (a worker that only lost Redis for a moment).
        self._suspects: dict[uuid.UUID, float] = {}
        self._unshown_suspects: dict[uuid.UUID, float] = {}

    @property
    def worker_id(self) -> str:
        return self.registry.worker_id

    # -- deciding -------------------------------------------------------------------

    async def gone(
        self, rows: Sequence[BlockingAnswer], *, role_gone: str | None = None
    ) -> list[BlockingAnswer]:
        """The rows whose worker is gone. `role_gone`: every other worker of that
        role counts as gone too (at start without Redis, exactly one bot runs)."""
        me = self.worker_id
        others = {r.worker_id for r in rows if r.worker_id is not None and r.worker_id != me}
        dead = await self.registry.gone(others) if others else set()
        if role_gone is not None and others:
            dead |= others & await self.registry.others_of_role(role_gone)
        running = set(self.running())
        # A row of ours that no generation here streams: given a moment, since a
        # row is written just before its generation starts.
        cutoff = self._now() - timedelta(seconds=self.heartbeat_seconds)
        result = []
        for row in rows:
            orphan = (
                row.worker_id == me
                and row.id not in running
                and (row.heartbeat_at is None or row.heartbeat_at < cutoff)
            )
            if row.worker_id is None or row.worker_id in dead or orphan:
                result.append(row)
        return result

    # -- ending ---------------------------------------------------------------------

    async def end(self, row: BlockingAnswer, *, reason: str = "interrupted") -> bool:
        """End one answer of a gone worker: `interrupted`, unit back, people told.
        False when it was no longer streaming (someone else ended it first)."""
        columns = _MESSAGES.c
        async with self.db.write() as session:
            found = (
                await session.execute(
                    update(_MESSAGES)
                    .where(
                        columns.id == row.id,
                        columns.status == MessageStatus.STREAMING,
                        columns.worker_id.is_not_distinct_from(row.worker_id),
                    )
                    .values(
                        status=MessageStatus.INTERRUPTED,
                        error_code=reason,
                        finished_at=self._now(),
                        heartbeat_at=None,
                    )
                    .returning(
                        columns.user_id,
                        columns.parent_message_id,
                        columns.quota_key,
                        columns.quota_window_start,
                    )
                )
            ).one_or_none()
            if found is None:
                return False
            user_id, prompt_id, key, window = found
            if key is not None and window is not None:
                await self.quotas.release(session, user_id, key, window)
            await self._tell(session, user_id, row.id, prompt_id, NOTICE_KIND)
        self.outbox.wake()
        log.info("answer %s of gone worker %s interrupted (%s)", row.id, row.worker_id, reason)
        return True

    async def show_elsewhere(self, row: BlockingAnswer) -> bool:
        """An answer a gone worker saved but never showed: the platforms that show
        it (or its prompt) show it from their outbox. False if someone did already."""
        columns = _MESSAGES.c
        async with self.db.write() as session:
            found = (
                await session.execute(
                    update(_MESSAGES)
                    .where(columns.id == row.id, columns.display_pending)
                    .values(display_pending=False)
                    .returning(columns.user_id, columns.parent_message_id)
                )
            ).one_or_none()
            if found is None:
                return False
            user_id, prompt_id = found
            await self._tell(session, user_id, row.id, prompt_id, UNSHOWN_KIND)
        self.outbox.wake()
        log.info("answer %s of gone worker %s is shown from here", row.id, row.worker_id)
        return True

    async def _tell(
        self,
        session: AsyncSession,
        user_id: int,
        row_id: uuid.UUID,
        prompt_id: uuid.UUID | None,
        kind: str,
    ) -> None:
        """A notice about answer `row_id` to each platform that shows it or its prompt."""
        shown = [row_id] if prompt_id is None else [row_id, prompt_id]
        platforms = (
            await session.scalars(
                select(MessageLink.platform)
                .where(MessageLink.chat_message_id.in_(shown))
                .distinct()
            )
        ).all()
        for platform in sorted(platforms):
            self.outbox.add(session, user_id, kind, {"message_id": str(row_id)}, platform=platform)

    async def clear(self, rows: Sequence[BlockingAnswer]) -> bool:
        """End those of `rows` whose worker is gone; True if any was."""
        ended = False
        for row in await self.gone(rows):
            ended = await self.end(row) or ended
        return ended

    async def unblocked(self, operation: Callable[[], Awaitable[T]]) -> T:
        """Run `operation`; if answers of gone workers stand in its way (busy, or too
        many streaming), end them and run it once more."""
        try:
            return await operation()
        except (ConversationBusy, TooManyGenerations) as exc:
            if not await self.clear(exc.blocking):
                raise
        return await operation()

    async def streaming_row(self, user_id: int, message_id: uuid.UUID) -> BlockingAnswer | None:
        """The person's answer `message_id` if it is streaming."""
        async with self.db.read() as session:
            rows = await streaming_answers(
                session, ChatMessage.id == message_id, ChatMessage.user_id == user_id
            )
        return rows[0] if rows else None

    # -- sweeping -------------------------------------------------------------------

    async def _streaming(self) -> list[BlockingAnswer]:
        async with self.db.read() as session:
            return await streaming_answers(session)

    async def _unshown(self, role_gone: str | None) -> list[BlockingAnswer]:
        """Answers gone workers saved but did not show: the workers first (few, from
        the partial index), then only the rows of those that are gone."""
        columns = _MESSAGES.c
        # Spelled as the partial index is, so SQLite uses it.
        pending = text("display_pending")
        async with self.db.read() as session:
            workers = set(
                (
                    await session.scalars(
                        select(columns.worker_id)
                        .where(pending, columns.worker_id != self.worker_id)
                        .distinct()
                    )
                ).all()
            )
        if not workers:
            return []
        dead = await self.registry.gone(workers)
        if role_gone is not None:
            dead |= workers & await self.registry.others_of_role(role_gone)
        if not dead:
            return []
        async with self.db.read() as session:
            rows = await session.execute(
                select(columns.id, columns.worker_id, columns.heartbeat_at)
                .where(pending, columns.worker_id.in_(sorted(dead)))
                .limit(_UNSHOWN_BATCH)
            )
            return [BlockingAnswer(*row) for row in rows]

    async def sweep(self, *, confirm: bool = True, role_gone: str | None = None) -> int:
        """End every answer whose worker is gone; how many were ended. With
        `confirm` (and a registry that asks for it), a row is ended only when a
        second sweep, at least a heartbeat later, still finds its worker gone.
        Answers such workers saved but never showed are shown from here."""
        due = self._due(await self.gone(await self._streaming(), role_gone=role_gone), confirm)
        ended = 0
        for row in due:
            ended += await self.end(row)
        unshown = await self._unshown(role_gone)
        for row in self._due(unshown, confirm, self._unshown_suspects):
            await self.show_elsewhere(row)
        return ended

    def _due(
        self,
        gone: list[BlockingAnswer],
        confirm: bool,
        suspects: dict[uuid.UUID, float] | None = None,
    ) -> list[BlockingAnswer]:
        """Those of `gone` to act on now (see `sweep`); `suspects`: where rows
        seen gone once are remembered."""
        if suspects is None:
            suspects = self._suspects
        if not (confirm and self.registry.confirm_gone):
            for row in gone:
                suspects.pop(row.id, None)
            return gone
        now = time.monotonic()
        seen = {row.id for row in gone}
        for key in [k for k in suspects if k not in seen]:
            del suspects[key]
        due = []
        for row in gone:
            first = suspects.setdefault(row.id, now)
            if now - first >= self.heartbeat_seconds:
                due.append(row)
                del suspects[row.id]
        return due

    async def run(self) -> None:
        """Prove this worker is alive and sweep, every heartbeat, until cancelled."""
        beats = asyncio.create_task(self._beat_forever(), name="worker-heartbeat")
        try:
            while True:
                await asyncio.sleep(self.heartbeat_seconds)
                try:
                    await self.sweep()
                except Exception:
                    log.warning("sweeping answers of gone workers failed", exc_info=True)
        finally:
            beats.cancel()

    async def _beat_forever(self) -> None:
        # Apart from the sweeps, so a slow sweep never makes this worker look gone.
        while True:
            await asyncio.sleep(self.heartbeat_seconds)
            try:
                await self.registry.beat()
            except Exception as exc:
                log.warning("worker heartbeat failed: %s", exc)
