"""Everything that makes the model answer: DMs, OneAI threads and mentions,
edits, `/chat`, `/search`, `/new` and `/image`."""

from __future__ import annotations

import io
import logging
import re
from typing import TYPE_CHECKING, Any

import discord
from discord import app_commands
from discord.ext import commands

from bot.discord.chat import Place
from bot.discord.people import Person, person_of, upsert
from core.admin.banned import banned_note, should_tell_banned
from core.answers import Origin
from core.conversations.errors import ShuttingDown
from core.conversations.turns import make_title
from core.errors import OneAIError
from core.flood import Verdict
from core.i18n import error_text, pick_language, t
from core.tiers import Tier
from core.views.search import search_refusal

if TYPE_CHECKING:
    from bot.discord.client import OneAIBot

log = logging.getLogger(__name__)

# What the prompt echo under `/chat` shows at most (the model gets all of it).
ECHO_CHARS = 1800
THREAD_NAME_CHARS = 100


class ChatCog(commands.Cog):
    def __init__(self, bot: OneAIBot) -> None:
        self.bot = bot
        self.services = bot.services
        self.answers = bot.answers

    # -- messages ------------------------------------------------------------------

    def _mention_free(self, text: str) -> str:
        me = self.bot.user
        if me is None:
            return text
        text = re.sub(rf"<@!?{me.id}>", "", text)
        return " ".join(text.split()) if text.strip() else ""

    @commands.Cog.listener()
    async def on_message(self, message: discord.Message) -> None:
        if message.author.bot or not self.bot.intake:
            return
        if message.type not in (discord.MessageType.default, discord.MessageType.reply):
            return  # joins, pins, thread starters: nothing to answer
        channel = message.channel
        conversation_id = await self.answers.thread_conversation(channel)
        private = isinstance(channel, discord.DMChannel)
        if not private and conversation_id is None:
            me = self.bot.user
            if me is None or me not in message.mentions:
                return  # elsewhere in a server the bot answers only when mentioned
        person = await upsert(self.services, message.author)
        access = self.services.access
        if not person.user.is_banned and not await access.allowed(person.user.id):
            # A private deployment: never to the model, and "this bot is private" once
            # a day is all they hear (not even the flood guard's note).
            if private and await access.should_note("discord", message.author.id):
                await self.answers.surface.say(_origin(message), t(person.lang, "access.private"))
            return
        verdict = await self.bot.flood.check(message.author.id)
        if verdict is not Verdict.PASS:
            if verdict is Verdict.WARN:
                await self.answers.surface.say(_origin(message), t(person.lang, "slow_down"))
            return
        if person.user.is_banned:
            # Never to the model; a note at most once an hour.
            if private and should_tell_banned(person.user.id):
                await self.answers.surface.say(_origin(message), banned_note(person.lang))
            return
        text = message.content if private else self._mention_free(message.content)
        await self.answers.message(message, person, text, conversation_id=conversation_id)

    @commands.Cog.listener()
    async def on_raw_message_edit(self, payload: discord.RawMessageUpdateEvent) -> None:
        """Editing a prompt in a DM or a OneAI thread asks again: a new revision of
        it and a new answer. Updates that keep the text (link previews) do nothing."""
        if not self.bot.intake:
            return
        data: Any = payload.data
        author = data.get("author") or {}
        if author.get("bot") or "content" not in data:
            return
        channel = self.bot.get_channel(payload.channel_id)
        if channel is None:
            try:
                channel = await self.bot.fetch_channel(payload.channel_id)
            except discord.HTTPException:
                return
        private = isinstance(channel, discord.DMChannel)
        if not private and await self.answers.thread_conversation(channel) is None:
            return
        if not isinstance(channel, discord.abc.Messageable) or not author.get("id"):
            return
        user = payload.message.author if payload.message is not None else None
        if user is None:
            return
        person = await upsert(self.services, user)
        if person.user.is_banned or not await self.services.access.allowed(person.user.id):
            return
        text = str(data["content"])
        if not private:
            text = self._mention_free(text)
        await self.answers.edited(channel, payload.channel_id, payload.message_id, person, text)

    # -- slash commands --------------------------------------------------------------

    @app_commands.command(name="chat", description="Ask the model (in a server: in a new thread)")
    @app_commands.describe(prompt="What to ask")
    async def chat(self, interaction: discord.Interaction[Any], prompt: str) -> None:
        person = await self._person(interaction)
        if person is None:
            return
        if not prompt.strip():
            await interaction.response.send_message(t(person.lang, "unsupported"), ephemeral=True)
            return
        await self._ask(interaction, person, prompt, web_search=False)

    @app_commands.command(name="search", description="Ask with a web search")
    @app_commands.describe(question="What to look up")
    async def search(self, interaction: discord.Interaction[Any], question: str) -> None:
        person = await self._person(interaction)
        if person is None:
            return
        refusal = search_refusal(self.services, person.lang, question)
        if refusal is not None:
            await interaction.response.send_message(refusal, ephemeral=True)
            return
        await self._ask(interaction, person, question.strip(), web_search=True)

    async def _ask(
        self,
        interaction: discord.Interaction[Any],
        person: Person,
        prompt: str,
        *,
        web_search: bool,
    ) -> None:
        """The prompt echoed, then answered: in a server channel, in a new thread
        for a new conversation; elsewhere, in the current conversation."""
        channel = interaction.channel
        echo = _echo(interaction.user, prompt)
        conversation_id = await self.answers.thread_conversation(channel)
        if isinstance(channel, discord.TextChannel):
            # A new conversation in a thread of its own, named after it.
            await interaction.response.send_message(echo)
            shown = await interaction.original_response()
            thread = await shown.create_thread(
                name=make_title(prompt)[:THREAD_NAME_CHARS], auto_archive_duration=1440
            )
            await self.answers.chat(
                interaction, thread, person, prompt, new_conversation=True, web_search=web_search
            )
            return
        if channel is None or not isinstance(channel, discord.abc.Messageable):
            await interaction.response.send_message(t(person.lang, "unsupported"), ephemeral=True)
            return
        await interaction.response.send_message(echo)
        await self.answers.chat(
            interaction,
            channel,
            person,
            prompt,
            new_conversation=False,
            conversation_id=conversation_id,
            web_search=web_search,
        )

    @app_commands.command(name="new", description="Start a new conversation")
    async def new(self, interaction: discord.Interaction[Any]) -> None:
        person = await self._person(interaction)
        if person is None:
            return
        await self.services.accounts.set_current_conversation(person.user.id, None)
        await interaction.response.send_message(t(person.lang, "new"), ephemeral=True)

    @app_commands.command(name="image", description="Draw a picture")
    @app_commands.describe(prompt="What to draw")
    async def image(self, interaction: discord.Interaction[Any], prompt: str) -> None:
        person = await self._person(interaction)
        if person is None:
            return
        if not prompt.strip():
            await interaction.response.send_message(t(person.lang, "image.usage"), ephemeral=True)
            return
        await interaction.response.defer(thinking=True)
        try:
            images = await self.services.images.generate(
                person.user.id, Tier(person.user.tier), prompt
            )
        except OneAIError as exc:
            await interaction.followup.send(
                t(person.lang, "image.failed", reason=error_text(person.lang, exc))
            )
            return
        files = [
            discord.File(io.BytesIO(picture), filename=f"image-{index + 1}.png")
            for index, picture in enumerate(images)
        ]
        await interaction.followup.send(prompt[:ECHO_CHARS], files=files)

    async def _person(self, interaction: discord.Interaction[Any]) -> Person | None:
        if not self.bot.intake:
            lang = pick_language(str(interaction.locale))
            await interaction.response.send_message(
                error_text(lang, ShuttingDown()), ephemeral=True
            )
            return None
        return await person_of(self.services, interaction)


def _echo(user: discord.abc.User, prompt: str) -> str:
    shown = prompt if len(prompt) <= ECHO_CHARS else prompt[: ECHO_CHARS - 1] + "…"
    quoted = "\n".join(f"> {line}" for line in shown.splitlines() or [""])
    return f"**{user.display_name}**\n{quoted}"


def _origin(message: discord.Message) -> Origin[Place]:
    return Origin(
        chat_id=message.channel.id,
        platform_user_id=str(message.author.id),
        event=Place(message.channel),
        message_id=message.id,
    )
