"""A voice message's transcript on Discord: how it looks, its ✏️ Edit button (a
persistent dynamic item) and the modal that takes the corrected text."""

from __future__ import annotations

import re
import uuid
from typing import TYPE_CHECKING, Any, Self

import discord

from core.answers.voice import shown_transcript
from core.i18n import t

if TYPE_CHECKING:
    from bot.discord.chat import DiscordAnswers

EDIT_ID = "oneai:v:e"
# What a modal's text input takes at most.
INPUT_MAX = 4000


def transcript_markdown(text: str) -> str:
    return f"🎤 *{discord.utils.escape_markdown(shown_transcript(text))}*"


def _answers(interaction: discord.Interaction[Any]) -> DiscordAnswers:
    return interaction.client.answers  # type: ignore[no-any-return]


class TranscriptEditButton(discord.ui.DynamicItem[discord.ui.Button[Any]], template=EDIT_ID):
    """✏️ under a transcript. It carries no row: the transcript message is linked
    to its prompt row, which is checked against the presser."""

    def __init__(self, label: str = "✏️") -> None:
        super().__init__(
            discord.ui.Button(label=label, style=discord.ButtonStyle.secondary, custom_id=EDIT_ID)
        )

    @classmethod
    async def from_custom_id(
        cls,
        interaction: discord.Interaction[Any],
        item: discord.ui.Item[Any],
        match: re.Match[str],
        /,
    ) -> Self:
        return cls(getattr(item, "label", "") or "✏️")

    async def callback(self, interaction: discord.Interaction[Any]) -> None:
        await _answers(interaction).pressed_transcript_edit(interaction)


def transcript_view(lang: str) -> discord.ui.View:
    view = discord.ui.View(timeout=None)
    view.add_item(TranscriptEditButton(t(lang, "voice.edit")))
    return view


class TranscriptModal(discord.ui.Modal):
    """The transcript, prefilled, to correct."""

    def __init__(
        self, lang: str, row_id: uuid.UUID, transcript: tuple[int, int], text: str
    ) -> None:
        super().__init__(title=t(lang, "voice.edit_title"), timeout=900)
        self.row_id = row_id
        self.transcript = transcript
        self.text: discord.ui.TextInput[TranscriptModal] = discord.ui.TextInput(
            label=t(lang, "voice.edit_label"),
            style=discord.TextStyle.paragraph,
            default=text[:INPUT_MAX],
            max_length=INPUT_MAX,
        )
        self.add_item(self.text)

    async def on_submit(self, interaction: discord.Interaction[Any]) -> None:
        await _answers(interaction).submitted_transcript(
            interaction, self.row_id, self.transcript, self.text.value
        )
