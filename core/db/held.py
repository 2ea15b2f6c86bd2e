"""Bookkeeping writes held back to be written together, off an answer's path.

What is `put` within `delay` is written in one statement. When that time is up the
batch is due, and the next write transaction that offers to `carry` it writes it
before its commit: under load one comes within milliseconds, so the batch costs no
transaction of its own. If none comes within RIDE_WAIT, the batch is written in a
transaction of its own. A batch leaves the holder only once its transaction has
committed; one that fails stays for the next try. A carried batch is written under a
savepoint, so one the database refuses never fails the transaction carrying it: it
rolls back alone and is written in a transaction of its own from then on.
"""

from __future__ import annotations

import asyncio
import logging
from collections.abc import AsyncIterator, Awaitable, Callable, Iterable
from contextlib import asynccontextmanager
from typing import Any, Generic, TypeVar

from sqlalchemy.ext.asyncio import AsyncSession

from core.db.engine import Database

log = logging.getLogger(__name__)

K = TypeVar("K")
V = TypeVar("V")

RIDE_WAIT = 1.0  # seconds a due batch waits for a transaction to carry it
RETRY_CAP = 30.0  # seconds between tries while the database is away

Write = Callable[[AsyncSession, dict[K, V]], Awaitable[None]]


class HeldWrites(Generic[K, V]):
    def __init__(
        self, db: Database, write: Write[K, V], *, delay: float, batch: int, what: str
    ) -> None:
        self.db = db
        self._write = write
        self.delay = delay
        self.batch = batch
        self.what = what  # for the log: "message links"
        self._held: dict[K, V] = {}
        self._due = False
        self._riding = False  # a transaction carries a batch now
        self._rides = 0  # batches carried so far
        self._alone = False  # a ride failed: written in transactions of its own
        self._writer: asyncio.Task[None] | None = None

    def __len__(self) -> int:
        return len(self._held)

    def put(self, key: K, value: V) -> None:
        self._held[key] = value
        if self._writer is None or self._writer.done():
            self._writer = asyncio.create_task(self._write_later())

    async def flush(self) -> None:
        """Write everything held now, in transactions of its own; raises if the
        database refuses (what was not written is kept)."""
        while self._held:
            batch = self._take()
            async with self.db.write() as session:
                await self._write(session, batch)
            self._written(batch)
        self._alone = False

    async def carry(self, session: AsyncSession) -> Callable[[], None] | None:
        """Write a due batch in the caller's transaction; the caller calls what this
        returns once that transaction has committed (until then the batch is kept)."""
        if not self._due or self._riding or self._alone or not self._held:
            return None
        batch = self._take()
        self._riding = True
        try:
            # Under a savepoint: a batch the database refuses (a link to a row
            # deleted meanwhile) must not fail the answer that carries it.
            async with session.begin_nested():
                await self._write(session, batch)
        except Exception:
            log.warning("could not write %d %s", len(batch), self.what, exc_info=True)
            self.dropped()
            self._alone = True  # until a write of its own gets through
            return None
        except BaseException:
            self.dropped()
            raise

        def committed() -> None:
            self._riding = False
            self._due = False
            self._rides += 1
            self._written(batch)

        return committed

    def dropped(self) -> None:
        """The transaction that carried a batch did not commit: the batch is kept,
        and written in a transaction of its own (it may be what failed)."""
        self._riding = False
        self._due = False

    async def aclose(self) -> None:
        """Write what is held, with no writer left behind (the process stops)."""
        if self._writer is not None and not self._writer.done():
            self._writer.cancel()
            await asyncio.gather(self._writer, return_exceptions=True)
        self._riding = False
        await self.flush()

    def _take(self) -> dict[K, V]:
        keys = list(self._held)[: self.batch]
        return {key: self._held[key] for key in keys}

    def _written(self, batch: dict[K, V]) -> None:
        for key, value in batch.items():
            # A key put again meanwhile keeps its newer value for the next batch.
            if key in self._held and self._held[key] == value:
                del self._held[key]

    async def _write_later(self) -> None:
        delay = self.delay
        while self._held:
            await asyncio.sleep(delay)
            rides = self._rides
            self._due = True
            await asyncio.sleep(RIDE_WAIT)
            delay = self.delay
            if self._riding or self._rides != rides:
                continue  # carried (or on its way): what came since waits its delay
            self._due = False
            if not self._held:
                break
            try:
                await self.flush()
            except Exception:
                log.warning("could not write %d %s", len(self._held), self.what, exc_info=True)
                delay = min(delay * 2, RETRY_CAP)  # the database is away: later


@asynccontextmanager
async def write_carrying(
    db: Database, holders: Iterable[HeldWrites[Any, Any]]
) -> AsyncIterator[AsyncSession]:
    """`db.write()`, whose transaction also writes the due batches of `holders`
    after the caller's statements."""
    rides: list[tuple[HeldWrites[Any, Any], Callable[[], None]]] = []
    try:
        async with db.write() as session:
            yield session
            for holder in holders:
                done = await holder.carry(session)
                if done is not None:
                    rides.append((holder, done))
    except BaseException:
        for holder, _ in rides:
            holder.dropped()
        raise
    for _, done in rides:
        done()
