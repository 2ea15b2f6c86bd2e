"""Voice notes through the answer flow, the same on every platform.

The note's length is checked against the plan and its seconds reserved before
anything is downloaded; the recording stays in memory. The transcript is shown as
its own reply to the note (with ✏️ Edit) and becomes the prompt's text, so the
message unit is reserved by the normal send only once the transcript exists. The
seconds go back whenever no prompt row comes of the note.

With VOICE_MODE=model a note whose conversation's model listens goes to it as
audio instead: stored once with the prompt (its text is the caption), a short
reply says so, and the answer streams. Its seconds go back with the message unit
whenever the answer is not charged (it failed, or was stopped before a token).
A model that does not listen falls back to transcription where a server is
configured, else gets a polite reply that costs nothing.
"""

from __future__ import annotations

import base64
import logging
import uuid
from collections.abc import Awaitable, Callable
from typing import Generic, Protocol, TypeVar

from core.answers.flow import AnswerFlow, Origin
from core.chat import Generation
from core.conversations.errors import MessageNotFound
from core.conversations.links import PlatformMessage
from core.conversations.turns import AudioUse
from core.db.models import ChatMessage, User
from core.errors import OneAIError
from core.i18n import error_text, t
from core.llm.catalog import ModelInfo
from core.llm.context import AudioClip
from core.tiers import Tier
from core.voice import ModelDoesNotListen, NotAudio, VoiceNote, audio_format

log = logging.getLogger(__name__)

E = TypeVar("E")
EP = TypeVar("EP")

# The transcript message shows this much of the text (the prompt keeps all of it).
SHOWN_CHARS = 1800


def shown_transcript(text: str) -> str:
    """The transcript as its message shows it, before the platform's quoting."""
    return text if len(text) <= SHOWN_CHARS else text[: SHOWN_CHARS - 1].rstrip() + "…"


class TranscriptSurface(Protocol[EP]):
    async def say(self, origin: Origin[EP], text: str) -> None: ...

    async def show_transcript(self, origin: Origin[EP], text: str, lang: str) -> int | None:
        """Post the quoted transcript as a reply to the note, with ✏️ Edit; its id."""
        ...

    async def update_transcript(self, chat_id: int, message_id: int, text: str, lang: str) -> None:
        """Show corrected text in the transcript message."""
        ...

    async def show_heard(self, origin: Origin[EP], text: str) -> int | None:
        """Post `text` as a reply to the note (it went to the model as audio); its id."""
        ...


class VoiceFlow(Generic[E]):
    def __init__(self, flow: AnswerFlow[E], surface: TranscriptSurface[E]) -> None:
        self.flow = flow
        self.surface = surface
        self.services = flow.services

    async def note(
        self,
        origin: Origin[E],
        user: User,
        lang: str,
        note: VoiceNote,
        fetch: Callable[[], Awaitable[bytes | None]],
        *,
        replied_to: int | None = None,
        caption: str = "",
    ) -> None:
        """A voice note to the model. `fetch` downloads it (None when it cannot).
        `caption`: the text sent with it (used when it goes to the model as audio)."""
        voice = self.services.voice
        if self.flow.busy(user.id):
            # Not queued, like a photo: it is checked and paid for when it is taken.
            await self.surface.say(origin, t(lang, "busy"))
            return
        if voice.mode == "model":
            model = await self._model_for(user, origin.chat_id, replied_to)
            fmt = audio_format(note.mime_type, note.filename)
            if model.audio and fmt is not None:
                await self._to_model(origin, user, lang, note, fetch, fmt, caption, replied_to)
                return
            if not voice.transcribes:
                refusal = NotAudio() if model.audio else ModelDoesNotListen(model.name)
                await self.surface.say(origin, error_text(lang, refusal))
                return
        try:
            hold, text = await voice.take(user.id, Tier(user.tier), note, fetch)
        except OneAIError as exc:
            await self.surface.say(origin, error_text(lang, exc))
            return

        written = False
        try:
            try:
                shown = await self.surface.show_transcript(origin, text, lang)
            except Exception:
                log.warning("could not show the transcript", exc_info=True)
                shown = None
            reply_row = await self.flow.replied_row(origin.chat_id, replied_to)

            async def start() -> Generation:
                nonlocal written
                generation = await self.services.chat.send(
                    user.id,
                    text,
                    reply_to=reply_row,
                    platform=self.flow.platform,
                    prompt_link=self.flow.ref(origin),
                )
                written = True
                if shown is not None:
                    await self._link(origin.chat_id, generation.turn.prompt.id, shown)
                return generation

            await self.flow.generate(origin, user, lang, start, queue_if_busy=False)
        finally:
            if not written:  # refused (busy, quota, too long): the note costs nothing
                await voice.give_back(hold)

    async def _model_for(self, user: User, chat_id: int, replied_to: int | None) -> ModelInfo:
        """The model the note would go to: the conversation of the answer it replies
        to, else the person's current one."""
        catalog = self.services.catalog
        row_id = await self.flow.replied_row(chat_id, replied_to)
        if row_id is not None:
            try:
                row = await self.services.conversations.message(user.id, row_id)
                conversation = await self.services.conversations.get(user.id, row.conversation_id)
            except OneAIError:
                pass
            else:
                return catalog.preferred(conversation.model_id)
        return catalog.preferred(await self.services.current_model_id(user))

    async def _to_model(
        self,
        origin: Origin[E],
        user: User,
        lang: str,
        note: VoiceNote,
        fetch: Callable[[], Awaitable[bytes | None]],
        fmt: str,
        caption: str,
        replied_to: int | None,
    ) -> None:
        """The note as an `input_audio` part: its seconds reserved, downloaded, stored
        with the prompt and answered. Its seconds go back unless the answer is charged."""
        voice = self.services.voice
        try:
            hold = await voice.reserve(user.id, Tier(user.tier), note, transcribing=False)
            data = await voice.download(hold, note, fetch)
        except OneAIError as exc:
            await self.surface.say(origin, error_text(lang, exc))
            return
        audio = AudioUse(
            note.filename,
            note.mime_type,
            len(data),
            AudioClip(base64.b64encode(data).decode("ascii"), fmt, hold.seconds),
        )
        del data
        started: list[Generation] = []
        try:
            reply_row = await self.flow.replied_row(origin.chat_id, replied_to)

            async def start() -> Generation:
                generation = await self.services.chat.send(
                    user.id,
                    caption,
                    reply_to=reply_row,
                    platform=self.flow.platform,
                    prompt_link=self.flow.ref(origin),
                    audio=audio,
                )
                started.append(generation)
                name = generation.turn.model.name
                try:
                    heard = await self.surface.show_heard(
                        origin, t(lang, "voice.to_model", model=name)
                    )
                except Exception:
                    log.warning("could not say the note went to the model", exc_info=True)
                    heard = None
                if heard is not None:
                    await self._link(origin.chat_id, generation.turn.prompt.id, heard)
                return generation

            await self.flow.generate(origin, user, lang, start, queue_if_busy=False)
        finally:
            # Refused, failed or stopped before its first token: the unit went back,
            # and so do the seconds.
            result = started[0].result if started else None
            if result is None or not result.charged:
                await voice.give_back(hold)

    async def caption_edited(self, origin: Origin[E], user: User, lang: str, caption: str) -> None:
        """The person edited the caption of their note `origin.message_id`. A note
        sent as audio gets a new revision of its prompt (the same recording, the new
        caption) and a new answer; a transcribed note's text is its transcript,
        changed through ✏️ only."""
        if origin.message_id is None:
            return
        linked = await self.flow.links.resolve(origin.chat_id, origin.message_id)
        if linked is None:
            return
        try:
            row = await self.services.conversations.message(user.id, linked.row_id)
        except MessageNotFound:
            return
        if row.role != "user" or row.attachment_id is None:
            return
        await self.flow.edit_row(origin, user, lang, row.id, caption, link=self.flow.ref(origin))

    async def _link(self, chat_id: int, row_id: uuid.UUID, message_id: int) -> None:
        """The transcript message shows the prompt too: its ✏️ and a reply to it
        address that row."""
        try:
            await self.flow.links.add(chat_id, row_id, message_id, 1)
        except Exception:
            log.warning("could not link transcript %s", message_id, exc_info=True)

    async def transcript_row(self, user: User, chat_id: int, message_id: int) -> ChatMessage | None:
        """The prompt a transcript message shows, if it is the presser's."""
        linked = await self.flow.links.resolve(chat_id, message_id)
        if linked is None:
            return None
        try:
            row = await self.services.conversations.message(user.id, linked.row_id)
        except MessageNotFound:
            return None
        return row if row.role == "user" else None

    async def correct(
        self,
        origin: Origin[E],
        user: User,
        lang: str,
        row_id: uuid.UUID,
        transcript: tuple[int, int],
        text: str,
    ) -> None:
        """The person's corrected transcript: a user_edit revision of the prompt and
        a new answer, as for an edited text message; the transcript message then
        shows the correction."""
        if not text.strip():
            await self.surface.say(origin, t(lang, "voice.edit_empty"))
            return
        chat_id, message_id = transcript
        ref = PlatformMessage(self.flow.platform, str(chat_id), str(message_id))
        await self.flow.edit_row(origin, user, lang, row_id, text, link=ref)
        row = await self.transcript_row(user, chat_id, message_id)
        if row is not None and row.id != row_id:
            try:
                await self.surface.update_transcript(chat_id, message_id, row.content, lang)
            except Exception:
                log.warning("could not update transcript %s", message_id, exc_info=True)
