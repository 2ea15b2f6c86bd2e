"""Web-search sources under a Discord answer: "[1] [Title](<url>)" lines. The
angle brackets keep Discord from unfurling an embed for every source."""

from __future__ import annotations

from collections.abc import Sequence

import discord

from bot.discord.render import DISCORD_LIMIT
from core.llm.citations import Citation

GAP = "\n\n"
# The sources never take more than this of a message, so they always fit one alone.
SOURCES_MAX = DISCORD_LIMIT // 2


def _title(text: str) -> str:
    """A title that cannot close the link early, format the line or ping anyone."""
    text = text.replace("[", "(").replace("]", ")")
    return discord.utils.escape_mentions(discord.utils.escape_markdown(text))


def sources_block(citations: Sequence[Citation]) -> str:
    """The numbered sources as Markdown, "" when there are none."""
    lines: list[str] = []
    size = 0
    for number, citation in enumerate(citations, 1):
        line = f"[{number}] [{_title(citation.title)}](<{citation.url}>)"
        if size + len(line) + 1 > SOURCES_MAX:
            line = f"[{number}] {_title(citation.title)}"  # the title alone, if that fits
            if size + len(line) + 1 > SOURCES_MAX:
                break
        lines.append(line)
        size += len(line) + 1
    return "\n".join(lines)


def with_sources(parts: Sequence[str], citations: Sequence[Citation]) -> list[str]:
    """The answer's parts with its sources below the last one: in the same message
    when they fit, else in a message of their own."""
    block = sources_block(citations)
    if not block:
        return list(parts)
    if not parts:
        return [block]
    merged = parts[-1] + GAP + block
    if len(merged) <= DISCORD_LIMIT:
        return [*parts[:-1], merged]
    return [*parts, block]
