"""Requests that make the model answer, from any platform, through one flow.

One generation per person at a time in this process: one further message waits in
a queue of one; anything else meanwhile gets "still answering — press Stop". The
database refuses a second generation in a conversation across processes too, and
a message that lands on another process than the answer it follows waits there
for its turn, as if queued.

A platform hands in an `Origin` (the chat, the person's message, its own event)
and implements `Surface`: say a short notice, make the sink an answer streams
into, show a finished row, mark a cut answer. Message ids are the platform's
integers (Telegram message ids, Discord snowflakes).
"""

from __future__ import annotations

import asyncio
import logging
import uuid
from collections.abc import Awaitable, Callable, Sequence
from dataclasses import dataclass, field
from enum import StrEnum
from typing import Any, Generic, Protocol, TypeVar

from core import intake
from core.answers.controls import Controls, answer_controls, newest_controls
from core.answers.notes import outcome_note
from core.chat import Generation
from core.conversations.errors import ConversationBusy, DuplicateMessage, MessageNotFound
from core.conversations.links import MessageLinks, PlatformMessage
from core.conversations.turns import AttachmentUse
from core.db.models import ChatMessage, MessageStatus, User
from core.errors import OneAIError
from core.i18n import error_text, pick_language, t
from core.llm.citations import Citation, from_meta
from core.services import Services
from core.streaming import DriverResult, Outcome, Sink, StreamDriver

log = logging.getLogger(__name__)

# A message queued behind an answer another process streams: how often its turn
# is asked for, and how long it waits at most (then "still answering").
QUEUE_POLL_SECONDS = 0.5
QUEUE_ELSEWHERE_SECONDS = 600.0

E = TypeVar("E")
EP = TypeVar("EP")

# Answers a button press: "" to go ahead quietly, else a refusal for the presser.
Ack = Callable[[str], Awaitable[None]]


@dataclass(frozen=True)
class Origin(Generic[E]):
    """Where a request came from. `message_id` is the person's own message (the
    answer replies to it and it is linked to the prompt row), None for a request
    with no message of its own (a button, a slash command)."""

    chat_id: int
    platform_user_id: str
    event: E
    message_id: int | None = None


@dataclass(frozen=True)
class AnswerView:
    """What a platform's sink needs to show one streaming answer."""

    lang: str
    answer_id: uuid.UUID
    chat_id: int
    live: Controls  # under the part being written
    final: Callable[[], Awaitable[Controls]]  # under the finished answer
    note: Callable[[Outcome, str], str | None]  # below it, by how it ended
    existing: Sequence[int] = ()  # messages of the old revision, reused in order
    reply_to: int | None = None
    on_new_part: Callable[[list[int]], Awaitable[None]] | None = None
    # Web-search sources, numbered links under the finished answer (read at its end).
    citations: Callable[[], Sequence[Citation]] = lambda: ()


class AnswerSink(Sink[Any], Protocol):
    @property
    def message_ids(self) -> list[int]:
        """The messages showing the answer now, in order."""
        ...


class ShowFailed(Exception):
    """The platform refused to show a finished row (the chat is gone, say)."""


class Surface(Protocol[EP]):
    platform: str
    driver: StreamDriver

    async def say(self, origin: Origin[EP], text: str) -> None:
        """A short notice in the origin's chat that a flood limit must not lose."""
        ...

    def answer_sink(self, origin: Origin[EP], view: AnswerView) -> AnswerSink: ...

    async def show_row(
        self,
        chat_id: int,
        message_ids: Sequence[int],
        *,
        text: str,
        controls: Controls,
        note: str | None,
        lang: str,
        reply_to: int | None = None,
        citations: Sequence[Citation] = (),
    ) -> list[int]:
        """Show a finished row's text in `message_ids` (or new messages below
        `reply_to`) with its controls, its sources and note; the messages that show it."""
        ...

    async def mark_cut(
        self, chat_id: int, message_id: int, controls: Controls, note: str, lang: str
    ) -> bool:
        """Give the last shown part of a cut answer its finished controls and post
        `note` below it; False if that message is gone."""
        ...


class ButtonCheck(StrEnum):
    OK = "ok"
    STALE = "stale_button"  # forged data, or the message shows another row now
    NOT_YOURS = "not_yours"


@dataclass
class _Pending(Generic[E]):
    origin: Origin[E]
    user: User
    lang: str
    start: Callable[[], Awaitable[Generation]]


@dataclass
class _Person(Generic[E]):
    pending: _Pending[E] | None = None


@dataclass
class AnswerFlow(Generic[E]):
    services: Services
    surface: Surface[E]
    links: MessageLinks = field(init=False)
    _busy: dict[int, _Person[E]] = field(init=False, default_factory=dict)
    _idle: asyncio.Event = field(init=False, default_factory=asyncio.Event)

    def __post_init__(self) -> None:
        self.links = MessageLinks(self.services.db, self.surface.platform)
        self.services.chat.hold(self.links.held)
        self._idle.set()

    @property
    def platform(self) -> str:
        return self.surface.platform

    def busy(self, user_id: int) -> bool:
        """Whether this process is answering the person now."""
        return user_id in self._busy

    def idle(self) -> bool:
        return not self._busy

    async def wait_idle(self) -> None:
        """Until no answer is in progress here (each delivered its final state)."""
        await self._idle.wait()

    def ref(self, origin: Origin[E]) -> PlatformMessage | None:
        if origin.message_id is None:
            return None
        return PlatformMessage(self.platform, str(origin.chat_id), str(origin.message_id))

    # -- requests -------------------------------------------------------------------

    async def send(
        self,
        origin: Origin[E],
        user: User,
        lang: str,
        text: str,
        *,
        replied_to: int | None = None,
        images: Sequence[str] = (),
        new_conversation: bool = False,
        conversation_id: uuid.UUID | None = None,
        web_search: bool = False,
        attachment: AttachmentUse | None = None,
    ) -> None:
        """A message to the model. `replied_to`: the bot's message the person
        replied to, which picks the branch to continue. `web_search`: this answer
        searches the web (/search). `attachment`: a stored document it comes with
        (core/documents)."""
        reply_row = await self.replied_row(origin.chat_id, replied_to)

        async def start() -> Generation:
            return await self.services.chat.send(
                user.id,
                text,
                reply_to=reply_row,
                images=images,
                platform=self.platform,
                prompt_link=self.ref(origin),
                new_conversation=new_conversation,
                conversation_id=conversation_id,
                web_search=web_search,
                attachment=attachment,
            )

        # A photo is not queued: it holds a download the person can send again.
        await self._generate(origin, user, lang, start, queue_if_busy=not images)

    async def replied_row(self, chat_id: int, replied_to: int | None) -> uuid.UUID | None:
        """The row a reply to the bot's message `replied_to` continues after, if any."""
        if replied_to is None:
            return None
        linked = await self.links.resolve(chat_id, replied_to)
        return await self.links.reply_anchor(linked.row_id) if linked is not None else None

    async def generate(
        self,
        origin: Origin[E],
        user: User,
        lang: str,
        start: Callable[[], Awaitable[Generation]],
        *,
        queue_if_busy: bool,
    ) -> None:
        """Run a generation that `start` begins, under the queue of one (for
        requests that build their own start, such as a transcribed voice note)."""
        await self._generate(origin, user, lang, start, queue_if_busy=queue_if_busy)

    async def edit(self, origin: Origin[E], user: User, lang: str, text: str) -> None:
        """The person edited their message `origin.message_id`: a new revision of it
        and a new answer. A message never answered (a command) changes nothing."""
        if origin.message_id is None:
            return
        linked = await self.links.resolve(origin.chat_id, origin.message_id)
        if linked is None:
            return
        await self.edit_row(origin, user, lang, linked.row_id, text, link=self.ref(origin))

    async def edit_row(
        self,
        origin: Origin[E],
        user: User,
        lang: str,
        row_id: uuid.UUID,
        text: str,
        *,
        link: PlatformMessage | None,
    ) -> None:
        """A new revision of the person's prompt `row_id` with `text`, and a new
        answer below `origin`; `link` (the platform message showing the prompt) then
        shows the new revision."""
        try:
            row = await self.services.conversations.message(user.id, row_id)
        except MessageNotFound:
            return
        if row.role != "user" or row.content == text:
            return  # not a prompt, or an update that left the text as it was (a link preview)

        async def start() -> Generation:
            return await self.services.chat.edit(user.id, row_id, text, prompt_link=link)

        await self._generate(origin, user, lang, start, queue_if_busy=False)

    # -- buttons ----------------------------------------------------------------------

    async def check_button(
        self, user: User, row_id: uuid.UUID | None, chat_id: int, message_id: int
    ) -> ButtonCheck:
        """Whether a button pressed on `message_id` may act on `row_id`: the row is
        the presser's and that message shows it now. Forged data, someone else's
        answer or a button of a message that shows another row change nothing."""
        if row_id is None:
            return ButtonCheck.STALE
        try:
            row = await self.services.conversations.message(user.id, row_id)
        except MessageNotFound:
            return ButtonCheck.NOT_YOURS
        linked = await self.links.resolve(chat_id, message_id)
        if linked is None or linked.row_id != row.id:
            return ButtonCheck.STALE
        return ButtonCheck.OK

    async def stop(self, user: User, row_id: uuid.UUID) -> bool:
        return await self.services.chat.request_stop(user.id, row_id)

    async def regenerate(
        self, origin: Origin[E], user: User, lang: str, row_id: uuid.UUID, ack: Ack
    ) -> None:
        """A new version of the answer, streamed into the messages that show the
        old one. `ack` answers the press first: "" when it goes ahead, else the
        refusal to show the presser."""
        if self.busy(user.id):
            await ack(t(lang, "busy"))
            return
        await ack("")
        parts = [int(m) for m in await self.links.parts(origin.chat_id, row_id)]

        async def start() -> Generation:
            return await self.services.chat.regenerate(user.id, row_id)

        await self._generate(origin, user, lang, start, queue_if_busy=False, existing=parts)

    async def page(
        self, origin: Origin[E], user: User, lang: str, row_id: uuid.UUID, target: int, ack: Ack
    ) -> None:
        """Show version `target` (1-based) of the answer in its messages and make
        its branch the active one; `ack` as for `regenerate`."""
        if self.busy(user.id):
            await ack(t(lang, "busy"))
            return
        try:
            revisions = await self.services.conversations.revisions(user.id, row_id)
            if not 1 <= target <= len(revisions.items):
                await ack(t(lang, "stale_button"))
                return
            await self.services.conversations.switch_revision(user.id, row_id, target)
        except OneAIError as exc:
            await ack(error_text(lang, exc))
            return
        await ack("")
        parts = [int(m) for m in await self.links.parts(origin.chat_id, row_id)]
        row = revisions.items[target - 1]
        # The version shown may answer another revision of a prompt with a document.
        label = await self.services.documents.label_of(row, lang)
        await self.show_final(row, lang, origin.chat_id, parts, label=label)

    # -- generating and streaming ---------------------------------------------------------

    async def _generate(
        self,
        origin: Origin[E],
        user: User,
        lang: str,
        start: Callable[[], Awaitable[Generation]],
        *,
        queue_if_busy: bool,
        existing: list[int] | None = None,
    ) -> None:
        person = self._busy.get(user.id)
        if person is not None:
            if queue_if_busy and person.pending is None:
                person.pending = _Pending(origin, user, lang, start)
                await self.surface.say(origin, t(lang, "queued"))
            else:
                await self.surface.say(origin, t(lang, "busy"))
            return
        person = self._busy[user.id] = _Person()
        self._idle.clear()
        try:
            await self._run(origin, user, lang, start, existing, may_wait=queue_if_busy)
        finally:
            # The queued message is answered even if the one before it failed.
            try:
                while (pending := person.pending) is not None:
                    person.pending = None
                    try:
                        await self._run(
                            pending.origin,
                            pending.user,
                            pending.lang,
                            pending.start,
                            None,
                            may_wait=True,
                        )
                    except Exception:
                        log.exception("answering a queued message failed")
                        await self.surface.say(pending.origin, t(pending.lang, "error.resend"))
            finally:
                del self._busy[user.id]
                if not self._busy:
                    self._idle.set()

    async def _run(
        self,
        origin: Origin[E],
        user: User,
        lang: str,
        start: Callable[[], Awaitable[Generation]],
        existing: list[int] | None,
        *,
        may_wait: bool = False,
    ) -> None:
        generation = await self._started(origin, lang, start, may_wait)
        if generation is None:
            return
        # The prompt and its answer row are committed: a crash from here on is
        # recovered by another process (the answer cut, the person told).
        intake.taken()
        try:
            result = await self._stream(origin, lang, generation, existing)
        except asyncio.CancelledError:
            # The driver showed the final state under a shield before this came
            # through: shown again elsewhere, a cut answer would get a second note.
            if generation.started:
                self._displayed(generation.message_id)
            raise
        finally:
            if not generation.started:  # failed before streaming: the unit goes back now
                await self.services.chat.abandon(generation)
                self._displayed(generation.message_id)  # nothing to show
        if generation.started and (result.delivered or result.abandoned):
            # Else (cancelled, or the final edit never landed) the saved answer stays
            # pending, and another process shows it once this one is gone.
            self._displayed(generation.message_id)
        if result.abandoned:
            log.info("user %s blocked the bot; the answer was dropped", user.id)
            await self.services.accounts.mark_blocked(self.platform, origin.platform_user_id)

    def _displayed(self, message_id: uuid.UUID) -> None:
        """The final state is shown (or can never be: the chat is gone)."""
        self.services.chat.displayed(message_id)

    async def _started(
        self,
        origin: Origin[E],
        lang: str,
        start: Callable[[], Awaitable[Generation]],
        may_wait: bool,
    ) -> Generation | None:
        """The generation `start` begins, or None after telling the person why not.

        The database refuses a second answer in a conversation, whichever process
        streams the first. A message that may queue (`may_wait`) then waits its
        turn here, polling, as it would in the queue of one of the process that
        streams: several processes must answer like one."""
        loop = asyncio.get_running_loop()
        since: float | None = None
        while True:
            try:
                return await start()
            except DuplicateMessage:
                log.info("message %s was answered before", self.ref(origin))
                return None
            except ConversationBusy:
                if not may_wait or (
                    since is not None and loop.time() - since > QUEUE_ELSEWHERE_SECONDS
                ):
                    await self.surface.say(origin, t(lang, "busy"))
                    return None
                if since is None:
                    since = loop.time()
                    await self.surface.say(origin, t(lang, "queued"))
                await asyncio.sleep(QUEUE_POLL_SECONDS)
            except OneAIError as exc:
                await self.surface.say(origin, error_text(lang, exc))
                return None

    async def _stream(
        self,
        origin: Origin[E],
        lang: str,
        generation: Generation,
        existing: list[int] | None,
    ) -> DriverResult[Any]:
        chat_id = origin.chat_id
        answer_id = generation.message_id
        # The person's own message was linked to the prompt row in the same
        # transaction that wrote it. Regenerating streams into the parts that showed
        # the old revision: link them to the new row now, so Stop works meanwhile.
        if existing is not None:
            await self.links.show(chat_id, answer_id, existing)
        linked: list[int] = list(existing or ())

        async def link_parts(ids: list[int]) -> None:
            if ids[:-1] == linked:  # one more part: the earlier links stand
                await self.links.add(chat_id, answer_id, ids[-1], len(ids) - 1)
            else:
                await self.links.show(chat_id, answer_id, ids)
            linked[:] = ids

        controls = newest_controls(answer_id, generation.turn.answer.revision_number)

        async def final() -> Controls:
            return controls

        view = AnswerView(
            lang=lang,
            answer_id=answer_id,
            chat_id=chat_id,
            live=Controls(answer_id, streaming=True),
            final=final,
            note=lambda outcome, text: outcome_note(lang, outcome.status, outcome.error, text),
            existing=existing or (),
            reply_to=origin.message_id if existing is None else None,
            on_new_part=link_parts,
            citations=lambda: generation.citations,
        )
        sink = self.surface.answer_sink(origin, view)
        result: DriverResult[Any] = await self.surface.driver.run(sink, generation)
        if not result.abandoned and sink.message_ids != linked:
            # Parts were reused, replaced or deleted. The answer is shown either
            # way; a failure here only leaves its buttons pointing at old parts.
            try:
                await self.links.show(chat_id, answer_id, sink.message_ids)
            except Exception:
                log.exception("could not link the parts of answer %s", answer_id)
        return result

    async def controls(self, user_id: int, row_id: uuid.UUID) -> Controls:
        return await answer_controls(self.services.conversations, user_id, row_id)

    async def show_final(
        self,
        row: ChatMessage,
        lang: str,
        chat_id: int,
        message_ids: Sequence[int],
        *,
        reply_to: int | None = None,
        label: str | None = None,
    ) -> None:
        """Show a finished row in `message_ids` (or new ones below `reply_to`),
        with its controls and the note on how it ended (after `label`, when
        given); they are then linked to it."""
        outcome = outcome_note(lang, row.status, None, row.content)
        note = "\n".join(part for part in (label, outcome) if part) or None
        shown = await self.surface.show_row(
            chat_id,
            message_ids,
            text=row.content,
            controls=await self.controls(row.user_id, row.id),
            note=note,
            lang=lang,
            reply_to=reply_to,
            citations=from_meta(row.meta),
        )
        await self.links.show(chat_id, row.id, shown)

    # -- answers whose worker was gone -------------------------------------------------------

    async def show_interrupted(self, row_id: uuid.UUID, user_id: int) -> None:
        """Show what became of an answer whose worker stopped. Cut off (it was
        still streaming): where it is shown, its text stays as they saw it (the row
        may hold less: it is saved only now and then while streaming), ⏹ becomes 🔄
        and a note below says it was cut. Saved but not shown yet: its saved final
        state replaces what they saw. If it never showed, a new message below their
        prompt. Delivered from the outbox: `Undeliverable` from the surface gives up."""
        user = await self.services.accounts.get(user_id)
        lang = pick_language(user.language if user is not None else None)
        try:
            row = await self.services.conversations.message(user_id, row_id)
        except MessageNotFound:
            return
        cut = row.status == MessageStatus.INTERRUPTED
        note = outcome_note(lang, row.status, None, row.content) or t(lang, "cut")
        try:
            shown = await self.links.displays(row.id)
            for chat, message_ids in shown:
                parts = [int(m) for m in message_ids]
                if cut:
                    controls = await self.controls(row.user_id, row.id)
                    if await self.surface.mark_cut(int(chat), parts[-1], controls, note, lang):
                        continue
                await self.show_final(row, lang, int(chat), parts)
            if shown or row.parent_message_id is None:
                return
            for chat, prompt_ids in await self.links.displays(row.parent_message_id):
                await self.show_final(row, lang, int(chat), [], reply_to=int(prompt_ids[0]))
        except ShowFailed as exc:
            log.info("could not show the end of answer %s: %s", row.id, exc)
