"""Web-search sources under a Telegram answer: "[1] Title" lines, each title a
text_link to its page. Only URLs Telegram accepts become links (it refuses the
whole message for one bad entity URL); any other source shows its title alone."""

from __future__ import annotations

from collections.abc import Sequence

from aiogram.types import MessageEntity

from bot.telegram.render import TELEGRAM_LIMIT, Part, telegram_link, utf16_len
from core.llm.citations import Citation

GAP = "\n\n"
# The sources never take more than this of a message, so they always fit one alone.
SOURCES_MAX = TELEGRAM_LIMIT // 2


def sources_part(citations: Sequence[Citation]) -> Part | None:
    """The numbered sources as one part, or None when there are none."""
    text = ""
    entities: list[MessageEntity] = []
    for number, citation in enumerate(citations, 1):
        prefix = f"{chr(10) if text else ''}[{number}] "
        line = prefix + citation.title
        if utf16_len(text) + utf16_len(line) > SOURCES_MAX:
            break  # the rest would crowd out the answer
        offset = utf16_len(text) + utf16_len(prefix)
        text += line
        if telegram_link(citation.url):
            entities.append(
                MessageEntity(
                    type="text_link",
                    offset=offset,
                    length=utf16_len(citation.title),
                    url=citation.url,
                )
            )
    return Part(text, tuple(entities)) if text else None


def joined(part: Part, extra: Part) -> Part | None:
    """`extra` below `part` in one message, or None when that would not fit."""
    shift = utf16_len(part.text) + len(GAP)
    if shift + utf16_len(extra.text) > TELEGRAM_LIMIT:
        return None
    moved = tuple(
        MessageEntity(**{**entity.model_dump(exclude_none=True), "offset": entity.offset + shift})
        for entity in extra.entities
    )
    return Part(part.text + GAP + extra.text, part.entities + moved)


def with_sources(parts: Sequence[Part], citations: Sequence[Citation]) -> list[Part]:
    """The answer's parts with its sources below the last one: in the same message
    when they fit, else in a message of their own."""
    sources = sources_part(citations)
    if sources is None:
        return list(parts)
    if not parts:
        return [sources]
    merged = joined(parts[-1], sources)
    return [*parts[:-1], merged] if merged is not None else [*parts, sources]
