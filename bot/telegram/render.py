"""LLM markdown -> Telegram text + entities, split into messages of at most 4096
UTF-16 units.

Entities instead of parse_mode: a half-written answer (an open code fence, a lone
`*`) can never make Telegram reject the edit, because there is nothing to parse.
"""

from __future__ import annotations

import logging
from dataclasses import dataclass

import telegramify_markdown
from aiogram.types import MessageEntity

log = logging.getLogger(__name__)

TELEGRAM_LIMIT = 4096


@dataclass(frozen=True)
class Part:
    text: str
    entities: tuple[MessageEntity, ...] = ()


def utf16_len(text: str) -> int:
    return len(text.encode("utf-16-le")) // 2


def render(markdown: str, limit: int = TELEGRAM_LIMIT) -> list[Part]:
    """The messages that show `markdown`; [] for text with nothing visible."""
    if not markdown.strip():
        return []
    try:
        text, entities = telegramify_markdown.convert(markdown)
        chunks = telegramify_markdown.split_entities(text, entities, limit)
    except Exception:  # a renderer bug must not lose the answer: fall back to plain text
        log.warning("markdown rendering failed; sending plain text", exc_info=True)
        return [Part(chunk) for chunk in split_plain(markdown, limit)]
    parts = []
    for chunk_text, chunk_entities in chunks:
        if not chunk_text.strip():
            continue
        parts.append(
            Part(
                chunk_text,
                tuple(MessageEntity(**entity.to_dict()) for entity in chunk_entities),
            )
        )
    return parts


def split_plain(text: str, limit: int = TELEGRAM_LIMIT) -> list[str]:
    """Split on line, then word boundaries, so each piece fits in `limit` UTF-16 units."""
    pieces: list[str] = []
    rest = text
    while utf16_len(rest) > limit:
        cut = _fit(rest, limit)
        boundary = max(rest.rfind("\n", 0, cut), rest.rfind(" ", 0, cut))
        if boundary > cut // 2:
            cut = boundary + 1
        pieces.append(rest[:cut])
        rest = rest[cut:]
    if rest:
        pieces.append(rest)
    return pieces


def _fit(text: str, limit: int) -> int:
    """The longest prefix (in characters) that fits in `limit` UTF-16 units."""
    units = 0
    for index, char in enumerate(text):
        units += 2 if ord(char) > 0xFFFF else 1
        if units > limit:
            return index
    return len(text)
