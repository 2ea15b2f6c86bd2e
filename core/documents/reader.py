"""Extraction off the event loop, bounded in size, pages, characters and time."""

from __future__ import annotations

import asyncio
import logging
import time

from core.config import DocumentSettings
from core.documents.errors import (
    DocumentError,
    DocumentTooBig,
    ExtractionTimedOut,
    UnreadableDocument,
)
from core.documents.extract import Bounds, Extracted, extract

log = logging.getLogger(__name__)

MB = 1024 * 1024


class DocumentReader:
    def __init__(self, settings: DocumentSettings) -> None:
        self.settings = settings
        # Held until the thread really ends, even after its caller gave up on it:
        # a document that outlives its time cannot pile up threads.
        self._slots = asyncio.Semaphore(settings.concurrency)

    def check_size(self, size: int | None) -> None:
        """Before downloading: the size the platform declares."""
        limit = self.settings.max_bytes
        if size is not None and size > limit:
            raise DocumentTooBig(size / MB, limit / MB)

    async def read(self, data: bytes, declared_mime: str | None) -> Extracted:
        self.check_size(len(data))
        settings = self.settings
        await self._slots.acquire()
        bounds = Bounds(
            settings.max_pages, settings.max_chars, time.monotonic() + settings.extract_timeout
        )
        try:
            work = asyncio.ensure_future(asyncio.to_thread(extract, data, declared_mime, bounds))
        except BaseException:
            self._slots.release()
            raise
        work.add_done_callback(lambda _: self._slots.release())
        # The extractor checks its deadline between pages; this bounds one slow page.
        done, _ = await asyncio.wait({work}, timeout=settings.extract_timeout + 5)
        if not done:
            work.add_done_callback(_consume)
            raise ExtractionTimedOut()
        try:
            return work.result()
        except DocumentError:
            raise
        except Exception:
            # A parser's own fault on a hostile file (deep recursion, a bad stream):
            # the person gets the damaged-document reply, not silence.
            log.warning("a document could not be read", exc_info=True)
            raise UnreadableDocument() from None


def _consume(future: asyncio.Future[Extracted]) -> None:
    # A result nobody waits for any more: read it so asyncio does not log it.
    if not future.cancelled():
        future.exception()
