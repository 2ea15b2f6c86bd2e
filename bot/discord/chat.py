"""Discord's side of the answer flow (`core.answers`): messages, edits, `/chat` and
button presses in; sinks, buttons and notices out."""

from __future__ import annotations

import base64
import logging
import uuid
from collections.abc import Awaitable, Callable, Sequence
from dataclasses import dataclass
from typing import Any, TypeVar

import discord

from bot.discord.buttons import answer_view, document_offer_view
from bot.discord.people import Person, person_of
from bot.discord.sink import DiscordSink, translate
from bot.discord.voice import TranscriptModal, transcript_markdown, transcript_view
from core.answers import AnswerFlow, ButtonCheck, Controls, Origin
from core.answers.flow import AnswerView, ShowFailed
from core.answers.voice import VoiceFlow
from core.documents.flow import DocumentFlow
from core.i18n import t
from core.llm.citations import Citation
from core.outbox import Undeliverable
from core.services import Services
from core.streaming import ChatUnavailable, RetryLater, StreamDriver, show_text
from core.views.models import model_at
from core.voice import VoiceNote

log = logging.getLogger(__name__)

T = TypeVar("T")

# Attachments sent to vision models: Discord's own image types, within this size.
IMAGE_TYPES = ("image/png", "image/jpeg", "image/webp", "image/gif")
IMAGE_MAX_BYTES = 8 * 1024 * 1024
# A short notice gives up after this many 429s in a row.
NOTICE_ATTEMPTS = 5
# The largest recording fetched from Discord's CDN (its upload limit).
AUDIO_MAX_BYTES = 25 * 1024 * 1024


def is_audio(attachment: discord.Attachment) -> bool:
    """A voice message (IS_VOICE_MESSAGE: duration and waveform) or an audio file."""
    return attachment.is_voice_message() or (attachment.content_type or "").startswith("audio/")


@dataclass(frozen=True)
class Place:
    """Where an answer goes: the channel (a DM, a thread, a server channel) and
    the interaction that asked, if any (a refusal then goes to its presser only)."""

    channel: discord.abc.Messageable
    interaction: discord.Interaction[Any] | None = None


class DiscordSurface:
    platform = "discord"

    def __init__(self, client: discord.Client, services: Services, driver: StreamDriver) -> None:
        self.client = client
        self.services = services
        self.driver = driver
        self.edit_interval = services.settings.discord.edit_interval

    async def in_turn(self, channel_id: int, call: Callable[[], Awaitable[T]]) -> T:
        """One call to a channel outside a stream, in the channel's turn (so it
        neither meets nor causes a rate limit), waiting out a 429."""
        refused = 0
        while True:
            async with self.driver.chats.turn(("discord", channel_id)) as gate:
                await self.driver.limiter.acquire()
                try:
                    result = await call()
                except discord.HTTPException as exc:
                    error = translate(exc)
                    if not isinstance(error, RetryLater):
                        raise
                    gate.hold(error.retry_after)
                    refused += 1
                    if refused == NOTICE_ATTEMPTS:
                        raise
                    continue
                gate.hold(self.edit_interval)
                return result

    async def say(self, origin: Origin[Place], text: str) -> None:
        interaction = origin.event.interaction
        if interaction is not None:
            try:
                if interaction.response.is_done():
                    await interaction.followup.send(text, ephemeral=True)
                else:
                    await interaction.response.send_message(text, ephemeral=True)
                return
            except discord.HTTPException as exc:
                # The interaction's token lasts 15 minutes (a queued message may
                # come later): the channel gets the notice instead.
                log.info("interaction reply failed (%s); writing to the channel", exc)
        try:
            reference = None
            if origin.message_id is not None:
                reference = discord.MessageReference(
                    message_id=origin.message_id,
                    channel_id=origin.chat_id,
                    fail_if_not_exists=False,
                )
            channel = origin.event.channel
            await self.in_turn(
                origin.chat_id,
                lambda: channel.send(text, reference=reference),  # type: ignore[arg-type]
            )
        except discord.HTTPException as exc:
            if isinstance(translate(exc), ChatUnavailable) and origin.platform_user_id:
                await self.services.accounts.mark_blocked("discord", origin.platform_user_id)
            log.warning("could not answer in channel %s: %s", origin.chat_id, exc)

    def answer_sink(self, origin: Origin[Place], view: AnswerView) -> DiscordSink:
        lang = view.lang

        async def final_view() -> discord.ui.View | None:
            return answer_view(lang, await view.final())

        return DiscordSink(
            origin.event.channel,
            origin.chat_id,
            min_interval=self.edit_interval,
            streaming_view=lambda: answer_view(lang, view.live),
            final_view=final_view,
            existing=view.existing,
            reply_to=view.reply_to,
            note=view.note,
            on_new_part=view.on_new_part,
            citations=view.citations,
        )

    async def _channel(self, channel_id: int) -> discord.abc.Messageable:
        channel = self.client.get_channel(channel_id)
        if channel is None:
            channel = await self.client.fetch_channel(channel_id)
        assert isinstance(channel, discord.abc.Messageable)
        return channel

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
        async def final_view() -> discord.ui.View | None:
            return answer_view(lang, controls)

        try:
            sink = DiscordSink(
                await self._channel(chat_id),
                chat_id,
                min_interval=self.edit_interval,
                existing=message_ids,
                reply_to=reply_to,
                final_view=final_view,
                note=lambda _outcome, _text: note,
                citations=lambda: citations,
            )
            await show_text(sink, text, chats=self.driver.chats, limiter=self.driver.limiter)
        except ChatUnavailable:
            raise Undeliverable("the channel cannot be written to") from None
        except discord.HTTPException as exc:
            raise ShowFailed(str(exc)) from None
        return sink.message_ids

    async def mark_cut(
        self, chat_id: int, message_id: int, controls: Controls, note: str, lang: str
    ) -> bool:
        try:
            channel = await self._channel(chat_id)
            message = channel.get_partial_message(message_id)  # type: ignore[attr-defined]
            try:
                await self.in_turn(chat_id, lambda: message.edit(view=answer_view(lang, controls)))
            except discord.NotFound:
                return False
            reference = discord.MessageReference(
                message_id=message_id, channel_id=chat_id, fail_if_not_exists=False
            )
            await self.in_turn(chat_id, lambda: channel.send(f"-# {note}", reference=reference))
        except discord.HTTPException as exc:
            if isinstance(translate(exc), ChatUnavailable):
                raise Undeliverable(str(exc)) from None
            raise ShowFailed(str(exc)) from None
        return True

    async def show_transcript(self, origin: Origin[Place], text: str, lang: str) -> int | None:
        reference = _reply_reference(origin)
        channel = origin.event.channel
        sent = await self.in_turn(
            origin.chat_id,
            lambda: channel.send(
                transcript_markdown(text),
                reference=reference,  # type: ignore[arg-type]
                view=transcript_view(lang),
            ),
        )
        return sent.id

    async def show_heard(self, origin: Origin[Place], text: str) -> int | None:
        reference = _reply_reference(origin)
        channel = origin.event.channel
        sent = await self.in_turn(
            origin.chat_id,
            lambda: channel.send(text, reference=reference),  # type: ignore[arg-type]
        )
        return sent.id

    async def update_transcript(self, chat_id: int, message_id: int, text: str, lang: str) -> None:
        channel = await self._channel(chat_id)
        message = channel.get_partial_message(message_id)  # type: ignore[attr-defined]
        await self.in_turn(
            chat_id,
            lambda: message.edit(content=transcript_markdown(text), view=transcript_view(lang)),
        )


class DiscordAnswers:
    """Discord events in, flow calls out."""

    def __init__(self, client: discord.Client, services: Services, driver: StreamDriver) -> None:
        self.client = client
        self.services = services
        self.surface = DiscordSurface(client, services, driver)
        self.flow: AnswerFlow[Place] = AnswerFlow(services, self.surface)
        self.voice: VoiceFlow[Place] = VoiceFlow(self.flow, self.surface)
        self.documents: DocumentFlow[Place] = DocumentFlow(self.flow)

    async def thread_conversation(self, channel: Any) -> uuid.UUID | None:
        """The conversation a OneAI thread belongs to; None for any other channel."""
        if not isinstance(channel, discord.Thread):
            return None
        return await self.flow.links.chat_conversation(channel.id)

    # -- messages ------------------------------------------------------------------

    async def message(
        self,
        message: discord.Message,
        person: Person,
        text: str,
        *,
        conversation_id: uuid.UUID | None = None,
    ) -> None:
        origin = Origin(
            chat_id=message.channel.id,
            platform_user_id=str(message.author.id),
            event=Place(message.channel),
            message_id=message.id,
        )
        replied_to = None
        reference = message.reference
        if reference is not None and reference.message_id is not None:
            resolved = reference.resolved
            if isinstance(resolved, discord.Message) and resolved.author.id == self._me():
                replied_to = reference.message_id
        if len(message.attachments) == 1 and is_audio(message.attachments[0]):
            await self._voice(origin, person, message.attachments[0], replied_to, text)
            return
        documents = [a for a in message.attachments if a.content_type not in IMAGE_TYPES]
        if documents:
            if len(message.attachments) > 1:
                await self.surface.say(origin, t(person.lang, "document.one"))
                return
            await self._document(origin, person, documents[0], text)
            return
        images: list[str] = []
        for attachment in message.attachments:
            image = await self._image(origin, person, attachment)
            if image is None:
                return
            images.append(image)
        if not text.strip() and not images:
            await self.surface.say(origin, t(person.lang, "unsupported"))
            return
        await self.flow.send(
            origin,
            person.user,
            person.lang,
            text,
            replied_to=replied_to,
            images=images,
            conversation_id=conversation_id,
        )

    async def _voice(
        self,
        origin: Origin[Place],
        person: Person,
        attachment: discord.Attachment,
        replied_to: int | None,
        caption: str = "",
    ) -> None:
        """A voice message or an audio file: transcribed (or, with VOICE_MODE=model,
        sent as audio), then answered."""
        note = VoiceNote(
            attachment.duration,
            attachment.size,
            AUDIO_MAX_BYTES,
            attachment.filename,
            attachment.content_type or "audio/ogg",
        )

        async def fetch() -> bytes | None:
            try:
                return await attachment.read()  # in memory, never to disk
            except (discord.HTTPException, OSError) as exc:
                log.info("attachment %s could not be fetched: %s", attachment.id, exc)
                return None

        await self.voice.note(
            origin,
            person.user,
            person.lang,
            note,
            fetch,
            replied_to=replied_to,
            caption=caption,
        )

    async def pressed_transcript_edit(self, interaction: discord.Interaction[Any]) -> None:
        """✏️ under a transcript: the modal with the transcript to correct."""
        person = await person_of(self.services, interaction)
        if person is None:
            return
        message = interaction.message
        row = (
            await self.voice.transcript_row(person.user, message.channel.id, message.id)
            if message is not None
            else None
        )
        if message is None or row is None:
            await interaction.response.send_message(t(person.lang, "stale_button"), ephemeral=True)
            return
        modal = TranscriptModal(person.lang, row.id, (message.channel.id, message.id), row.content)
        await interaction.response.send_modal(modal)

    async def submitted_transcript(
        self,
        interaction: discord.Interaction[Any],
        row_id: uuid.UUID,
        transcript: tuple[int, int],
        text: str,
    ) -> None:
        """The corrected transcript: a new revision of the prompt and a new answer."""
        person = await person_of(self.services, interaction)
        channel = interaction.channel
        if person is None:
            return
        if channel is None or not isinstance(channel, discord.abc.Messageable):
            await interaction.response.send_message(t(person.lang, "stale_button"), ephemeral=True)
            return
        await interaction.response.defer()
        origin = Origin(
            chat_id=transcript[0],
            platform_user_id=person.platform_user_id,
            event=Place(channel, interaction),
            message_id=transcript[1],  # the new answer replies to the transcript
        )
        await self.voice.correct(origin, person.user, person.lang, row_id, transcript, text)

    async def _document(
        self, origin: Origin[Place], person: Person, attachment: discord.Attachment, text: str
    ) -> None:
        offer = await self.documents.receive(
            origin,
            person.user,
            person.lang,
            name=attachment.filename,
            declared_mime=attachment.content_type,
            size=attachment.size,
            download=attachment.read,
            caption=text,
        )
        if offer is None:
            return
        channel = origin.event.channel
        reference = discord.MessageReference(
            message_id=origin.message_id or 0, channel_id=origin.chat_id, fail_if_not_exists=False
        )
        view = document_offer_view(offer)
        try:
            await self.surface.in_turn(
                origin.chat_id,
                lambda: channel.send(offer.text, view=view, reference=reference),  # type: ignore[arg-type]
            )
        except discord.HTTPException as exc:
            log.warning("could not show a document offer in %s: %s", origin.chat_id, exc)

    def _me(self) -> int:
        return self.client.user.id if self.client.user is not None else 0

    async def _image(
        self, origin: Origin[Place], person: Person, attachment: discord.Attachment
    ) -> str | None:
        model_id = await self.services.current_model_id(person.user)
        model = self.services.catalog.get(model_id) or self.services.catalog.default
        if not model.vision:
            await self.surface.say(origin, t(person.lang, "no_vision", model=model.name))
            return None
        if attachment.size > IMAGE_MAX_BYTES:
            await self.surface.say(origin, t(person.lang, "photo_unavailable"))
            return None
        try:
            data = await attachment.read()
        except (discord.HTTPException, OSError) as exc:
            log.info("attachment %s could not be fetched: %s", attachment.id, exc)
            await self.surface.say(origin, t(person.lang, "photo_unavailable"))
            return None
        kind = attachment.content_type or "image/png"
        return f"data:{kind};base64," + base64.b64encode(data).decode()

    async def edited(
        self,
        channel: discord.abc.Messageable,
        channel_id: int,
        message_id: int,
        person: Person,
        text: str,
    ) -> None:
        origin = Origin(
            chat_id=channel_id,
            platform_user_id=person.platform_user_id,
            event=Place(channel),
            message_id=message_id,
        )
        await self.flow.edit(origin, person.user, person.lang, text)

    async def chat(
        self,
        interaction: discord.Interaction[Any],
        channel: discord.abc.Messageable,
        person: Person,
        prompt: str,
        *,
        new_conversation: bool,
        conversation_id: uuid.UUID | None = None,
        web_search: bool = False,
    ) -> None:
        """`/chat` (and `/search`, with `web_search`): the interaction was answered
        (the prompt shown); the answer goes into `channel` as channel messages."""
        assert interaction.channel_id is not None
        origin = Origin(
            chat_id=getattr(channel, "id", interaction.channel_id),
            platform_user_id=person.platform_user_id,
            event=Place(channel, interaction),
        )
        await self.flow.send(
            origin,
            person.user,
            person.lang,
            prompt,
            new_conversation=new_conversation,
            conversation_id=conversation_id,
            web_search=web_search,
        )

    # -- buttons -------------------------------------------------------------------

    async def _pressed(
        self, interaction: discord.Interaction[Any], row_id: uuid.UUID
    ) -> tuple[Origin[Place], Person] | None:
        person = await person_of(self.services, interaction)
        if person is None:
            return None
        message = interaction.message
        channel = interaction.channel
        if message is None or channel is None or not isinstance(channel, discord.abc.Messageable):
            await interaction.response.send_message(t(person.lang, "stale_button"), ephemeral=True)
            return None
        check = await self.flow.check_button(person.user, row_id, message.channel.id, message.id)
        if check is not ButtonCheck.OK:
            await interaction.response.send_message(t(person.lang, check.value), ephemeral=True)
            return None
        origin = Origin(
            chat_id=message.channel.id,
            platform_user_id=person.platform_user_id,
            event=Place(channel, interaction),
            message_id=message.id,
        )
        return origin, person

    @staticmethod
    def _ack(interaction: discord.Interaction[Any]) -> Callable[[str], Awaitable[None]]:
        async def ack(refusal: str) -> None:
            if refusal:
                await interaction.response.send_message(refusal, ephemeral=True)
            else:
                await interaction.response.defer()

        return ack

    async def pressed_stop(self, interaction: discord.Interaction[Any], row_id: uuid.UUID) -> None:
        pressed = await self._pressed(interaction, row_id)
        if pressed is None:
            return
        _, person = pressed
        await interaction.response.defer()
        await self.flow.stop(person.user, row_id)

    async def pressed_regenerate(
        self, interaction: discord.Interaction[Any], row_id: uuid.UUID
    ) -> None:
        pressed = await self._pressed(interaction, row_id)
        if pressed is None:
            return
        origin, person = pressed
        await self.flow.regenerate(origin, person.user, person.lang, row_id, self._ack(interaction))

    async def pressed_page(
        self, interaction: discord.Interaction[Any], row_id: uuid.UUID, rev: int
    ) -> None:
        pressed = await self._pressed(interaction, row_id)
        if pressed is None:
            return
        origin, person = pressed
        await self.flow.page(origin, person.user, person.lang, row_id, rev, self._ack(interaction))

    async def pressed_document(
        self, interaction: discord.Interaction[Any], attachment_id: uuid.UUID, model: int | None
    ) -> None:
        """A button of the offer under a document too large for the model; the
        document is checked to be the presser's by the core flow."""
        person = await person_of(self.services, interaction)
        if person is None:
            return
        message = interaction.message
        channel = interaction.channel
        if message is None or channel is None or not isinstance(channel, discord.abc.Messageable):
            await interaction.response.send_message(t(person.lang, "stale_button"), ephemeral=True)
            return
        # The answer replies to (and is linked with) the person's document message.
        reference = message.reference
        origin = Origin(
            chat_id=message.channel.id,
            platform_user_id=person.platform_user_id,
            event=Place(channel),
            message_id=reference.message_id if reference is not None else None,
        )

        async def ack(refusal: str) -> None:
            if refusal:
                await interaction.response.send_message(refusal, ephemeral=True)
            else:  # one way on is taken: the offer's buttons go
                await interaction.response.edit_message(view=None)

        if model is None:
            await self.documents.use_first_part(
                origin, person.user, person.lang, attachment_id, ack
            )
            return
        chosen = model_at(self.services.catalog, model)
        if chosen is None:
            await interaction.response.send_message(t(person.lang, "stale_button"), ephemeral=True)
            return
        await self.documents.use_model(
            origin, person.user, person.lang, attachment_id, chosen.id, ack
        )


def _reply_reference(origin: Origin[Place]) -> discord.MessageReference | None:
    """A reply to the person's message, if there is one (and if it is still there)."""
    if origin.message_id is None:
        return None
    return discord.MessageReference(
        message_id=origin.message_id, channel_id=origin.chat_id, fail_if_not_exists=False
    )
