"""Markdown -> Telegram entities, split within 4096 UTF-16 units, nothing lost."""

from __future__ import annotations

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from bot.telegram import render as render_module
from bot.telegram.render import TELEGRAM_LIMIT, Part, render, split_plain, utf16_len
from bot.telegram.sink import with_note
from tests.fakes.telegram_server import check_link


def _valid(part: Part) -> None:
    length = utf16_len(part.text)
    assert 0 < length <= TELEGRAM_LIMIT
    for entity in part.entities:
        assert entity.offset >= 0 and entity.length > 0
        assert entity.offset + entity.length <= length


def test_long_answer_splits_into_parts_that_fit_and_lose_nothing() -> None:
    text = "".join(f"Line {i}: {'word ' * 12}\n" for i in range(200))
    parts = render(text)
    assert len(parts) >= 3
    for part in parts:
        _valid(part)
    assert "".join(p.text for p in parts).split() == text.split()


def test_emoji_count_as_two_units() -> None:
    parts = render("😀" * 3000)
    assert [utf16_len(p.text) for p in parts] == [4096, 1904]


def test_half_written_markdown_still_renders() -> None:
    for partial in ["```python\nprint(1", "**bold but not closed", "a `code", "[link](http://"]:
        parts = render(partial)
        assert parts, partial
        for part in parts:
            _valid(part)


def test_entities_for_markup() -> None:
    (part,) = render("**bold** and `code`")
    assert part.text == "bold and code"
    assert [(e.type, e.offset, e.length) for e in part.entities] == [
        ("bold", 0, 4),
        ("code", 9, 4),
    ]


def test_note_is_appended_with_shifted_entities() -> None:
    (part,) = render("😀 **hi**")
    noted = with_note(part, "Stopped.")
    assert noted is not None
    assert noted.text == "😀 hi\n\nStopped."
    italic = noted.entities[-1]
    assert italic.type == "italic"
    assert (
        noted.text.encode("utf-16-le")[italic.offset * 2 :][: italic.length * 2].decode("utf-16-le")
        == "Stopped."
    )
    assert with_note(Part("x" * 4090), "Stopped.") is None  # too long: posted separately


def test_split_plain_keeps_everything() -> None:
    text = "abc " * 3000
    pieces = split_plain(text, 4096)
    assert "".join(pieces) == text
    assert all(utf16_len(p) <= 4096 for p in pieces)


@settings(max_examples=60, deadline=None)
@given(st.text(alphabet=st.characters(codec="utf-8"), min_size=1, max_size=9000))
def test_any_text_renders_into_valid_parts(text: str) -> None:
    for part in render(text):
        _valid(part)


# -- links Telegram refuses, raw HTML ------------------------------------------


def _links(part: Part) -> list[str]:
    return [e.url or "" for e in part.entities if e.type == "text_link"]


def _codes(part: Part) -> list[str]:
    units = part.text.encode("utf-16-le")
    return [
        units[e.offset * 2 : (e.offset + e.length) * 2].decode("utf-16-le")
        for e in part.entities
        if e.type == "code"
    ]


def _accepted_by_telegram(part: Part) -> None:
    for url in _links(part):
        check_link(url)  # the fake's port of Telegram's check: raises LinkError if refused


@pytest.mark.parametrize(
    ("markdown", "text", "codes"),
    [
        # A path or a file name is worth showing after the text, as code.
        ("See [readme](README.md).", "See readme (README.md).", ["README.md"]),
        ("See [conf](/etc/app.conf).", "See conf (/etc/app.conf).", ["/etc/app.conf"]),
        ("See [guide](docs/guide.md).", "See guide (docs/guide.md).", ["docs/guide.md"]),
        ("See ![chart](./chart.png).", "See 🖼chart (./chart.png).", ["./chart.png"]),
        ("Run [the app](http://localhost:8000).", "Run the app (http://localhost:8000).", None),
        ("[Mail us](mailto:team@x.org?subject=hi)", "Mail us (team@x.org)", ["team@x.org"]),
        # The same text as the target is shown once; an empty text shows the target.
        ("Open [README.md](README.md)", "Open README.md", []),
        ("Open [](notes.txt)", "Open notes.txt", ["notes.txt"]),
        # A fragment or a script/data URL means nothing in a chat: the text alone.
        ("Jump to [intro](#intro).", "Jump to intro.", []),
        ("[click](javascript:alert(1))", "click", []),
        ("[x](data:text/html,<b>hi</b>)", "x", []),
        ("[ref][r]\n\n[r]: /srv/data.csv", "ref (/srv/data.csv)", ["/srv/data.csv"]),
    ],
)
def test_links_telegram_refuses_show_their_text(
    markdown: str, text: str, codes: list[str] | None
) -> None:
    (part,) = render(markdown)
    assert part.text == text
    assert _links(part) == []
    if codes is not None:
        assert _codes(part) == codes
    _valid(part)


def test_links_telegram_accepts_stay_links() -> None:
    markdown = (
        "[site](https://example.org/a_(b)?q=1), [plain](http://x.org), "
        "[Ann](tg://user?id=1), [bot](tg://resolve?domain=oneai_bot), "
        "<https://x.org/path>, **[bold](https://b.org:8443/)**"
    )
    (part,) = render(markdown)
    assert part.text == "site, plain, Ann, bot, https://x.org/path, bold"
    assert _links(part) == [
        "https://example.org/a_(b)?q=1",
        "http://x.org",
        "tg://user?id=1",
        "tg://resolve?domain=oneai_bot",
        "https://x.org/path",
        "https://b.org:8443/",
    ]
    _accepted_by_telegram(part)


def test_telegram_link_is_never_looser_than_telegram() -> None:
    telegram_link = render_module.telegram_link
    for url in ["https://x.org", "HTTP://X.ORG:80/a b", "tg:resolve?domain=a", "https://é.рф/"]:
        assert telegram_link(url), url
        check_link(url)
    for url in [
        "README.md",  # Telegram would take it for http://readme.md/
        "https://localhost",
        "https://x.org:0",
        "https://x.org:65536",
        "https://user@x.org",
        "https://[::1]/",
        "https://exa mple.org",
        "ftp://x.org",
        "tg://resolve:80?domain=a",
        "//x.org/a",
        "",
    ]:
        assert not telegram_link(url), url


@settings(max_examples=300, deadline=None)
@given(
    st.sampled_from(["", "http://", "https://", "tg:", "tg://", "HTTPS://a.b", "mailto:"]),
    st.text(alphabet=st.sampled_from(list("ab.:/?#@[]%-_ é1234567890 0")), max_size=16),
)
def test_every_link_rendered_is_one_telegram_accepts(scheme: str, rest: str) -> None:
    url = scheme + rest
    for part in render(f"[text](<{url}>) and <{url}> and ![i](<{url}>)"):
        _valid(part)
        _accepted_by_telegram(part)


@pytest.mark.parametrize(
    ("markdown", "text"),
    [
        ("Use the <br> tag", "Use the <br> tag"),
        ("<script>alert(1)</script> <b>bold?</b>", "<script>alert(1)</script> <b>bold?</b>"),
        (
            'A <a href="x">link</a> & <img src=x onerror=y>',
            'A <a href="x">link</a> & <img src=x onerror=y>',
        ),
        ("Hidden <!-- a comment --> here", "Hidden <!-- a comment --> here"),
        ("<!-- a block comment -->\n\nThen text", "<!-- a block comment -->\n\nThen text"),
        ("<div>\n**not bold** in a block\n</div>", "<div>\n**not bold** in a block\n</div>"),
        ("- <span>one</span>\n- two", "⦁ <span>one</span>\n⦁ two"),
    ],
)
def test_raw_html_shows_as_written(markdown: str, text: str) -> None:
    (part,) = render(markdown)
    assert part.text.rstrip("\n") == text  # a list ends with a newline Telegram trims
    assert [e.type for e in part.entities] == []


def test_markdown_around_html_still_renders() -> None:
    (part,) = render("**Note:** wrap it in <b>**bold**</b>, see [MDN](https://mdn.io).")
    assert part.text == "Note: wrap it in <b>bold</b>, see MDN."
    assert [(e.type, e.offset, e.length) for e in part.entities] == [
        ("bold", 0, 5),
        ("bold", 20, 4),
        ("text_link", 34, 3),
    ]
    (part,) = render("Para one.\n\n<div>\nraw\n</div>\n\nAfter _it_.")
    assert part.text == "Para one.\n\n<div>\nraw\n</div>\n\nAfter it."
    assert [(e.type, e.offset, e.length) for e in part.entities] == [("italic", 35, 2)]


def test_html_in_code_is_unchanged() -> None:
    (part,) = render("Use the `<br>` tag:\n\n```html\n<p>Hi<br>there</p>\n```")
    assert part.text == "Use the <br> tag:\n\n<p>Hi<br>there</p>"
    assert [(e.type, e.offset, e.length, e.language) for e in part.entities] == [
        ("code", 8, 4, None),
        ("pre", 19, 18, "html"),
    ]


def test_a_spoiler_is_still_a_spoiler() -> None:
    (part,) = render("The answer is ||42|| </tg-spoiler>")
    assert part.text == "The answer is 42 </tg-spoiler>"
    assert [(e.type, e.offset, e.length) for e in part.entities] == [("spoiler", 14, 2)]


def test_half_written_links_and_html_never_make_a_refused_link() -> None:
    answer = (
        "See [the config](/etc/app.conf) and [docs](https://docs.example.org/a).\n\n"
        "Use <br> or <!-- x -->; [top](#top) [js](javascript:void(0)) ![p](img/p.png)\n\n"
        "<div>\nblock\n</div>\n"
    )
    for end in range(1, len(answer) + 1):
        for part in render(answer[:end]):
            _valid(part)
            _accepted_by_telegram(part)
    (whole,) = render(answer)
    assert _links(whole) == ["https://docs.example.org/a"]
    assert "Use <br> or <!-- x -->;" in whole.text and "<div>\nblock\n</div>" in whole.text
