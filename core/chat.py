"""Generations: stream an answer from the LLM into its row, and settle its quota unit.

The rule for the unit reserved when a generation starts: it is kept when the answer
completes or is stopped after its first token; it goes back when the generation
fails, is interrupted, or is stopped before its first token.
"""

from __future__ import annotations

import asyncio
import logging
import os
import socket
import uuid
from collections.abc import AsyncIterator, Callable, Sequence
from dataclasses import dataclass
from datetime import datetime, timedelta

from sqlalchemy import select, update

from core.clock import utcnow
from core.config import LimitSettings
from core.conversations.links import PlatformMessage
from core.conversations.turns import Turn, TurnPlanner
from core.db.engine import Database
from core.db.models import ChatMessage, MessageStatus
from core.db.models.base import table_of
from core.errors import OneAIError
from core.llm.client import LLMClient, Usage
from core.llm.context import build_context
from core.quotas import QuotaService
from core.stop_signals import RedisStopBus

log = logging.getLogger(__name__)

_END = object()


def new_worker_id() -> str:
    """Identifies this process on streaming rows, so a restart can tell its own
    leftovers from another live worker's answers."""
    return f"{socket.gethostname()[:32]}:{os.getpid()}:{uuid.uuid4().hex[:8]}"


class GenerationFailed(OneAIError):
    code = "generation_failed"
    user_message = "The answer could not be generated. Please try again."


@dataclass(frozen=True)
class GenerationResult:
    status: str
    content: str
    error: OneAIError | None
    charged: bool
    usage: Usage | None


@dataclass(frozen=True)
class InterruptedAnswer:
    """An answer cut off by a worker that died; the platform tells the user."""

    message_id: uuid.UUID
    conversation_id: uuid.UUID
    user_id: int
    content: str
    platform_message_ids: dict[str, object]


class Generation:
    """One answer being generated. Iterate `stream()` for text deltas as they
    arrive; `result` is set when the stream ends. `stop()` ends it early."""

    def __init__(self, chat: ChatService, turn: Turn) -> None:
        self.chat = chat
        self.turn = turn
        self.text = ""
        self.result: GenerationResult | None = None
        self._queue: asyncio.Queue[object] = asyncio.Queue()
        self._stop_requested = False
        self._first_token = False
        self._usage: Usage | None = None
        self._error: OneAIError | None = None
        self._status = MessageStatus.STREAMING
        self._pump_task: asyncio.Task[None] | None = None
        self._started = False

    @property
    def message_id(self) -> uuid.UUID:
        return self.turn.answer.id

    def stop(self) -> None:
        """Stop generating; text received so far is kept."""
        self._stop_requested = True
        if self._pump_task is not None and not self._pump_task.done():
            self._pump_task.cancel()

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
        self.chat._register(self)
        self._pump_task = asyncio.create_task(self._pump())
        heartbeat = asyncio.create_task(self._heartbeat())
        if self._stop_requested:
            self._pump_task.cancel()
        try:
            while True:
                item = await self._queue.get()
                if item is _END:
                    break
                assert isinstance(item, str)
                yield item
        finally:
            heartbeat.cancel()
            if not self._pump_task.done():
                # The consumer went away (its task was cancelled): interrupted.
                self._pump_task.cancel()
            await asyncio.shield(self._settle())

    async def _pump(self) -> None:
        turn = self.turn
        try:
            context = build_context(
                turn.history,
                model=turn.model,
                system_prompt=turn.system_prompt,
                estimator=self.chat.planner.estimator,
            )
            async for chunk in self.chat.llm.stream_chat(
                turn.model.id, context.messages, max_tokens=turn.model.max_output_tokens
            ):
                if chunk.text:
                    self._first_token = True
                    self.text += chunk.text
                    self._queue.put_nowait(chunk.text)
                if chunk.usage is not None:
                    self._usage = chunk.usage
        except asyncio.CancelledError:
            self._status = (
                MessageStatus.CANCELLED if self._stop_requested else MessageStatus.INTERRUPTED
            )
        except OneAIError as exc:
            self._error = exc
            self._status = MessageStatus.FAILED
        except Exception:
            log.exception("generation %s failed", self.message_id)
            self._error = GenerationFailed()
            self._status = MessageStatus.FAILED
        else:
            self._status = MessageStatus.COMPLETE
        finally:
            self._queue.put_nowait(_END)

    async def _heartbeat(self) -> None:
        """Prove this worker is alive and save the partial text, so a crash loses
        little and a restart knows which rows are orphans."""
        interval = self.chat.limits.heartbeat_seconds
        while True:
            await asyncio.sleep(interval)
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

    async def _settle(self) -> None:
        if self._pump_task is not None and not self._pump_task.done():
            await asyncio.wait([self._pump_task])
        status = self._status
        if status == MessageStatus.STREAMING:
            status = MessageStatus.INTERRUPTED
        charged = status == MessageStatus.COMPLETE or (
            status == MessageStatus.CANCELLED and self._first_token
        )
        try:
            await self.chat._finish(self, status, charged)
        finally:
            self.chat._unregister(self)
        self.result = GenerationResult(status, self.text, self._error, charged, self._usage)


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
        self.stop_bus: RedisStopBus | None = None

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
    ) -> Generation:
        turn = await self.planner.send(
            user_id,
            text,
            conversation_id=conversation_id,
            new_conversation=new_conversation,
            reply_to=reply_to,
            images=images,
            platform=platform,
            prompt_link=prompt_link,
        )
        return Generation(self, turn)

    async def regenerate(self, user_id: int, message_id: uuid.UUID) -> Generation:
        return Generation(self, await self.planner.regenerate(user_id, message_id))

    async def edit(
        self,
        user_id: int,
        message_id: uuid.UUID,
        text: str,
        *,
        prompt_link: PlatformMessage | None = None,
    ) -> Generation:
        turn = await self.planner.edit(user_id, message_id, text, prompt_link=prompt_link)
        return Generation(self, turn)

    def stop(self, user_id: int, message_id: uuid.UUID) -> bool:
        """Stop a generation of this user's running in this process."""
        generation = self._running.get(message_id)
        if generation is None or generation.turn.user_id != user_id:
            return False
        generation.stop()
        return True

    async def request_stop(self, user_id: int, message_id: uuid.UUID) -> bool:
        """Stop a generation wherever it runs: here, or (with Redis) in another
        process. False when it is known to run nowhere."""
        if self.stop(user_id, message_id):
            return True
        if self.stop_bus is None:
            return False
        await self.stop_bus.publish(user_id, message_id)
        return True

    def _register(self, generation: Generation) -> None:
        self._running[generation.message_id] = generation

    def _unregister(self, generation: Generation) -> None:
        self._running.pop(generation.message_id, None)

    async def _finish(self, generation: Generation, status: str, charged: bool) -> None:
        turn = generation.turn
        usage = generation._usage
        error = generation._error
        now = self.now()
        async with self.db.write() as session:
            # On the table, not the entity: no ORM objects to synchronize here, and
            # the ORM's bulk-update path costs more than the statement.
            messages = table_of(ChatMessage)
            rows = messages.c
            updated = await session.execute(
                update(messages)
                .where(rows.id == turn.answer.id, rows.status == MessageStatus.STREAMING)
                .values(
                    content=generation.text,
                    status=status,
                    error_code=error.code if error else None,
                    prompt_tokens=usage.prompt_tokens if usage else None,
                    completion_tokens=usage.completion_tokens if usage else None,
                    finished_at=now,
                    heartbeat_at=None,
                )
                .returning(rows.id)
            )
            # Only the writer that moved the row out of `streaming` settles its unit.
            if updated.first() is not None and not charged:
                await self.quotas.release(
                    session,
                    turn.user_id,
                    turn.reservation.quota_key.value,
                    turn.reservation.window_start,
                )
        turn.answer.status = status
        turn.answer.content = generation.text

    async def recover_stale(self, stale_after: float | None = None) -> list[InterruptedAnswer]:
        """Mark answers whose worker stopped sending heartbeats as interrupted and
        give their units back. Answers of live workers are left alone."""
        cutoff = self.now() - timedelta(seconds=stale_after or self.limits.stale_stream_seconds)
        async with self.db.read() as session:
            candidates: Sequence[uuid.UUID] = (
                await session.scalars(
                    select(ChatMessage.id).where(
                        ChatMessage.status == MessageStatus.STREAMING,
                        ChatMessage.heartbeat_at < cutoff,
                    )
                )
            ).all()
        interrupted: list[InterruptedAnswer] = []
        for message_id in candidates:
            async with self.db.write() as session:
                row = (
                    await session.execute(
                        update(ChatMessage)
                        .where(
                            ChatMessage.id == message_id,
                            ChatMessage.status == MessageStatus.STREAMING,
                            ChatMessage.heartbeat_at < cutoff,
                        )
                        .values(
                            status=MessageStatus.INTERRUPTED,
                            error_code="interrupted",
                            finished_at=self.now(),
                            heartbeat_at=None,
                        )
                        .returning(
                            ChatMessage.user_id,
                            ChatMessage.conversation_id,
                            ChatMessage.content,
                            ChatMessage.quota_key,
                            ChatMessage.quota_window_start,
                            ChatMessage.platform_message_ids,
                        )
                    )
                ).one_or_none()
                if row is None:
                    continue
                user_id, conversation_id, content, key, window, platform_ids = row
                if key is not None and window is not None:
                    await self.quotas.release(session, user_id, key, window)
            interrupted.append(
                InterruptedAnswer(message_id, conversation_id, user_id, content, platform_ids)
            )
        return interrupted
