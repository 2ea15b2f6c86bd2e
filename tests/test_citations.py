"""Web-search citations: parsing OpenRouter's `url_citation` annotations (from a real
stream of the fake server too), and drawing them on Telegram and Discord, with
hostile input: script URLs, huge titles, hundreds of sources."""

from __future__ import annotations

from typing import Any

from bot.discord.render import DISCORD_LIMIT
from bot.discord.sources import sources_block
from bot.discord.sources import with_sources as discord_with_sources
from bot.telegram.render import TELEGRAM_LIMIT, Part, utf16_len
from bot.telegram.sources import sources_part
from bot.telegram.sources import with_sources as telegram_with_sources
from core.llm.citations import (
    MAX_CITATIONS,
    MAX_TITLE_CHARS,
    Citation,
    clean_url,
    from_meta,
    parse_annotations,
    to_meta,
)
from core.llm.client import LLMClient
from tests.fakes.llm_server import FakeLLM, Reply, url_citation


def test_only_url_citations_with_web_urls_are_kept_once_each() -> None:
    raw: list[Any] = [
        url_citation("https://example.org/a", "A"),
        url_citation("https://example.org/a", "A again"),
        url_citation("javascript:alert(1)", "script"),
        url_citation("data:text/html,<b>x</b>", "data"),
        url_citation("https://user:pw@example.org/", "credentials"),
        url_citation("https://", "no host"),
        url_citation("https://exa mple.org/", "a space"),
        url_citation("HTTP://EXAMPLE.COM/b", "upper-case scheme"),
        {"type": "file_citation", "file_citation": {"url": "https://example.org/f"}},
        {"type": "url_citation", "url_citation": "not an object"},
        {"type": "url_citation", "url": "https://flat.example.org/", "title": "flattened"},
        "junk",
        None,
    ]
    assert parse_annotations(raw) == [
        Citation("https://example.org/a", "A"),
        Citation("HTTP://EXAMPLE.COM/b", "upper-case scheme"),
        Citation("https://flat.example.org/", "flattened"),
    ]
    assert parse_annotations("not a list") == []
    assert parse_annotations({"type": "url_citation"}) == []


def test_titles_become_one_short_line_and_urls_cannot_break_out_of_a_link() -> None:
    (citation,) = parse_annotations(
        [url_citation("https://example.org/a)b<c>d", "line one\nline\u0000two\u202e" + "x" * 500)]
    )
    assert "\n" not in citation.title and "\u0000" not in citation.title
    assert "\u202e" not in citation.title  # no right-to-left override trick
    assert len(citation.title) == MAX_TITLE_CHARS and citation.title.endswith("…")
    assert citation.url == "https://example.org/a%29b%3Cc%3Ed"
    assert clean_url("https://example.org/" + "a" * 3000) is None
    assert clean_url(42) is None
    # No title: the host stands in.
    assert parse_annotations([url_citation("https://x.example.net/p", "  ")])[0].title == (
        "x.example.net"
    )


def test_hundreds_of_citations_are_capped() -> None:
    raw = [url_citation(f"https://s{i}.example.com/", f"t{i}") for i in range(5000)]
    parsed = parse_annotations(raw)
    assert len(parsed) == MAX_CITATIONS
    assert parsed[0].url == "https://s0.example.com/"


def test_stored_citations_are_cleaned_again_when_read() -> None:
    stored = to_meta([Citation("https://example.org/", "ok")])
    stored.append({"url": "javascript:alert(1)", "title": "forged row"})
    assert from_meta({"citations": stored}) == [Citation("https://example.org/", "ok")]
    assert from_meta({}) == [] and from_meta(None) == [] and from_meta({"citations": 3}) == []


async def test_the_client_asks_for_the_web_plugin_and_collects_streamed_annotations() -> None:
    async with FakeLLM() as llm:
        llm.script(
            Reply(text="Answer.", annotations=[url_citation("https://example.org/", "Example")]),
            Reply(text="Plain."),
        )
        async with LLMClient(llm.base_url, max_retries=0) as client:
            chunks = [
                chunk
                async for chunk in client.stream_chat(
                    "m", [{"role": "user", "content": "q"}], web_search=True
                )
            ]
            plain = [
                chunk async for chunk in client.stream_chat("m", [{"role": "user", "content": "q"}])
            ]
        assert llm.requests[0].body["plugins"] == [{"id": "web"}]
        assert "plugins" not in llm.requests[1].body
    assert "".join(chunk.text for chunk in chunks) == "Answer."
    assert [c for chunk in chunks for c in chunk.citations] == [
        Citation("https://example.org/", "Example")
    ]
    assert not any(chunk.citations for chunk in plain)


# -- Telegram -------------------------------------------------------------------------


def _linked(part: Part) -> list[tuple[str, str | None]]:
    units = part.text.encode("utf-16-le")
    return [
        (units[e.offset * 2 : (e.offset + e.length) * 2].decode("utf-16-le"), e.url)
        for e in part.entities
    ]


def test_telegram_links_titles_by_utf16_offsets_and_only_urls_telegram_takes() -> None:
    citations = [
        Citation("https://example.org/", "😀 emoji first"),
        Citation("https://localhost/", "no dot in the host"),  # Telegram refuses it
        Citation("https://b.example.org/", "Second"),
    ]
    part = sources_part(citations)
    assert part is not None
    assert part.text == "[1] 😀 emoji first\n[2] no dot in the host\n[3] Second"
    assert _linked(part) == [
        ("😀 emoji first", "https://example.org/"),
        ("Second", "https://b.example.org/"),
    ]


def test_telegram_sources_join_the_last_part_or_get_their_own_message() -> None:
    citations = [Citation("https://example.org/", "Example")]
    short = telegram_with_sources([Part("Hello")], citations)
    assert [p.text for p in short] == ["Hello\n\n[1] Example"]
    assert _linked(short[0]) == [("Example", "https://example.org/")]
    full = Part("x" * (TELEGRAM_LIMIT - 5))
    parts = telegram_with_sources([full], citations)
    assert parts[0] == full and parts[1].text == "[1] Example"
    assert telegram_with_sources([Part("Hello")], []) == [Part("Hello")]


def test_telegram_sources_of_hostile_size_stay_within_a_message() -> None:
    citations = [
        Citation(f"https://s{i}.example.com/", "𝕏" * MAX_TITLE_CHARS) for i in range(MAX_CITATIONS)
    ]
    part = sources_part(citations)
    assert part is not None
    assert utf16_len(part.text) <= TELEGRAM_LIMIT // 2
    assert part.text.startswith("[1] ")


# -- Discord --------------------------------------------------------------------------


def test_discord_writes_masked_links_without_embeds_and_escapes_titles() -> None:
    block = sources_block(
        [
            Citation("https://example.org/", "A [fake](https://evil.example) **bold** @everyone"),
            Citation("https://b.example.org/", "B"),
        ]
    )
    first, second = block.split("\n")
    assert first.startswith("[1] [A (fake)(https://evil.example) \\*\\*bold\\*\\* @\u200beveryone]")
    assert first.endswith("](<https://example.org/>)")
    assert second == "[2] [B](<https://b.example.org/>)"


def test_discord_sources_fit_in_one_message_whatever_comes() -> None:
    citations = [
        Citation(f"https://s{i}.example.com/" + "p" * 1500, "T" * MAX_TITLE_CHARS)
        for i in range(MAX_CITATIONS)
    ]
    block = sources_block(citations)
    assert 0 < len(block) <= DISCORD_LIMIT // 2
    parts = discord_with_sources(["y" * 1990], citations)
    assert parts[0] == "y" * 1990 and parts[1] == block
    assert all(len(part) <= DISCORD_LIMIT for part in parts)
    assert discord_with_sources(["Hi"], [Citation("https://e.example/", "E")]) == [
        "Hi\n\n[1] [E](<https://e.example/>)"
    ]
