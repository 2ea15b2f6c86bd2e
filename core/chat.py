"""Generations: stream an answer from the LLM into its row, and settle its quota unit.

The rule for the unit reserved when a generation starts: it is kept when the answer
completes or is stopped after its first token; it goes back when the generation
fails, is interrupted, or is stopped before its first token.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
import time
import uuid
from collections.abc import AsyncIterator, Awaitable, Callable, Collection, Sequence
from dataclasses import dataclass
from datetime import datetime
from typing import Any

from sqlalchemy import bindparam, update
from sqlalchemy.ext.asyncio import AsyncSession

from core import logs, metrics
from core.clock import utcnow
from core.config import LimitSettings
from core.conversations.errors import ShuttingDown
from core.conversations.links import PlatformMessage
from core.conversations.turns import AttachmentUse, AudioUse, Turn, TurnPlanner
from core.db.direct import Direct
from core.db.engine import Database
from core.db.held import HeldWrites, write_carrying
from core.db.models import ChatMessage, MessageStatus
from core.db.models.base import table_of
from core.errors import OneAIError
from core.liveness import Liveness
from core.llm.citations import Citation, merge, to_meta
from core.llm.client import LLMClient, Usage
from core.llm.context import build_context
from core.quotas import QuotaService
from core.stop_signals import RedisStopBus
from core.streaming.sink import Outcome
from core.tasks import cancel_and_wait
from core.text import StreamCleaner

log = logging.getLogger(__name__)

# Pauses between attempts at an answer's final save (a dropped connection, a
# database restarting); after the last, the row ends `failed` with its unit back.
SAVE_RETRY_DELAYS = (0.2, 1.0, 3.0)
# Then the short "failed" write is retried until the database takes it.
SETTLE_RETRY_CAP = 30.0
# Display marks are written together this long after the first of them (seconds),
# at most this many a statement.
DISPLAY_MARK_DELAY = 0.2
DISPLAY_MARK_BATCH = 500


class GenerationFailed(OneAIError):
    code = "generation_failed"
    user_message = "The answer could not be generated. Please try again."


class AnswerNotSaved(OneAIError):
    code = "not_saved"
    user_message = "The answer could not be saved, so it was not counted. Press 🔄 to try again."


@dataclass(frozen=True)
class GenerationResult:
    status: str
    content: str
    error: OneAIError | None
    charged: bool
    usage: Usage | None


@dataclass(frozen=True)
class FinalState:
    """What an ended generation saves."""

    status: str
    charged: bool
    text: str
    usage: Usage | None
    error: OneAIError | None
    citations: tuple[Citation, ...] = ()


class Generation:
    """One answer being generated. Iterate `stream()` for text deltas as they
    arrive; `result` is set when the stream ends. `stop()` ends it early."""

    def __init__(self, chat: ChatService, turn: Turn) -> None:
        self.chat = chat
        self.turn = turn
        self.text = ""
        self.result: GenerationResult | None = None
        self._stop_requested = False
        self._cut = False  # stop() or interrupt() was called
        self._reading: asyncio.Task[Any] | None = None  # the task iterating `stream()`
        self._in_read = False  # it waits for the model now
        self._first_token = False
        self._usage: Usage | None = None
        self._error: OneAIError | None = None
        self._status = MessageStatus.STREAMING
        self._started = False
        self._began = 0.0  # time.monotonic() when streaming started
        self._ending = False  # the text is complete; the answer is being saved
        self._beats: asyncio.Task[None] | None = None  # the heartbeat, once one is due
        self._saving: asyncio.Task[None] | None = None  # a save its reader left behind
        self.citations: list[Citation] = []  # web-search sources, deduplicated

    @property
    def message_id(self) -> uuid.UUID:
        return self.turn.answer.id

    @property
    def started(self) -> bool:
        return self._started

    @property
    def ending(self) -> bool:
        """The text is complete and the answer is being saved (an `EndingSource`)."""
        return self._ending

    @property
    def outcome(self) -> Outcome | None:
        """How the answer ended (for the final message), once its stream is over."""
        result = self.result
        return None if result is None else Outcome(result.status, result.error)

    def __aiter__(self) -> AsyncIterator[str]:
        """The text deltas (`stream()`); with `outcome` and `ending`, an
        `AnswerSource` and an `EndingSource`."""
        return self.stream()

    def stop(self) -> None:
        """Stop generating at the person's request; text received so far is kept
        (and charged once a token came)."""
        self._stop_requested = True
        self.interrupt()

    def interrupt(self) -> None:
        """Cut the answer short for a reason of ours (the process is stopping): the
        text so far is kept, the unit goes back."""
        if self.result is not None or self._cut:
            return
        self._cut = True
        # The model is read in the consumer's own task (a wait on the network,
        # nothing in between): a read in progress is cancelled there; between
        # reads the stream ends at its next step.
        if self._reading is not None and self._in_read and not self._reading.done():
            self._reading.cancel()

    async def run(self) -> GenerationResult:
        """Generate to the end without watching the deltas."""
        async for _ in self.stream():
            pass
        assert self.result is not None
        return self.result

    async def stream(self) -> AsyncIterator[str]:
        if self._started:
            raise RuntimeError("a generation streams once")
        self._started = True
        self._began = time.monotonic()
        # The lines this answer causes name its conversation (in the streaming task).
        logs.CONVERSATION_ID.set(str(self.turn.conversation.id))
        self.chat.register(self)
        self._reading = asyncio.current_task()
        # A timer, not a task, until the first beat is due: most answers end before.
        first_beat = asyncio.get_running_loop().call_later(
            self.chat.limits.heartbeat_seconds, self._start_beating
        )
        try:
            if self._stop_requested or self._cut:
                self._status = self._cut_status()  # stopped before it began
            else:
                async for piece in self._generate():
                    yield piece
        finally:
            self._reading = None
            self._ending = True
            first_beat.cancel()
            if self._beats is not None:
                self._beats.cancel()
            await self._settle_here()

    async def _settle_here(self) -> None:
        """Save the answer in the reading task (no task of its own for every answer).
        Should that task be cancelled meanwhile, the save starts over in a task of
        its own: the cut transaction rolled back, and one that committed already is
        not written twice (the row is no longer `streaming`)."""
        try:
            await self._settle()
        except asyncio.CancelledError:
            if self.result is None:
                # Held by the generation, itself held by the service until saved.
                self._saving = asyncio.create_task(self._settle())
            raise

    def _cut_status(self) -> str:
        return MessageStatus.CANCELLED if self._stop_requested else MessageStatus.INTERRUPTED

    async def _generate(self) -> AsyncIterator[str]:
        """The model's text, made storable and sendable as it arrives; how it ended
        is left in `_status` (and `_error`)."""
        turn = self.turn
        cleaner = StreamCleaner()
        try:
            context = build_context(
                turn.history,
                model=turn.model,
                system_prompt=turn.system_prompt,
                estimator=self.chat.planner.estimator,
            )
            chunks = self.chat.llm.stream_chat(
                turn.model.id,
                context.messages,
                max_tokens=turn.model.max_output_tokens,
                web_search=turn.web_search,
            )
            async with contextlib.aclosing(chunks):
                self._in_read = True
                async for chunk in chunks:
                    if chunk.usage is not None:
                        self._usage = chunk.usage
                    if chunk.citations:
                        self.citations = merge(self.citations, chunk.citations)
                    if chunk.text and (piece := cleaner.feed(chunk.text)):
                        if not self._first_token:
                            metrics.FIRST_TOKEN_SECONDS.observe(time.monotonic() - self._began)
                        self._first_token = True
                        self.text += piece
                        self._in_read = False
                        yield piece
                        if self._cut:
                            self._status = self._cut_status()
                            return
                        self._in_read = True
                self._in_read = False
            if tail := cleaner.flush():
                self.text += tail
                yield tail
        except asyncio.CancelledError:
            self._in_read = False
            self._status = self._cut_status()
            task = asyncio.current_task()
            if not self._cut:
                raise  # the consumer's task was cancelled from outside
            if task is not None:
                task.uncancel()  # our own cut: the stream just ends
            return
        except OneAIError as exc:
            self._error = exc
            self._status = MessageStatus.FAILED
        except Exception:
            log.exception("generation %s failed", self.message_id)
            self._error = GenerationFailed()
            self._status = MessageStatus.FAILED
        else:
            self._status = MessageStatus.COMPLETE

    def _start_beating(self) -> None:
        if not self._ending:
            self._beats = asyncio.create_task(self._heartbeat())

    async def _heartbeat(self) -> None:
        """Prove this worker is alive and save the partial text, so a crash loses
        little and a restart knows which rows are orphans. Every `heartbeat_seconds`
        from when the answer began streaming."""
        interval = self.chat.limits.heartbeat_seconds
        while True:
            try:
                async with self.chat.db.write() as session:
                    await session.execute(
                        update(ChatMessage)
                        .where(
                            ChatMessage.id == self.message_id,
                            ChatMessage.status == MessageStatus.STREAMING,
                        )
                        .values(heartbeat_at=self.chat.now(), content=self.text)
                    )
            except Exception:
                log.warning("heartbeat of %s failed", self.message_id, exc_info=True)
            await asyncio.sleep(interval)

    async def abandon(self) -> None:
        """Its platform failed before streaming it: the row ends `interrupted` now,
        with its unit back, instead of waiting for a sweep."""
        if self._started:
            return
        self._started = True
        self._status = MessageStatus.INTERRUPTED
        self.chat.register(self)
        await asyncio.shield(self._settle())

    async def _settle(self) -> None:
        status = self._status
        if status == MessageStatus.STREAMING:
            status = MessageStatus.INTERRUPTED
        charged = status == MessageStatus.COMPLETE or (
            status == MessageStatus.CANCELLED and self._first_token
        )
        final = FinalState(
            status, charged, self.text, self._usage, self._error, tuple(self.citations)
        )
        if not await self.chat.save_final(self, final):
            # Not saved: the row ends `failed` with its unit back (in the
            # background if the database is away); the person is told so.
            status, charged, self._error = MessageStatus.FAILED, False, AnswerNotSaved()
        self.result = GenerationResult(status, self.text, self._error, charged, self._usage)
        _measure(self, status)


_MESSAGES = table_of(ChatMessage)
# Ends an answer row. On the table, not the entity: no ORM objects to synchronize,
# and the ORM's bulk-update path costs more than the statement. Built once: the SET
# clause comes from the keys of each call's parameters.
_END_ROW = Direct(
    update(_MESSAGES)
    .where(
        _MESSAGES.c.id == bindparam("row_id"),
        _MESSAGES.c.status == MessageStatus.STREAMING,
    )
    .returning(_MESSAGES.c.id)
)


def _measure(generation: Generation, status: str) -> None:
    metrics.ANSWERS.labels(status).inc()
    if generation._began:  # abandoned ones never streamed
        metrics.FINAL_SECONDS.observe(time.monotonic() - generation._began)
    usage = generation._usage
    if usage is not None:
        model = generation.turn.model.id
        metrics.TOKENS.labels(model, "in").inc(usage.prompt_tokens or 0)
        metrics.TOKENS.labels(model, "out").inc(usage.completion_tokens or 0)


class ChatService:
    def __init__(
        self,
        db: Database,
        planner: TurnPlanner,
        llm: LLMClient,
        quotas: QuotaService,
        limits: LimitSettings,
        worker_id: str,
        now: Callable[[], datetime] = utcnow,
    ) -> None:
        self.db = db
        self.planner = planner
        self.llm = llm
        self.quotas = quotas
        self.limits = limits
        self.worker_id = worker_id
        self.now = now
        self._running: dict[uuid.UUID, Generation] = {}
        self._settling: set[asyncio.Task[None]] = set()
        # Display marks not yet written (see `displayed`).
        self._shown: HeldWrites[uuid.UUID, None] = HeldWrites(
            db,
            self._write_shown,
            delay=DISPLAY_MARK_DELAY,
            batch=DISPLAY_MARK_BATCH,
            what="display marks",
        )
        # Bookkeeping held back to be written together; an answer's settling
        # transaction carries what is due (see core/db/held.py).
        self._held: list[HeldWrites[Any, Any]] = [self._shown]
        self._idle = asyncio.Event()  # set while nothing runs here
        self._idle.set()
        self.stop_bus: RedisStopBus | None = None
        self.liveness: Liveness | None = None
        # Set when the process is stopping: no new answers start.
        self.closing = False

    def running_ids(self) -> Collection[uuid.UUID]:
        """Answers this process streams (or still settles) now."""
        return self._running.keys()

    async def _plan(self, plan: Callable[[], Awaitable[Turn]]) -> Generation:
        if self.closing:
            raise ShuttingDown()
        turn = await (self.liveness.unblocked(plan) if self.liveness else plan())
        return Generation(self, turn)

    async def send(
        self,
        user_id: int,
        text: str,
        *,
        conversation_id: uuid.UUID | None = None,
        new_conversation: bool = False,
        reply_to: uuid.UUID | None = None,
        images: Sequence[str] = (),
        platform: str | None = None,
        prompt_link: PlatformMessage | None = None,
        web_search: bool = False,
        attachment: AttachmentUse | None = None,
        audio: AudioUse | None = None,
    ) -> Generation:
        return await self._plan(
            lambda: self.planner.send(
                user_id,
                text,
                conversation_id=conversation_id,
                new_conversation=new_conversation,
                reply_to=reply_to,
                images=images,
                platform=platform,
                prompt_link=prompt_link,
                web_search=web_search,
                attachment=attachment,
                audio=audio,
            )
        )

    async def regenerate(self, user_id: int, message_id: uuid.UUID) -> Generation:
        return await self._plan(lambda: self.planner.regenerate(user_id, message_id))

    async def edit(
        self,
        user_id: int,
        message_id: uuid.UUID,
        text: str,
        *,
        prompt_link: PlatformMessage | None = None,
    ) -> Generation:
        return await self._plan(
            lambda: self.planner.edit(user_id, message_id, text, prompt_link=prompt_link)
        )

    async def abandon(self, generation: Generation) -> None:
        """A generation whose platform failed before streaming it: its row ends
        `interrupted` now, with its unit back, instead of waiting for a sweep."""
        await generation.abandon()

    def stop(self, user_id: int, message_id: uuid.UUID) -> bool:
        """Stop a generation of this user's running in this process."""
        generation = self._running.get(message_id)
        if generation is None or generation.turn.user_id != user_id:
            return False
        generation.stop()
        return True

    async def request_stop(self, user_id: int, message_id: uuid.UUID) -> bool:
        """Stop a generation wherever it runs: here, or (with Redis) in another
        process. An answer whose worker is gone is ended here at once. False when
        it is known to run nowhere."""
        if self.stop(user_id, message_id):
            return True
        if self.liveness is not None:
            row = await self.liveness.streaming_row(user_id, message_id)
            if row is None:
                return False
            if await self.liveness.clear([row]):
                return True
        if self.stop_bus is None:
            return False
        await self.stop_bus.publish(user_id, message_id)
        return True

    # -- stopping the process ------------------------------------------------------

    async def drain(self, grace: float, *, settle_timeout: float = 10.0) -> int:
        """No new answers; running ones get `grace` seconds to finish, then the rest
        are interrupted (units back). Returns how many were interrupted."""
        self.closing = True
        with contextlib.suppress(TimeoutError):
            async with asyncio.timeout(grace):
                await self._idle.wait()
        cut = [g for g in self._running.values() if g.result is None]
        for generation in cut:
            generation.interrupt()
        with contextlib.suppress(TimeoutError):
            async with asyncio.timeout(settle_timeout):
                await self._idle.wait()
        return len(cut)

    def register(self, generation: Generation) -> None:
        """A generation streams (or settles) here from now on."""
        if generation.message_id not in self._running:
            metrics.ACTIVE_STREAMS.inc()
        self._running[generation.message_id] = generation
        self._idle.clear()

    def _unregister(self, generation: Generation) -> None:
        if self._running.pop(generation.message_id, None) is not None:
            metrics.ACTIVE_STREAMS.dec()
        if not self._running:
            self._idle.set()

    async def save_final(self, generation: Generation, final: FinalState) -> bool:
        """Save the answer's final state and settle its unit, retrying a failed save.
        False when it could not be saved: the row is then ended `failed` with its
        unit back in the background, and stays registered here until it is."""
        for delay in (*SAVE_RETRY_DELAYS, None):
            try:
                await self._save(generation.turn, final)
            except Exception:
                if delay is None:
                    log.exception("could not save answer %s; it ends failed", generation.message_id)
                    break
                log.warning("saving answer %s failed; retrying", generation.message_id)
                await asyncio.sleep(delay)
            else:
                self._unregister(generation)
                return True
        task = asyncio.create_task(self._settle_unsaved(generation))
        self._settling.add(task)
        task.add_done_callback(self._settling.discard)
        return False

    async def _settle_unsaved(self, generation: Generation) -> None:
        """End a row whose final save failed: `failed`, unit back, the text kept as
        the last heartbeat saved it. Retried until the database takes it."""
        turn = generation.turn
        delay = 1.0
        try:
            while True:
                try:
                    values = {"status": MessageStatus.FAILED, "error_code": AnswerNotSaved.code}
                    await self._end_row(turn, values, release=True)
                    turn.answer.status = MessageStatus.FAILED
                    return
                except Exception as exc:
                    log.warning("ending unsaved answer %s failed: %s", turn.answer.id, exc)
                    await asyncio.sleep(delay)
                    delay = min(delay * 2, SETTLE_RETRY_CAP)
        finally:
            self._unregister(generation)

    def displayed(self, message_id: uuid.UUID) -> None:
        """The answer's final state is shown: no other worker needs to show it.

        The marks of the answers that end within DISPLAY_MARK_DELAY are written
        together in one statement, off the answer's path: the person may write
        again the moment the final text shows. A crash in between leaves the row
        pending, so another worker shows it a second time, never not at all."""
        self._shown.put(message_id, None)

    async def _write_shown(self, session: AsyncSession, marks: dict[uuid.UUID, None]) -> None:
        messages = table_of(ChatMessage)
        await session.execute(
            update(messages)
            .where(messages.c.id.in_(list(marks)), messages.c.display_pending)
            .values(display_pending=False)
        )

    def hold(self, held: HeldWrites[Any, Any]) -> None:
        """`held` (a platform's message links) is written with the display marks:
        carried by the answers' settling transactions, and by `flush_pending`."""
        self._held.append(held)

    async def flush_pending(self) -> None:
        """Write what waits to be written together. Before this worker signs off,
        since another one then acts on what it finds (or misses) in the database."""
        for held in self._held:
            try:
                await held.aclose()
            except Exception:
                log.warning("could not write held-back %s", held.what, exc_info=True)

    async def close(self) -> None:
        """Stop retrying unsaved answers (the process ends; a sweep elsewhere ends
        them) and write the display marks still waiting."""
        for task in list(self._settling):
            await cancel_and_wait(task)
        await self.flush_pending()

    async def _save(self, turn: Turn, final: FinalState) -> None:
        usage, error = final.usage, final.error
        values: dict[str, Any] = {
            "content": final.text,
            "status": final.status,
            "error_code": error.code if error else None,
            "prompt_tokens": usage.prompt_tokens if usage else None,
            "completion_tokens": usage.completion_tokens if usage else None,
            # Until the platform shows it (`displayed`); see ChatMessage.
            "display_pending": True,
        }
        meta = turn.answer.meta
        if final.citations:  # shown under the answer, and again when paged back to
            meta = {**meta, "citations": to_meta(final.citations)}
            values["metadata"] = meta
        await self._end_row(turn, values, release=not final.charged)
        turn.answer.status = final.status
        turn.answer.content = final.text
        turn.answer.meta = meta

    async def _end_row(self, turn: Turn, values: dict[str, Any], *, release: bool) -> None:
        """Move the answer row out of `streaming` with `values`; with `release`, its
        unit goes back. A row someone else ended already is left as it is."""
        async with write_carrying(self.db, self._held) as session:
            ended = await _END_ROW.rows(
                session,
                {
                    **values,
                    "finished_at": self.now(),
                    "heartbeat_at": None,
                    "row_id": turn.answer.id,
                },
            )
            # Only the writer that moved the row out of `streaming` settles its unit.
            if ended and release:
                await self.quotas.release(
                    session,
                    turn.user_id,
                    turn.reservation.quota_key.value,
                    turn.reservation.window_start,
                )
