"""Text from people and models is made storable and sendable before anything keeps
or shows it: NUL (which PostgreSQL refuses) and lone surrogates (which UTF-8,
SQLite and the platforms refuse) become U+FFFD; everything else is kept."""

from __future__ import annotations

import pytest
from hypothesis import given
from hypothesis import strategies as st

from core.services import Services
from core.text import REPLACEMENT, StreamCleaner, decode_lenient, storable
from tests.fakes.llm_server import FakeLLM, Reply
from tests.support.chat import all_rows, finish, new_user

R = REPLACEMENT


@pytest.mark.parametrize(
    ("raw", "clean"),
    [
        ("plain text, ünïcödé, 😀", "plain text, ünïcödé, 😀"),
        ("a\x00b", f"a{R}b"),
        ("lone high \ud800 here", f"lone high {R} here"),
        ("lone low \udc00", f"lone low {R}"),
        ("a pair in halves \ud83d\ude00", "a pair in halves 😀"),
        ("\ude00\ud83d reversed", f"{R}{R} reversed"),
        ("", ""),
    ],
)
def test_storable(raw: str, clean: str) -> None:
    assert storable(raw) == clean
    clean.encode("utf-8")  # always encodable


@given(st.text())
def test_storable_text_always_encodes_and_keeps_clean_text(raw: str) -> None:
    clean = storable(raw)
    clean.encode("utf-8")
    assert "\x00" not in clean
    if not any(c == "\x00" or "\ud800" <= c <= "\udfff" for c in raw):
        assert clean == raw  # clean text is left exactly as it was


def test_a_surrogate_pair_split_across_pieces_is_joined() -> None:
    cleaner = StreamCleaner()
    pieces = [cleaner.feed("smile \ud83d"), cleaner.feed("\ude00!"), cleaner.feed(" \ud800")]
    assert pieces == ["smile ", "😀!", " "]
    assert cleaner.flush() == R


def test_bytes_from_outside() -> None:
    assert decode_lenient(b"ok \xff\xfe \x00 end") == f"ok {R}{R} {R} end"


async def test_a_persons_nul_and_lone_surrogates_are_stored_and_answered(
    services: Services, fake_llm: FakeLLM
) -> None:
    user_id = await new_user(services)
    generation = await services.chat.send(user_id, "what is \x00 and \ud800?")
    result = await finish(generation)
    assert result.status == "complete"
    rows = await all_rows(services.db, generation.turn.conversation.id)
    assert [r.content for r in rows] == [f"what is {R} and {R}?", f"Echo: what is {R} and {R}?"]
    assert generation.turn.conversation.title == f"what is {R} and {R}?"
    assert fake_llm.requests[0].body["messages"][-1]["content"] == f"what is {R} and {R}?"


async def test_a_models_nul_and_lone_surrogates_never_lose_the_answer(
    services: Services, fake_llm: FakeLLM
) -> None:
    user_id = await new_user(services)
    fake_llm.script(Reply(chunks=["x\x00y ", "\ud83d", "\ude00 lone ", "\udc00 end"]))
    generation = await services.chat.send(user_id, "say something odd")
    deltas = [d async for d in generation.stream()]
    assert "".join(deltas) == f"x{R}y 😀 lone {R} end"
    assert generation.result is not None
    assert (generation.result.status, generation.result.charged) == ("complete", True)
    rows = await all_rows(services.db, generation.turn.conversation.id)
    assert rows[-1].content == f"x{R}y 😀 lone {R} end"
    assert rows[-1].status == "complete"


async def test_names_titles_and_prompts_are_storable(services: Services) -> None:
    from core.accounts import PlatformProfile

    user = await services.accounts.upsert(
        PlatformProfile("test", "odd-name", username="a\x00b", display_name="Ann \ud800")
    )
    assert (user.display_name) == f"Ann {R}"
    await services.accounts.set_system_prompt(user.id, "be \x00 brief")
    stored = await services.accounts.get(user.id)
    assert stored is not None and stored.system_prompt == f"be {R} brief"
