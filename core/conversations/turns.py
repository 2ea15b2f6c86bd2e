"""Starting a generation: send, regenerate and edit.

Each is one write transaction that checks what the user may do, reserves the quota
unit and writes the prompt and a `streaming` answer row, so a refused request
writes nothing and a reserved unit always has a row that can give it back.
"""

from __future__ import annotations

import uuid
from collections.abc import Callable, Sequence
from dataclasses import dataclass, field
from datetime import datetime
from enum import StrEnum
from typing import Any

from sqlalchemy import (
    BindParameter,
    ColumnElement,
    Select,
    and_,
    bindparam,
    func,
    insert,
    literal_column,
    select,
    update,
)
from sqlalchemy import inspect as sa_inspect
from sqlalchemy.ext.asyncio import AsyncSession
from sqlalchemy.orm.attributes import set_committed_value

from core.clock import utcnow
from core.config import LimitSettings
from core.conversations import store
from core.conversations.errors import (
    BlockingAnswer,
    ConversationBusy,
    ConversationFull,
    ConversationNotFound,
    DuplicateMessage,
    EmptyMessage,
    InputTooLong,
    MessageNotFound,
    NotARevisionTarget,
    TooManyGenerations,
    TooManyRevisions,
    UserBanned,
)
from core.conversations.links import PlatformMessage, link_in, link_new
from core.conversations.path import PathEntry, active_path_json, read_path
from core.db.direct import Direct
from core.db.engine import Database
from core.db.models import Attachment, ChatMessage, Conversation, MessageStatus, User
from core.db.models.attachments import AUDIO
from core.db.models.base import table_of
from core.documents.errors import DocumentDoesNotFit, DocumentGone
from core.llm.catalog import ModelCatalog, ModelInfo
from core.llm.context import (
    AudioClip,
    DocumentText,
    HistoryMessage,
    MessageTooLong,
    build_context,
)
from core.llm.tokens import TokenEstimator, default_estimator
from core.quotas import QuotaService, Reservation
from core.text import storable
from core.tiers import QuotaKey, Tier
from core.voice.errors import ModelDoesNotListen

TITLE_WORDS = 8
TITLE_CHARS = 60


# The prompt row's metadata key for "only the first N characters of its document".
DOCUMENT_LIMIT = "document_limit"


@dataclass(frozen=True)
class AttachmentUse:
    """A stored document sent with a new message; `limit`: only its first part."""

    id: uuid.UUID
    limit: int | None = None


@dataclass(frozen=True)
class AudioUse:
    """A recording sent with a new message to a model that listens: stored once
    (an attachment of kind audio) in the transaction that writes the message."""

    name: str
    mime_type: str
    size_bytes: int
    clip: AudioClip


# A voice note's conversation is named after its caption, or this.
VOICE_TITLE = "🎤 Voice note"


class TurnKind(StrEnum):
    SEND = "send"
    REGENERATE = "regenerate"
    EDIT = "edit"


@dataclass
class Turn:
    """Everything a generation needs once its rows are written."""

    kind: TurnKind
    user_id: int
    conversation: Conversation
    prompt: ChatMessage
    answer: ChatMessage
    history: list[HistoryMessage]
    model: ModelInfo
    system_prompt: str | None
    reservation: Reservation
    created_conversation: bool = False
    replaced: ChatMessage | None = field(default=None)
    web_search: bool = False  # the request goes out with the web plugin


def make_title(text: str) -> str:
    """The first words of the first message."""
    words = text.split()
    title = " ".join(words[:TITLE_WORDS])
    if len(title) > TITLE_CHARS:
        title = title[: TITLE_CHARS - 1].rstrip() + "…"
    elif len(words) > TITLE_WORDS:
        title += "…"
    return title or "New chat"


def to_history(
    rows: Sequence[PathEntry], documents: dict[uuid.UUID, Attachment] | None = None
) -> list[HistoryMessage]:
    documents = documents or {}
    return [
        HistoryMessage(
            row.role,
            row.content,
            tuple(row.meta.get("images", ())),
            _document_of(row, documents),
            _audio_of(row, documents),
        )
        for row in rows
        if row.role in ("user", "assistant")
    ]


def _document_of(row: PathEntry, documents: dict[uuid.UUID, Attachment]) -> DocumentText | None:
    attachment = documents.get(row.attachment_id) if row.attachment_id else None
    if attachment is None or attachment.kind == AUDIO:
        return None
    return document_text(attachment, row.meta.get(DOCUMENT_LIMIT))


def _audio_of(row: PathEntry, documents: dict[uuid.UUID, Attachment]) -> AudioClip | None:
    attachment = documents.get(row.attachment_id) if row.attachment_id else None
    return audio_clip(attachment) if attachment is not None else None


def audio_clip(attachment: Attachment) -> AudioClip | None:
    """The recording an attachment row holds; None for a document."""
    if attachment.kind != AUDIO:
        return None
    meta = attachment.meta if isinstance(attachment.meta, dict) else {}
    return AudioClip(attachment.content, str(meta.get("format", "")), int(meta.get("seconds", 1)))


def audio_row(user_id: int, audio: AudioUse) -> Attachment:
    return Attachment(
        id=uuid.uuid4(),
        user_id=user_id,
        kind=AUDIO,
        name=audio.name[:255],
        mime_type=audio.mime_type[:127],
        size_bytes=audio.size_bytes,
        pages=None,
        chars=len(audio.clip.data),
        content=audio.clip.data,
        meta={"format": audio.clip.format, "seconds": audio.clip.seconds},
        created_at=utcnow(),
    )


def document_text(attachment: Attachment, limit: int | None = None) -> DocumentText:
    return DocumentText(attachment.name, attachment.content, attachment.pages, limit)


async def load_documents(
    session: AsyncSession, rows: Sequence[PathEntry]
) -> dict[uuid.UUID, Attachment]:
    """The documents of `rows`, in one query (none when no row has one)."""
    ids = {row.attachment_id for row in rows if row.attachment_id is not None}
    if not ids:
        return {}
    found = await session.scalars(select(Attachment).where(Attachment.id.in_(ids)))
    return {attachment.id: attachment for attachment in found}


_MESSAGES = table_of(ChatMessage)
_INSERT_MESSAGES = Direct(insert(_MESSAGES))
# (attribute, column) of every column: `meta` is stored as "metadata".
_COLUMNS = tuple((attr.key, attr.columns[0].name) for attr in sa_inspect(ChatMessage).column_attrs)


_STREAMING: ColumnElement[str] = literal_column(f"'{MessageStatus.STREAMING}'")


def _lock_query(with_path: bool) -> Select[Any]:
    """The user's row locked, the answers they have streaming, their current
    conversation (the session's identity map then serves a later lookup of it) and
    with `with_path` its active path. Built once: only the user's id changes."""
    user_id: BindParameter[int] = bindparam("user_id")
    streaming = (
        select(func.count())
        .select_from(ChatMessage)
        # The status as a literal, for the partial index of streaming answers.
        .where(ChatMessage.user_id == user_id, ChatMessage.status == _STREAMING)
        .correlate(None)  # counted once, not once per path row joined below
        .scalar_subquery()
    )
    query = (
        select(User, streaming, Conversation)
        .outerjoin(
            Conversation,
            and_(
                Conversation.id == User.current_conversation_id,
                Conversation.user_id == User.id,
            ),
        )
        .where(User.id == user_id)
        .with_for_update(of=User)
    )
    if not with_path:
        return query
    return query.add_columns(active_path_json())


_LOCK = _lock_query(False)
_LOCK_WITH_PATH = _lock_query(True)


_NEW_MESSAGE = sa_inspect(ChatMessage).class_manager.new_instance


def _message(**values: Any) -> ChatMessage:
    """A message row as a plain object with every attribute given, without the
    mapped constructor's per-attribute events (a twentieth of its cost). A turn's
    rows are written by `_insert`, never through a session, so nothing needs to
    know them as pending."""
    row: ChatMessage = _NEW_MESSAGE()
    row.__dict__.update(values)
    return row


def _columns(row: ChatMessage) -> dict[str, Any]:
    # From the row's own values (`_message`): a column left unset fails here.
    values = row.__dict__
    return {column: values[key] for key, column in _COLUMNS}


class TurnPlanner:
    def __init__(
        self,
        db: Database,
        quotas: QuotaService,
        catalog: ModelCatalog,
        limits: LimitSettings,
        worker_id: str,
        estimator: TokenEstimator | None = None,
        now: Callable[[], datetime] = utcnow,
        web_search: bool = False,
    ) -> None:
        self.web_search = web_search  # the server offers web search
        self.db = db
        self.quotas = quotas
        self.catalog = catalog
        self.limits = limits
        self.worker_id = worker_id
        self.estimator = estimator or default_estimator()
        self._now = now
        # The default chat mode's prompt: what a conversation without a mode gets
        # when the person set no prompt of their own.
        self.default_prompt: str | None = None

    # -- the three ways to start a generation ------------------------------------

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
    ) -> Turn:
        """A new user message and its answer, at the end of the active path, or after
        `reply_to` (an earlier answer) as a new branch. `web_search`: this answer
        searches the web (as every answer does in a conversation with search on).
        `audio`: a recording for the conversation's model to listen to, stored with
        the message (the model must take audio)."""
        text = self._check_text(text, allow_empty=bool(images) or audio is not None)
        async with self.db.write() as session:
            # A reply may move the path: it loads it whole, on its own.
            user, current, current_path = await self._lock_user(
                session, user_id, with_path=not new_conversation and reply_to is None
            )
            document: Attachment | None = None
            if attachment is not None:
                document = await session.get(Attachment, attachment.id)
                if document is None or document.user_id != user_id:
                    raise DocumentGone()
            created = False
            conversation: Conversation | None = None
            if reply_to is not None:
                anchor = await store.owned_message(session, user_id, reply_to)
                conversation = await store.owned_conversation(
                    session, user_id, anchor.conversation_id
                )
            elif not new_conversation:
                target = conversation_id or user.current_conversation_id
                if current is not None and current.id == target:
                    conversation = current  # loaded with the user, no query
                elif target is not None:
                    conversation = await session.get(Conversation, target)
                    if conversation is None or conversation.user_id != user_id:
                        if conversation_id is not None:
                            raise ConversationNotFound()
                        conversation = None
            title = text
            if document is not None:
                title = f"📎 {document.name} {text}"
            elif audio is not None:
                title = text or VOICE_TITLE
            if conversation is None:
                conversation = self._new_conversation(user, title, platform)
                session.add(conversation)
                await session.flush()
                created = True
            elif conversation.message_count == 0:
                # Made empty by /mode: named after its first message all the same.
                conversation.title = make_title(title)
            model = self.catalog.check_access(conversation.model_id, Tier(user.tier))
            if audio is not None and not model.audio:
                # The conversation's model changed since the note was routed to it.
                raise ModelDoesNotListen(model.name)
            system_prompt = self._system_prompt(conversation, user)
            limit = attachment.limit if attachment is not None else None
            doc_text = document_text(document, limit) if document is not None else None
            clip = audio.clip if audio is not None else None
            self._check_fits(text, images, model, system_prompt, doc_text, clip)
            self._check_capacity(conversation, 2)

            path: Sequence[PathEntry]
            if reply_to is not None:
                rows = await store.load_active_path(session, conversation.id)
                self._check_idle(rows)
                path = await self._cut_after(session, conversation, rows, reply_to)
            else:
                if created:
                    path = []
                elif conversation is current and current_path is not None:
                    path = current_path
                else:
                    path = await store.load_active_path(session, conversation.id)
                self._check_idle(path)
            search = self._searches(conversation, web_search)
            reservation = await self.quotas.reserve(
                session, user_id, Tier(user.tier), self._quota_key(model, search)
            )
            parent = path[-1] if path else None
            seq = parent.sequence_number + 1 if parent else 1
            prompt = self._row(
                conversation, user_id, "user", seq, parent, text, model, images=images
            )
            if document is not None:
                prompt.attachment_id = document.id
                document.meta = {}  # no longer waiting for a choice
                if limit is not None:
                    prompt.meta = {**prompt.meta, DOCUMENT_LIMIT: limit}
            elif audio is not None:
                document = audio_row(user_id, audio)
                session.add(document)
                await session.flush()  # before the message that points to it
                prompt.attachment_id = document.id
            answer = self._answer_row(conversation, user_id, seq + 1, prompt, model, reservation)
            self._mark_search(answer, search)
            await self._insert(session, conversation, [prompt, answer])
            documents = await load_documents(session, path)
            if document is not None:
                documents[document.id] = document
            # The same platform message delivered twice (a webhook redelivered, a
            # second poller) is answered and charged once, across processes.
            if prompt_link is not None and not await link_new(session, prompt_link, prompt.id):
                raise DuplicateMessage()
            if created or user.current_conversation_id != conversation.id:
                await session.execute(
                    update(User)
                    .where(User.id == user_id)
                    .values(current_conversation_id=conversation.id)
                )
        return Turn(
            TurnKind.SEND,
            user_id,
            conversation,
            prompt,
            answer,
            to_history([*path, prompt], documents),
            model,
            system_prompt,
            reservation,
            created_conversation=created,
            web_search=search,
        )

    async def regenerate(self, user_id: int, message_id: uuid.UUID) -> Turn:
        """A new revision of an answer, from the same prompt; the old one is kept."""
        async with self.db.write() as session:
            user, _, _ = await self._lock_user(session, user_id)
            old = await store.owned_message(session, user_id, message_id)
            if old.role != "assistant" or old.parent_message_id is None:
                raise NotARevisionTarget()
            conversation = await store.owned_conversation(session, user_id, old.conversation_id)
            model = self.catalog.check_access(conversation.model_id, Tier(user.tier))
            system_prompt = self._system_prompt(conversation, user)
            self._check_capacity(conversation, 1)
            path = await store.load_active_path(session, conversation.id)
            self._check_idle(path)
            path = await self._cut_after(session, conversation, path, old.parent_message_id)
            prompt = path[-1]
            revision = await self._next_revision(session, old.original_message_id)
            # A search answer's new version searches again.
            search = self._searches(conversation, bool(old.meta.get("web_search")))
            reservation = await self.quotas.reserve(
                session, user_id, Tier(user.tier), self._quota_key(model, search)
            )
            answer = self._answer_row(
                conversation,
                user_id,
                old.sequence_number,
                prompt,
                model,
                reservation,
                original_id=old.original_message_id,
                revision=revision,
                revision_type="regeneration",
            )
            self._mark_search(answer, search)
            await self._insert(session, conversation, [answer])
            documents = await load_documents(session, path)
        return Turn(
            TurnKind.REGENERATE,
            user_id,
            conversation,
            prompt,
            answer,
            to_history(path, documents),
            model,
            system_prompt,
            reservation,
            replaced=old,
            web_search=search,
        )

    async def edit(
        self,
        user_id: int,
        message_id: uuid.UUID,
        text: str,
        *,
        prompt_link: PlatformMessage | None = None,
    ) -> Turn:
        """A new revision of a user message and a fresh answer: a new branch from
        that message; the old branch, with all that followed, is kept. A message
        with a recording keeps it, so its text (the caption) may become empty."""
        text = self._check_text(text, allow_empty=True)
        async with self.db.write() as session:
            user, _, _ = await self._lock_user(session, user_id)
            old = await store.owned_message(session, user_id, message_id)
            if old.role != "user":
                raise NotARevisionTarget()
            conversation = await store.owned_conversation(session, user_id, old.conversation_id)
            model = self.catalog.check_access(conversation.model_id, Tier(user.tier))
            system_prompt = self._system_prompt(conversation, user)
            images: Sequence[str] = old.meta.get("images", ())
            # The edit keeps the message's document or recording: the same row, not
            # a copy; the edited text is what goes with it.
            kept = await load_documents(session, [old])
            document = kept.get(old.attachment_id) if old.attachment_id else None
            limit = old.meta.get(DOCUMENT_LIMIT)
            doc_text = _document_of(old, kept)
            clip = _audio_of(old, kept)
            if not text and clip is None:
                raise EmptyMessage()
            self._check_fits(text, images, model, system_prompt, doc_text, clip)
            self._check_capacity(conversation, 2)
            path = await store.load_active_path(session, conversation.id)
            self._check_idle(path)
            # The answer that followed the edited message: its group gets the new answer.
            follow: ChatMessage | None = None
            if old.is_latest:
                follow = next(
                    (r for r in path if r.sequence_number == old.sequence_number + 1), None
                )
            else:
                tree = await store.load_tree(session, conversation.id)
                child = tree.most_recent_child(old.id)
                if child is not None:
                    follow = (await store.load_rows(session, [child.id]))[0]
            follow_group = follow.original_message_id if follow else None
            if old.parent_message_id is None:
                await store.set_active_path(session, conversation.id, [], self._now())
                path = []
            else:
                path = await self._cut_after(session, conversation, path, old.parent_message_id)
            user_revision = await self._next_revision(session, old.original_message_id)
            answer_revision = (
                await self._next_revision(session, follow_group) if follow_group else 0
            )
            # An edited /search question searches again.
            search = self._searches(
                conversation, follow is not None and bool(follow.meta.get("web_search"))
            )
            reservation = await self.quotas.reserve(
                session, user_id, Tier(user.tier), self._quota_key(model, search)
            )
            parent = path[-1] if path else None
            prompt = self._row(
                conversation,
                user_id,
                "user",
                old.sequence_number,
                parent,
                text,
                model,
                images=images,
                original_id=old.original_message_id,
                revision=user_revision,
                revision_type="user_edit",
            )
            if document is not None:
                prompt.attachment_id = document.id
                if limit is not None:
                    prompt.meta = {**prompt.meta, DOCUMENT_LIMIT: limit}
            answer = self._answer_row(
                conversation,
                user_id,
                old.sequence_number + 1,
                prompt,
                model,
                reservation,
                original_id=follow_group,
                revision=answer_revision,
                revision_type="regeneration" if follow_group else None,
            )
            answer.meta = {"cause": "user_edit"}
            self._mark_search(answer, search)
            await self._insert(session, conversation, [prompt, answer])
            if prompt_link is not None:  # the edited platform message now shows the edit
                await link_in(session, prompt_link, prompt.id)
            documents = await load_documents(session, path)
            documents.update(kept)
        return Turn(
            TurnKind.EDIT,
            user_id,
            conversation,
            prompt,
            answer,
            to_history([*path, prompt], documents),
            model,
            system_prompt,
            reservation,
            replaced=old,
            web_search=search,
        )

    # -- web search -----------------------------------------------------------------

    def _searches(self, conversation: Conversation, asked: bool) -> bool:
        """Whether the answer searches the web: asked for (/search, a search answer
        regenerated) or the conversation's toggle, where the server offers it."""
        meta = conversation.meta if isinstance(conversation.meta, dict) else {}
        return self.web_search and (asked or bool(meta.get("web_search")))

    @staticmethod
    def _quota_key(model: ModelInfo, search: bool) -> QuotaKey:
        """A search answer takes a web_search unit instead of the model's unit."""
        return QuotaKey.WEB_SEARCH if search else model.quota_key

    @staticmethod
    def _mark_search(answer: ChatMessage, search: bool) -> None:
        if search:
            answer.meta = {**answer.meta, "web_search": True}

    # -- checks ---------------------------------------------------------------------

    def _system_prompt(self, conversation: Conversation, user: User) -> str | None:
        """The prompt a generation gets now, so a regeneration after /mode (of the
        last answer or an older one) uses the conversation's current prompt: a mode's
        (none for a mode without one), else the person's own, else the default
        mode's."""
        if conversation.mode is not None:
            return conversation.system_prompt
        return conversation.system_prompt or user.system_prompt or self.default_prompt

    def _check_text(self, text: str, *, allow_empty: bool = False) -> str:
        # Storable on both databases before anything else looks at it.
        text = storable(text).strip()
        if not text and not allow_empty:
            raise EmptyMessage()
        if len(text) > self.limits.max_input_chars:
            raise InputTooLong(len(text), self.limits.max_input_chars)
        return text

    def _check_fits(
        self,
        text: str,
        images: Sequence[str],
        model: ModelInfo,
        system_prompt: str | None,
        document: DocumentText | None = None,
        audio: AudioClip | None = None,
    ) -> None:
        """A message too large for the model alone is refused before anything is
        written or charged."""
        try:
            build_context(
                [HistoryMessage("user", text, tuple(images), document, audio)],
                model=model,
                system_prompt=system_prompt,
                estimator=self.estimator,
            )
        except MessageTooLong:
            if document is None:
                raise
            # Offered a choice before (core/documents): the model changed since.
            raise DocumentDoesNotFit() from None

    def _check_capacity(self, conversation: Conversation, adding: int) -> None:
        if conversation.message_count + adding > self.limits.max_messages_per_conversation:
            raise ConversationFull()

    @staticmethod
    def _check_idle(path: Sequence[PathEntry]) -> None:
        if path and path[-1].status == MessageStatus.STREAMING:
            last = path[-1]
            raise ConversationBusy([BlockingAnswer(last.id, last.worker_id, last.heartbeat_at)])

    async def _next_revision(self, session: AsyncSession, original_id: uuid.UUID) -> int:
        revision = await store.next_revision(session, original_id)
        if revision >= self.limits.max_revisions_per_message:
            raise TooManyRevisions()
        return revision

    # -- loading ----------------------------------------------------------------------

    async def _lock_user(
        self, session: AsyncSession, user_id: int, *, with_path: bool = False
    ) -> tuple[User, Conversation | None, Sequence[PathEntry] | None]:
        """Lock the user's row: their concurrent requests queue here on PostgreSQL
        (SQLite's write transaction already serializes them). The same query counts
        their answers streaming now, for the concurrency bound. `with_path`: the
        current conversation's active path comes along too (what a message at its
        end reads of each message, as one JSON value), saving a second query."""
        query = _LOCK_WITH_PATH if with_path else _LOCK
        row = (await session.execute(query, {"user_id": user_id})).first()
        if row is None:
            raise ConversationNotFound()
        user: User = row[0]
        running: int = row[1]
        current: Conversation | None = row[2]
        path = read_path(row[3]) if with_path else None
        if user.is_banned:
            raise UserBanned()
        if running >= self.limits.max_concurrent_generations:
            raise TooManyGenerations(
                await store.streaming_answers(session, ChatMessage.user_id == user_id)
            )
        return user, current, path

    async def _cut_after(
        self,
        session: AsyncSession,
        conversation: Conversation,
        path: list[ChatMessage],
        anchor_id: uuid.UUID,
    ) -> list[ChatMessage]:
        """Make the path end at `anchor_id`: everything after it leaves the active
        path (and is kept); an anchor off the path brings its ancestors back."""
        for index, row in enumerate(path):
            if row.id == anchor_id:
                if index + 1 < len(path):
                    await store.truncate_after(session, conversation.id, row.sequence_number)
                return path[: index + 1]
        tree = await store.load_tree(session, conversation.id)
        if anchor_id not in tree.nodes:
            raise MessageNotFound()
        ids = tree.ancestors(anchor_id)
        await store.set_active_path(session, conversation.id, ids, self._now())
        return await store.load_rows(session, ids)

    # -- writing ------------------------------------------------------------------------

    def _new_conversation(self, user: User, text: str, platform: str | None) -> Conversation:
        now = self._now()
        return Conversation(
            id=uuid.uuid4(),
            user_id=user.id,
            title=make_title(text),
            model_id=self.catalog.preferred(user.default_model).id,
            platform=platform,
            message_count=0,
            created_at=now,
            updated_at=now,
            meta={},
        )

    def _row(
        self,
        conversation: Conversation,
        user_id: int,
        role: str,
        seq: int,
        parent: PathEntry | None,
        content: str,
        model: ModelInfo,
        *,
        images: Sequence[str] = (),
        original_id: uuid.UUID | None = None,
        revision: int = 0,
        revision_type: str | None = None,
        status: str = MessageStatus.COMPLETE,
    ) -> ChatMessage:
        row_id = uuid.uuid4()
        now = self._now()
        return _message(
            id=row_id,
            conversation_id=conversation.id,
            user_id=user_id,
            role=role,
            content=content,
            model_id=model.id,
            sequence_number=seq,
            parent_message_id=parent.id if parent else None,
            original_message_id=original_id or row_id,
            revision_number=revision,
            revision_type=revision_type,
            is_latest=True,
            activated_at=now,
            status=status,
            platform_message_ids={},
            meta={"images": list(images)} if images else {},
            created_at=now,
            # Every column set, so that `_insert` writes all rows with one statement.
            error_code=None,
            prompt_tokens=None,
            completion_tokens=None,
            quota_key=None,
            quota_window_start=None,
            worker_id=None,
            heartbeat_at=None,
            display_pending=False,
            finished_at=None,
            attachment_id=None,
        )

    def _answer_row(
        self,
        conversation: Conversation,
        user_id: int,
        seq: int,
        prompt: ChatMessage,
        model: ModelInfo,
        reservation: Reservation,
        *,
        original_id: uuid.UUID | None = None,
        revision: int = 0,
        revision_type: str | None = None,
    ) -> ChatMessage:
        row = self._row(
            conversation,
            user_id,
            "assistant",
            seq,
            prompt,
            "",
            model,
            original_id=original_id,
            revision=revision,
            revision_type=revision_type,
            status=MessageStatus.STREAMING,
        )
        row.quota_key = reservation.quota_key.value
        row.quota_window_start = reservation.window_start
        row.worker_id = self.worker_id
        row.heartbeat_at = self._now()
        return row

    async def _insert(
        self, session: AsyncSession, conversation: Conversation, rows: list[ChatMessage]
    ) -> None:
        # One INSERT of all rows on the table, not the unit of work: the rows stay
        # plain objects, which is all a turn needs of them, and the session skips
        # the bookkeeping of tracking them. What the session does track is written
        # first (`Direct` flushes it), as the unit of work would have ordered it.
        await _INSERT_MESSAGES.many(session, [_columns(row) for row in rows])
        # The database counted the rows (migration 0013's trigger): the object is
        # told, without an UPDATE of its own.
        last = rows[-1].created_at
        set_committed_value(conversation, "message_count", conversation.message_count + len(rows))
        set_committed_value(conversation, "last_message_at", last)
        set_committed_value(conversation, "updated_at", last)
