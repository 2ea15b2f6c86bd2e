"""The buttons under answers (⏹ Stop, 🔄 Regenerate, ◀ n/m ▶) as persistent
dynamic items: the custom id carries the answer's row id, so a press works
after a restart. Every press is checked against the presser by the core flow."""

from __future__ import annotations

import re
import uuid
from typing import TYPE_CHECKING, Any, Self

import discord

from core.answers import Controls
from core.documents.flow import Offer as DocumentOffer
from core.i18n import t

if TYPE_CHECKING:
    from bot.discord.chat import DiscordAnswers

PREFIX = "oneai"
_HEX = r"(?P<row>[0-9a-f]{32})"


def _answers(interaction: discord.Interaction[Any]) -> DiscordAnswers:
    return interaction.client.answers  # type: ignore[no-any-return]


def _row(match: re.Match[str]) -> uuid.UUID:
    return uuid.UUID(hex=match["row"])


class _RowButton(discord.ui.DynamicItem[discord.ui.Button[Any]], template=rf"{PREFIX}:-"):
    """A button whose custom id is `oneai:<op>:<row hex>`; subclasses give the op,
    their template and what a press does."""

    op = "-"

    def __init__(self, row_id: uuid.UUID, label: str = "") -> None:
        self.row_id = row_id
        super().__init__(
            discord.ui.Button(
                label=label or self.op,
                style=discord.ButtonStyle.secondary,
                custom_id=f"{PREFIX}:{self.op}:{row_id.hex}",
            )
        )

    @classmethod
    async def from_custom_id(
        cls,
        interaction: discord.Interaction[Any],
        item: discord.ui.Item[Any],
        match: re.Match[str],
        /,
    ) -> Self:
        return cls(_row(match))


class StopButton(_RowButton, template=rf"{PREFIX}:s:{_HEX}"):
    op = "s"

    async def callback(self, interaction: discord.Interaction[Any]) -> None:
        await _answers(interaction).pressed_stop(interaction, self.row_id)


class RegenerateButton(_RowButton, template=rf"{PREFIX}:r:{_HEX}"):
    op = "r"

    async def callback(self, interaction: discord.Interaction[Any]) -> None:
        await _answers(interaction).pressed_regenerate(interaction, self.row_id)


class PageButton(
    discord.ui.DynamicItem[discord.ui.Button[Any]],
    # `slot` keeps ids unique in one message: ◀ and ▶ lead to the same version
    # when there are two.
    template=rf"{PREFIX}:p:{_HEX}:(?P<rev>[0-9]{{1,4}}):(?P<slot>[pnc])",
):
    def __init__(self, row_id: uuid.UUID, rev: int, slot: str, label: str) -> None:
        self.row_id = row_id
        self.rev = rev
        super().__init__(
            discord.ui.Button(
                label=label,
                style=discord.ButtonStyle.secondary,
                custom_id=f"{PREFIX}:p:{row_id.hex}:{rev}:{slot}",
                disabled=slot == "c",
            )
        )

    @classmethod
    async def from_custom_id(
        cls,
        interaction: discord.Interaction[Any],
        item: discord.ui.Item[Any],
        match: re.Match[str],
        /,
    ) -> PageButton:
        return cls(_row(match), int(match["rev"]), match["slot"], getattr(item, "label", "") or "")

    async def callback(self, interaction: discord.Interaction[Any]) -> None:
        await _answers(interaction).pressed_page(interaction, self.row_id, self.rev)


class DocumentFirstPartButton(_RowButton, template=rf"{PREFIX}:df:{_HEX}"):
    """Under the offer for a document too large for the model: answer from the
    part that fits. The row is the attachment's."""

    op = "df"

    async def callback(self, interaction: discord.Interaction[Any]) -> None:
        await _answers(interaction).pressed_document(interaction, self.row_id, None)


class DocumentModelButton(
    discord.ui.DynamicItem[discord.ui.Button[Any]],
    template=rf"{PREFIX}:dm:{_HEX}:(?P<model>[0-9]{{1,4}})",
):
    """Switch to the model at catalog position `model` and ask again, whole."""

    def __init__(self, row_id: uuid.UUID, model: int, label: str = "") -> None:
        self.row_id = row_id
        self.model = model
        super().__init__(
            discord.ui.Button(
                label=label or "model",
                style=discord.ButtonStyle.secondary,
                custom_id=f"{PREFIX}:dm:{row_id.hex}:{model}",
            )
        )

    @classmethod
    async def from_custom_id(
        cls,
        interaction: discord.Interaction[Any],
        item: discord.ui.Item[Any],
        match: re.Match[str],
        /,
    ) -> DocumentModelButton:
        return cls(_row(match), int(match["model"]), getattr(item, "label", "") or "")

    async def callback(self, interaction: discord.Interaction[Any]) -> None:
        await _answers(interaction).pressed_document(interaction, self.row_id, self.model)


DYNAMIC_ITEMS: tuple[type[discord.ui.DynamicItem[Any]], ...] = (
    StopButton,
    RegenerateButton,
    PageButton,
    DocumentFirstPartButton,
    DocumentModelButton,
)


def document_offer_view(offer: DocumentOffer) -> discord.ui.View | None:
    """The two ways on for a document too large for the model."""
    view = discord.ui.View(timeout=None)
    if offer.first_part is not None:
        view.add_item(DocumentFirstPartButton(offer.attachment_id, offer.first_part))
    if offer.bigger_label is not None and offer.bigger_index is not None:
        view.add_item(
            DocumentModelButton(offer.attachment_id, offer.bigger_index, offer.bigger_label)
        )
    return view if view.children else None


def answer_view(lang: str, controls: Controls) -> discord.ui.View:
    """What the flow's controls look like under a Discord message."""
    view = discord.ui.View(timeout=None)
    row_id = controls.row_id
    if controls.streaming:
        view.add_item(StopButton(row_id, t(lang, "stop")))
        return view
    if controls.paged:
        view.add_item(PageButton(row_id, controls.previous, "p", "◀"))
        view.add_item(PageButton(row_id, controls.index, "c", f"{controls.index}/{controls.count}"))
        view.add_item(PageButton(row_id, controls.following, "n", "▶"))
    view.add_item(RegenerateButton(row_id, t(lang, "regenerate")))
    return view
