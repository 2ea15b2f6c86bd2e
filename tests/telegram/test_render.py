"""Markdown -> Telegram entities, split within 4096 UTF-16 units, nothing lost."""

from __future__ import annotations

from hypothesis import given, settings
from hypothesis import strategies as st

from bot.telegram.render import TELEGRAM_LIMIT, Part, render, split_plain, utf16_len
from bot.telegram.sink import with_note


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
