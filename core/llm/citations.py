"""Web-search citations: OpenRouter's `url_citation` annotations, made safe to show.

They come from the provider (and through it from any web page), so they are
untrusted: only http(s) URLs with a host are kept, titles are made one short line,
duplicates (by URL) are dropped and the count is capped. What survives can be
rendered as a link on any platform without checking it again for safety.
"""

from __future__ import annotations

import re
import unicodedata
from collections.abc import Iterable, Sequence
from dataclasses import dataclass
from typing import Any
from urllib.parse import quote, urlsplit

MAX_CITATIONS = 20
MAX_TITLE_CHARS = 120
MAX_URL_CHARS = 2048
# Characters that would end a link early in Markdown or HTML: percent-encoded.
_URL_SAFE = ":/?#@!$&*+,;=%-._~"
_SPACE = re.compile(r"\s+")


@dataclass(frozen=True)
class Citation:
    url: str
    title: str  # one line, never empty (the host when the source gave none)

    def to_json(self) -> dict[str, str]:
        return {"url": self.url, "title": self.title}


def clean_url(raw: object) -> str | None:
    """`raw` as an http(s) URL with a host, or None. Characters that could break
    out of a Markdown or HTML link are percent-encoded."""
    if not isinstance(raw, str):
        return None
    url = raw.strip()
    if not url or len(url) > MAX_URL_CHARS or any(ch.isspace() for ch in url):
        return None
    if any(unicodedata.category(ch)[0] == "C" for ch in url):
        return None
    try:
        parts = urlsplit(url)
    except ValueError:
        return None
    if parts.scheme.lower() not in ("http", "https") or not parts.hostname:
        return None
    if parts.username is not None or parts.password is not None:
        return None  # "https://good.example@evil.example" misleads the reader
    encoded = quote(url, safe=_URL_SAFE)
    return encoded if len(encoded) <= MAX_URL_CHARS else None


def clean_title(raw: object, url: str) -> str:
    """One line of at most MAX_TITLE_CHARS; the URL's host when there is no title."""
    text = raw if isinstance(raw, str) else ""
    text = "".join(ch for ch in text if unicodedata.category(ch)[0] != "C" or ch.isspace())
    text = _SPACE.sub(" ", text).strip()
    if not text:
        text = urlsplit(url).hostname or url
    if len(text) > MAX_TITLE_CHARS:
        text = text[: MAX_TITLE_CHARS - 1].rstrip() + "…"
    return text


def parse_annotations(raw: object) -> list[Citation]:
    """The `url_citation` annotations of a list, cleaned (others are skipped)."""
    found: list[Citation] = []
    if not isinstance(raw, list):
        return found
    for item in raw[: MAX_CITATIONS * 10]:  # a hostile list is not walked to its end
        if not isinstance(item, dict) or item.get("type") != "url_citation":
            continue
        body = item.get("url_citation")
        # Some gateways flatten the fields onto the annotation itself.
        fields: dict[str, Any] = body if isinstance(body, dict) else item
        url = clean_url(fields.get("url"))
        if url is not None:
            found.append(Citation(url, clean_title(fields.get("title"), url)))
    return merge((), found)


def merge(known: Sequence[Citation], new: Iterable[Citation]) -> list[Citation]:
    """`known` followed by the `new` URLs not seen yet, at most MAX_CITATIONS."""
    merged = list(known[:MAX_CITATIONS])
    seen = {citation.url for citation in merged}
    for citation in new:
        if len(merged) >= MAX_CITATIONS:
            break
        if citation.url not in seen:
            seen.add(citation.url)
            merged.append(citation)
    return merged


def from_meta(meta: object) -> list[Citation]:
    """The citations stored on an answer row's metadata (cleaned again: rows outlive code)."""
    raw = meta.get("citations") if isinstance(meta, dict) else None
    if not isinstance(raw, list):
        return []
    return parse_annotations(
        [{"type": "url_citation", "url_citation": item} for item in raw if isinstance(item, dict)]
    )


def to_meta(citations: Sequence[Citation]) -> list[dict[str, str]]:
    return [citation.to_json() for citation in citations]


def plain_lines(citations: Sequence[Citation]) -> list[str]:
    """ "[1] Title — URL" lines, for plain text (the terminal, exports)."""
    return [
        f"[{number}] {citation.title} — {citation.url}"
        for number, citation in enumerate(citations, 1)
    ]
