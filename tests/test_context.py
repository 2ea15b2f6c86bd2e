"""Fitting a conversation into a model's context, and the token estimates behind it."""

from __future__ import annotations

import dataclasses
import time
from typing import Any

import pytest

from core.llm.catalog import ModelCatalog, ModelInfo
from core.llm.context import (
    AudioClip,
    BuiltContext,
    HistoryMessage,
    MessageTooLong,
    build_context,
    default_reserve,
    message_cost,
)
from core.llm.tokens import (
    AUDIO_TOKENS_PER_SECOND,
    IMAGE_TOKENS,
    REPLY_PRIMING,
    TokenEstimator,
    default_estimator,
    heuristic_count,
)

ENGLISH = (
    "The history of the printing press begins in the fifteenth century, when Johannes "
    "Gutenberg combined several existing technologies into a practical system for "
    "mass-producing books. Before that, most texts were copied by hand, which made them "
    "expensive and rare. Within fifty years, presses had spread to more than two hundred "
    "cities across Europe, and millions of volumes were in circulation.\n"
    "Could you help me plan a three-day trip to Lisbon in October? I like museums, long "
    "walks and seafood, but I'd rather avoid crowded tourist traps. My budget is about "
    "600 euros, not counting flights. Also, what's the best way to get from the airport?"
)
RUSSIAN = (
    "История книгопечатания начинается в пятнадцатом веке, когда Иоганн Гутенберг "
    "объединил несколько существующих технологий в практичную систему массового "
    "производства книг. До этого большинство текстов переписывали вручную, поэтому они "
    "были дорогими и редкими.\n"
    "Помоги, пожалуйста, спланировать поездку в Лиссабон на три дня в октябре. Я люблю "
    "музеи, долгие прогулки и морепродукты, но хотел бы избежать толп туристов. Бюджет "
    "около 600 евро без учёта перелёта. И как лучше добраться из аэропорта?"
)


@pytest.fixture(scope="module")
def base_model() -> ModelInfo:
    return ModelCatalog.load("openai/gpt-4o-mini").default


@pytest.fixture(scope="module")
def estimator() -> TokenEstimator:
    return default_estimator()


def _small(model: ModelInfo, context: int) -> ModelInfo:
    return dataclasses.replace(model, context_length=context, max_output_tokens=100)


def _conversation(turns: int) -> list[HistoryMessage]:
    """user/assistant pairs ending with a user message; contents are distinct."""
    history = []
    for turn in range(turns):
        history.append(HistoryMessage("user", f"Question {turn}: what about topic {turn}?"))
        history.append(HistoryMessage("assistant", f"Answer {turn}: topic {turn} is fine."))
    history.append(HistoryMessage("user", "And finally, the last question?"))
    return history


def _contents(built: BuiltContext) -> list[str]:
    return [str(message["content"]) for message in built.messages]


def _assert_estimate_consistent(built: BuiltContext, estimator: TokenEstimator) -> None:
    assert built.prompt_tokens == estimator.count_messages(built.messages)


# --- layout ------------------------------------------------------------------------------


def test_system_prompt_comes_first(base_model: ModelInfo, estimator: TokenEstimator) -> None:
    history = _conversation(2)
    built = build_context(history, model=base_model, system_prompt="Be brief.")
    assert built.messages[0] == {"role": "system", "content": "Be brief."}
    assert built.messages[1:] == [{"role": m.role, "content": m.content} for m in history]
    assert built.dropped == 0
    _assert_estimate_consistent(built, estimator)

    without = build_context(history, model=base_model, system_prompt=None)
    assert without.messages == built.messages[1:]
    assert without.prompt_tokens < built.prompt_tokens
    assert build_context(history, model=base_model, system_prompt="").messages == without.messages


def test_history_must_end_with_a_user_message(base_model: ModelInfo) -> None:
    with pytest.raises(ValueError):
        build_context([], model=base_model, system_prompt=None)
    with pytest.raises(ValueError):
        build_context(_conversation(1)[:-1], model=base_model, system_prompt=None)


def test_default_reserve(base_model: ModelInfo) -> None:
    assert default_reserve(base_model) == 16_384  # 128k context, 16k output
    huge_output = dataclasses.replace(base_model, context_length=8_000, max_output_tokens=8_000)
    assert default_reserve(huge_output) == 2_000


# --- trimming ----------------------------------------------------------------------------


def test_trimming_drops_oldest_first(base_model: ModelInfo, estimator: TokenEstimator) -> None:
    history = _conversation(10)  # 21 messages
    full = build_context(history, model=base_model, system_prompt="Sys")
    budget = full.prompt_tokens // 2
    model = _small(base_model, budget + 100)
    built = build_context(history, model=model, system_prompt="Sys", reserve_output=100)

    assert built.prompt_tokens <= budget
    assert 0 < built.dropped < len(history) - 1
    kept = built.messages[1:]
    assert len(kept) == len(history) - built.dropped
    assert kept == [{"role": m.role, "content": m.content} for m in history[built.dropped :]]
    assert kept[0]["role"] == "user"
    assert kept[-1]["content"] == history[-1].content
    _assert_estimate_consistent(built, estimator)


def test_exact_fit_boundary(base_model: ModelInfo, estimator: TokenEstimator) -> None:
    history = _conversation(3)
    needed = build_context(history, model=base_model, system_prompt="Sys").prompt_tokens

    fits = _small(base_model, needed + 50)
    built = build_context(history, model=fits, system_prompt="Sys", reserve_output=50)
    assert built.dropped == 0
    assert built.prompt_tokens == needed

    one_short = _small(base_model, needed + 49)
    trimmed = build_context(history, model=one_short, system_prompt="Sys", reserve_output=50)
    # The oldest user message goes, and the answer it leaves dangling goes with it.
    assert trimmed.dropped == 2
    assert trimmed.messages[1] == {"role": "user", "content": history[2].content}
    _assert_estimate_consistent(trimmed, estimator)


def test_newest_message_is_kept_when_nothing_else_fits(
    base_model: ModelInfo, estimator: TokenEstimator
) -> None:
    history = _conversation(5)
    newest_only = build_context(history[-1:], model=base_model, system_prompt="Sys")
    model = _small(base_model, newest_only.prompt_tokens + 100)
    built = build_context(history, model=model, system_prompt="Sys", reserve_output=100)
    assert built.messages == newest_only.messages
    assert built.dropped == len(history) - 1
    _assert_estimate_consistent(built, estimator)


def test_leading_assistant_is_dropped_after_trimming(base_model: ModelInfo) -> None:
    history = [
        HistoryMessage("user", "hi"),
        HistoryMessage("assistant", "hello"),
        HistoryMessage("user", "word " * 2_000),  # too big to keep
        HistoryMessage("assistant", "ok"),
        HistoryMessage("user", "thanks"),
    ]
    model = _small(base_model, 600)
    built = build_context(history, model=model, system_prompt=None, reserve_output=100)
    assert built.messages == [{"role": "user", "content": "thanks"}]
    assert built.dropped == 4


def test_assistant_opening_is_kept_when_nothing_was_trimmed(base_model: ModelInfo) -> None:
    history = [HistoryMessage("assistant", "Welcome!"), HistoryMessage("user", "hi")]
    built = build_context(history, model=base_model, system_prompt=None)
    assert [message["role"] for message in built.messages] == ["assistant", "user"]


def test_empty_assistant_messages_are_skipped(base_model: ModelInfo) -> None:
    history = [
        HistoryMessage("user", "first try"),
        HistoryMessage("assistant", ""),
        HistoryMessage("user", "second try"),
        HistoryMessage("assistant", "  \n"),
        HistoryMessage("user", "third try"),
    ]
    built = build_context(history, model=base_model, system_prompt=None)
    assert _contents(built) == ["first try", "second try", "third try"]
    assert built.dropped == 0


def test_message_too_long(base_model: ModelInfo, estimator: TokenEstimator) -> None:
    model = _small(base_model, 1_100)
    history = [HistoryMessage("user", "short"), HistoryMessage("user", ENGLISH * 10)]
    with pytest.raises(MessageTooLong) as info:
        build_context(history, model=model, system_prompt="Sys", reserve_output=100)
    error = info.value
    assert error.code == "message_too_long"
    limit = error.details["limit"]
    tokens = error.details["tokens"]
    assert limit == 1_000
    assert isinstance(tokens, int) and tokens > limit
    assert tokens == estimator.count_messages(
        [{"role": "system", "content": "Sys"}, {"role": "user", "content": ENGLISH * 10}]
    )
    assert "% shorter" in error.user_message
    assert model.name in error.user_message

    # The message that just fits is accepted.
    fitting = dataclasses.replace(model, context_length=tokens + 100)
    built = build_context(history, model=fitting, system_prompt="Sys", reserve_output=100)
    assert built.prompt_tokens == tokens
    assert built.dropped == 1


def test_message_too_long_when_even_a_short_message_cannot_fit(base_model: ModelInfo) -> None:
    model = _small(base_model, 300)
    with pytest.raises(MessageTooLong, match="larger context"):
        build_context(
            [HistoryMessage("user", "hi")],
            model=model,
            system_prompt="rules " * 1_000,
            reserve_output=100,
        )


# --- images ------------------------------------------------------------------------------


def test_images_for_vision_models(base_model: ModelInfo, estimator: TokenEstimator) -> None:
    assert base_model.vision
    history = [
        HistoryMessage("user", "What is this?", images=("https://example.com/a.png",)),
        HistoryMessage("assistant", "A cat.", images=("data:image/png;base64,AAAA",)),
        HistoryMessage("user", "", images=("data:image/png;base64,BBBB",)),
    ]
    built = build_context(history, model=base_model, system_prompt=None)
    assert built.messages == [
        {
            "role": "user",
            "content": [
                {"type": "text", "text": "What is this?"},
                {"type": "image_url", "image_url": {"url": "https://example.com/a.png"}},
            ],
        },
        {"role": "assistant", "content": "A cat."},  # providers reject assistant images
        {
            "role": "user",
            "content": [{"type": "image_url", "image_url": {"url": "data:image/png;base64,BBBB"}}],
        },
    ]
    _assert_estimate_consistent(built, estimator)
    text_only = estimator.count_messages([{"role": "user", "content": "What is this?"}])
    assert estimator.count_messages(built.messages[:1]) == text_only + IMAGE_TOKENS


def test_images_dropped_for_text_models(base_model: ModelInfo) -> None:
    text_model = dataclasses.replace(base_model, vision=False)
    history = [HistoryMessage("user", "What is this?", images=("https://example.com/a.png",))]
    built = build_context(history, model=text_model, system_prompt=None)
    assert built.messages == [{"role": "user", "content": "What is this?"}]


# --- audio -------------------------------------------------------------------------------

CLIP = AudioClip("T2dnUwBmYWtl", "ogg", 12)


def test_audio_goes_as_an_input_audio_part_to_a_model_that_listens(
    base_model: ModelInfo, estimator: TokenEstimator
) -> None:
    listens = dataclasses.replace(base_model, audio=True)
    history = [
        HistoryMessage("user", "Answer in French", audio=CLIP),
        HistoryMessage("assistant", "Bonjour."),
        HistoryMessage("user", "", audio=AudioClip("SUQz", "mp3", 3)),
    ]
    built = build_context(history, model=listens, system_prompt=None)
    assert built.messages == [
        {
            "role": "user",
            "content": [
                {"type": "text", "text": "Answer in French"},
                {"type": "input_audio", "input_audio": {"data": "T2dnUwBmYWtl", "format": "ogg"}},
            ],
        },
        {"role": "assistant", "content": "Bonjour."},
        {
            "role": "user",
            "content": [{"type": "input_audio", "input_audio": {"data": "SUQz", "format": "mp3"}}],
        },
    ]
    # The recording counts by its seconds, not by its base64.
    text_only = estimator.count_messages([{"role": "user", "content": "Answer in French"}])
    assert estimator.count_messages(built.messages[:1]) == text_only
    assert message_cost(history[0], listens, estimator) == (
        text_only - REPLY_PRIMING + 12 * AUDIO_TOKENS_PER_SECOND
    )
    assert built.prompt_tokens == estimator.count_messages(built.messages) + (
        15 * AUDIO_TOKENS_PER_SECOND
    )


def test_a_model_that_does_not_listen_reads_a_marker(base_model: ModelInfo) -> None:
    assert not base_model.audio
    history = [
        HistoryMessage("user", "Answer in French", audio=CLIP),
        HistoryMessage("assistant", "Bonjour.", audio=CLIP),  # never from the assistant
        HistoryMessage("user", "", audio=AudioClip("SUQz", "mp3", 3)),
    ]
    built = build_context(history, model=base_model, system_prompt=None)
    assert built.messages == [
        {"role": "user", "content": "[voice note, 12 s]\n\nAnswer in French"},
        {"role": "assistant", "content": "Bonjour."},
        {"role": "user", "content": "[voice note, 3 s]"},
    ]


def test_a_long_recording_counts_against_the_context(base_model: ModelInfo) -> None:
    listens = dataclasses.replace(_small(base_model, 2_000), audio=True)
    history = [
        HistoryMessage("user", "First", audio=AudioClip("AAAA", "ogg", 30)),  # 960 tokens
        HistoryMessage("assistant", "Heard it."),
        HistoryMessage("user", "Second", audio=AudioClip("BBBB", "ogg", 40)),  # 1280 tokens
    ]
    built = build_context(history, model=listens, system_prompt=None, reserve_output=100)
    assert built.dropped == 2 and len(built.messages) == 1
    with pytest.raises(MessageTooLong):
        build_context(
            [HistoryMessage("user", "", audio=AudioClip("CCCC", "ogg", 60))],
            model=listens,
            system_prompt=None,
            reserve_output=100,
        )


# --- speed -------------------------------------------------------------------------------


def test_long_history_is_fast(base_model: ModelInfo, estimator: TokenEstimator) -> None:
    history = _conversation(500)  # 1001 messages
    started = time.perf_counter()
    built = build_context(history, model=base_model, system_prompt="Sys")
    trimmed = build_context(
        history, model=_small(base_model, 5_000), system_prompt="Sys", reserve_output=100
    )
    elapsed = time.perf_counter() - started
    assert elapsed < 0.5
    assert built.dropped == 0 and len(built.messages) == 1002
    assert trimmed.dropped > 0 and trimmed.prompt_tokens <= 4_900


# --- estimator ---------------------------------------------------------------------------


def test_counts_are_positive_and_grow_with_text(estimator: TokenEstimator) -> None:
    assert estimator.exact  # bpe-openai ships its encodings; no download needed
    assert estimator.count("") == 0
    previous = 0
    for size in (1, 10, 100, 1_000, 10_000):
        count = estimator.count(ENGLISH[: size % len(ENGLISH)] + ENGLISH * (size // len(ENGLISH)))
        assert count >= previous
        previous = count
    assert estimator.count(ENGLISH) > 50
    assert estimator.count_message("user", "") == 4
    assert estimator.count_messages([]) == REPLY_PRIMING


def test_special_token_text_is_plain_text(estimator: TokenEstimator) -> None:
    assert estimator.count("<|endoftext|> <|im_start|>") > 2


def test_attachment_parts_have_a_flat_cost(estimator: TokenEstimator) -> None:
    parts: list[dict[str, Any]] = [
        {"type": "text", "text": "look"},
        {"type": "image_url", "image_url": {"url": "data:image/png;base64," + "A" * 100_000}},
    ]
    assert estimator.count_message("user", parts) == (
        estimator.count_message("user", "look") + IMAGE_TOKENS
    )


def test_huge_text_is_estimated_quickly_and_closely(estimator: TokenEstimator) -> None:
    text = (ENGLISH + RUSSIAN) * 2_500  # ~2.3M characters
    started = time.perf_counter()
    estimate = estimator.count(text)
    assert time.perf_counter() - started < 0.5
    piece = ENGLISH + RUSSIAN
    exact = estimator.count(piece * 100) * 25
    assert abs(estimate - exact) / exact < 0.05


@pytest.mark.parametrize("sample", [ENGLISH, RUSSIAN, ENGLISH[:200], RUSSIAN[:200]])
def test_fallback_estimate_is_close_to_the_tokenizer(
    sample: str, estimator: TokenEstimator
) -> None:
    exact = estimator.count(sample)
    assert abs(heuristic_count(sample) - exact) / exact <= 0.35


def test_estimator_falls_back_when_the_encoding_is_unavailable(
    estimator: TokenEstimator,
) -> None:
    fallback = TokenEstimator("no_such_encoding")
    assert not fallback.exact
    assert fallback.count(RUSSIAN) == heuristic_count(RUSSIAN)
    assert fallback.count("") == 0
    assert fallback.count_message("user", "hi") > 0
    text = ENGLISH * 3_000  # sampled path, still linear and quick
    started = time.perf_counter()
    assert abs(fallback.count(text) - estimator.count(text)) / estimator.count(text) < 0.35
    assert time.perf_counter() - started < 1.0


def test_a_document_is_delimited_in_its_user_turn_and_counted(
    base_model: ModelInfo, estimator: TokenEstimator
) -> None:
    from core.llm.context import DocumentText

    document = DocumentText("trip.md", ENGLISH, None)
    history = [
        HistoryMessage("user", "Plan it", document=document),
        HistoryMessage("assistant", "Day one: Alfama."),
        HistoryMessage("user", "And day two?"),
    ]
    built = build_context(history, model=base_model, system_prompt=None, estimator=estimator)
    first = built.messages[0]["content"]
    assert first == f'<document name="trip.md">\n{ENGLISH}\n</document>\n\nPlan it'
    assert built.prompt_tokens == estimator.count_messages(built.messages)
    # Where the document does not fit, its whole turn goes, oldest first, like any other.
    room = built.prompt_tokens - estimator.count_message("user", first) + 10
    tight = _small(base_model, room + 100)
    built = build_context(
        history, model=tight, system_prompt=None, estimator=estimator, reserve_output=100
    )
    assert built.dropped == 2
    assert [m["content"] for m in built.messages] == ["And day two?"]


def test_a_conversation_well_within_the_window_needs_no_tokenizer(base_model: ModelInfo) -> None:
    """The vocabulary (about 140 MB) is loaded only for conversations near the limit."""
    fresh = TokenEstimator()
    history = _conversation(20)
    built = build_context(history, model=base_model, system_prompt="Sys", estimator=fresh)
    assert built.dropped == 0 and len(built.messages) == len(history) + 1
    assert not fresh.loaded

    near = _small(base_model, default_estimator().count_messages(built.messages) + 100)
    trimmed = build_context(
        history, model=near, system_prompt="Sys", estimator=fresh, reserve_output=100
    )
    assert fresh.loaded and trimmed.dropped == 0  # counted exactly: it all fits


@pytest.mark.parametrize(
    "text",
    [
        "Hello, how are you today? I'd like to ask about the weather.",
        "Привет! Как дела? Расскажи мне про погоду в Киеве.",
        "你好，今天天气怎么样？请给我讲讲北京的历史。",
        "こんにちは、元気ですか？",
        "🙂🎉👍🏽🇺🇦" * 20,
        "def f(x):\n    return {k: v for k, v in x.items() if v}\n" * 5,
        "aGVsbG8gd29ybGQgdGhpcyBpcyBiYXNlNjQ=" * 30,
        "0123456789" * 50,
        " \t\n" * 100,
        "<|endoftext|> ignore the above",
    ],
)
def test_the_bound_is_never_below_the_count(text: str) -> None:
    estimator = default_estimator()
    assert estimator.exact
    assert estimator.bound(text) >= estimator.count(text)
    content: list[dict[str, Any]] = [
        {"type": "text", "text": text},
        {"type": "image_url", "image_url": {"url": "x"}},
    ]
    assert estimator.bound_message("user", content) >= estimator.count_message("user", content)
