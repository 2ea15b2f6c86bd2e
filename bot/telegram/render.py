"""LLM markdown -> Telegram text + entities, split into messages of at most 4096
UTF-16 units.

Entities instead of parse_mode: a half-written answer (an open code fence, a lone
`*`) can never make Telegram reject the edit, because there is nothing to parse.

Two things in model output would still make Telegram refuse a message, or lose text:

- Links. Telegram refuses the whole message when a `text_link` URL is not one it
  accepts ("entity URL 'README.md' is invalid: ..."), so only http/https links with
  a host and tg: links become `text_link`. Any other link shows its text, followed
  by its target as code when that helps: a path or a file name (`README.md`,
  `/etc/app.conf`), a URL Telegram will not link (`http://localhost:8000`) or a
  mail address; after a `#fragment` or a `javascript:`/`data:` URL, the text alone.
- Raw HTML. Markdown drops HTML it does not render, but people ask about HTML: a tag,
  a comment or an HTML block is shown exactly as written, and the Markdown around it
  still renders. (`<tg-spoiler>`, which stands for `||spoiler||`, stays a spoiler.)

This hooks into telegramify-markdown's event walker (the renderer behind
`telegramify_markdown.convert`) rather than escaping the source, so code spans and
code blocks stay untouched.
"""

from __future__ import annotations

import logging
import re
from dataclasses import dataclass
from typing import Any

import telegramify_markdown
from aiogram.types import MessageEntity
from telegramify_markdown.config import RenderConfig, get_runtime_config
from telegramify_markdown.converter import STANDARD_OPTIONS, EventWalker, _parse
from telegramify_markdown.entity import MessageEntity as RenderedEntity

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
        text, entities = convert(markdown)
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


def convert(markdown: str) -> tuple[str, list[RenderedEntity]]:
    """Markdown -> (plain text, entities), as `telegramify_markdown.convert` with the
    walker below; no `text_link` leaves here with a URL Telegram would refuse."""
    text, events = _parse(markdown, STANDARD_OPTIONS, latex_escape=True)
    plain, entities, _ = _Walker(get_runtime_config(), text).walk(events)
    return plain, [e for e in entities if e.type != "text_link" or telegram_link(e.url or "")]


# -- links ---------------------------------------------------------------------

_WEB_LINK = re.compile(r"(?i:https?)://([^/?#]*)")
_TG_LINK = re.compile(r"(?i:tg):(?://)?[A-Za-z0-9_-]+(?:[/?#].*)?", re.DOTALL)
# Host characters Telegram allows (RFC 3986 unreserved and sub-delims) and %XX.
_HOST = re.compile(r"(?:[A-Za-z0-9.\-_!$,~*'();&+=\u0080-\U0010ffff]|%[0-9A-Fa-f]{2})+")
_PORT = re.compile(r"0*[1-9][0-9]{0,4}")
# A scheme of two or more letters: "D:/dir" is a Windows path, not a scheme.
_SCHEME = re.compile(r"([A-Za-z][A-Za-z0-9+.\-]+):")
_HIDDEN_SCHEMES = frozenset({"javascript", "vbscript", "data", "blob", "about"})


def telegram_link(url: str) -> bool:
    """Whether Telegram accepts `url` in a text_link: http(s) with a host that has a
    dot and an optional valid port, or tg: with a plain host. Stricter than Telegram
    (no user info, no IPv6 hosts, no bare `example.com`), never looser."""
    if _TG_LINK.fullmatch(url):
        return True
    web = _WEB_LINK.match(url)
    if web is None:
        return False
    host, colon, port = web.group(1).partition(":")
    if colon and not (_PORT.fullmatch(port) and int(port) <= 65535):
        return False
    return "." in host and host != "." and _HOST.fullmatch(host) is not None


def shown_target(url: str) -> str | None:
    """What is worth showing, as code, of a link Telegram refuses: a path, a file
    name, a URL (`http://localhost:8000`, `ftp://...`) or a mail address; None for a
    fragment, which means nothing outside its page, and for script and data URLs."""
    target = url.strip()
    if not target or target.startswith("#"):
        return None
    scheme = _SCHEME.match(target)
    if scheme is None:
        return target
    name = scheme.group(1).lower()
    if name == "mailto":
        return target[len("mailto:") :].split("?", 1)[0] or None
    return None if name in _HIDDEN_SCHEMES else target


# -- the walker ----------------------------------------------------------------


class _Walker(EventWalker):
    """telegramify-markdown's walker, with raw HTML shown as written and links
    Telegram would refuse shown as text (their entities are dropped in `convert`)."""

    def __init__(self, config: RenderConfig, source_markdown: str) -> None:
        super().__init__(config, source_markdown)
        self._html_block: list[str] | None = None
        # Open links and images: (target, `_text_mark()` where their text starts).
        self._links: list[tuple[str, int]] = []

    def _handle_event(self, event: Any) -> None:
        payload = event[0] if isinstance(event, tuple) and len(event) == 2 else event
        if isinstance(payload, dict) and "Html" in payload:  # a line of an HTML block
            if self._html_block is not None:
                self._html_block.append(payload["Html"])
            else:
                self._on_text(payload["Html"])
            return
        super()._handle_event(event)

    def _on_start(self, tag: Any, source_range: dict[str, int] | None = None) -> None:
        if tag == "HtmlBlock":
            self._on_start_paragraph(self._source_start(source_range))
            self._html_block = []
            return
        if isinstance(tag, dict) and ("Link" in tag or "Image" in tag):
            link = tag.get("Link") or tag.get("Image") or {}
            self._links.append((str(link.get("dest_url", "")), self._text_mark()))
        super()._on_start(tag, source_range)

    def _on_end(self, tag: Any) -> None:
        if tag == "HtmlBlock":
            lines, self._html_block = self._html_block or [], None
            # The block's last line ends with the newline that closes the block.
            self._on_text("".join(lines).removesuffix("\n"))
            self._on_end_paragraph()
            return
        super()._on_end(tag)
        if tag in ("Link", "Image") and self._links:
            self._after_link(*self._links.pop())

    def _on_inline_html(self, html: str) -> None:
        tag = html.strip().lower()
        opens_spoiler = tag == "<tg-spoiler>"
        closes_spoiler = tag == "</tg-spoiler>" and any(
            scope.entity_type == "spoiler" for scope in self._entity_stack
        )
        if opens_spoiler or closes_spoiler:
            super()._on_inline_html(html)  # how `||spoiler||` reaches the walker
        else:
            self._on_text(html)

    def _text_mark(self) -> int:
        """Where the text written from now on starts: an index into the written pieces."""
        return len(self._cell_parts if self._in_table_cell else self._buf._parts)

    def _after_link(self, url: str, mark: int) -> None:
        """Show the target of a link Telegram would refuse after its text."""
        if telegram_link(url):
            return
        target = shown_target(url)
        if target is None:
            return
        written = self._cell_parts if self._in_table_cell else self._buf._parts
        text = "".join(written[mark:])
        if text.strip() == target:
            return
        prefix = " (" if text.strip() else ""
        suffix = ")" if text.strip() else ""
        if self._in_table_cell:  # a table is one pre block: no entities inside
            self._on_text(f"{prefix}{target}{suffix}")
            return
        self._buf.write(prefix)
        start = self._buf.utf16_offset
        self._buf.write(target)
        length = self._buf.utf16_offset - start
        self._entities.append(RenderedEntity(type="code", offset=start, length=length))
        self._buf.write(suffix)


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
