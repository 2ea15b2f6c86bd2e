"""Turn a conversation into the messages sent to a model, trimmed to fit its context."""

from __future__ import annotations

import functools
import math
from collections.abc import Sequence
from dataclasses import dataclass, field
from typing import Any

from core.errors import OneAIError
from core.llm.catalog import ModelInfo
from core.llm.tokens import (
    AUDIO_TOKENS_PER_SECOND,
    REPLY_PRIMING,
    TokenEstimator,
    default_estimator,
)


@dataclass(frozen=True)
class DocumentText:
    """A document sent with a user message, as the model reads it."""

    name: str
    text: str
    pages: int | None = None
    # Only the first `limit` characters go to the model (the person chose "the
    # first part"); the part is marked as such. None: the whole text.
    limit: int | None = None


@dataclass(frozen=True)
class AudioClip:
    """A voice note or audio file sent with a user message, as a model that listens
    gets it: an OpenAI-format `input_audio` part."""

    data: str  # base64 of the recording's bytes
    format: str  # "ogg", "mp3", "wav", ...
    seconds: int

    @property
    def tokens(self) -> int:
        return self.seconds * AUDIO_TOKENS_PER_SECOND


@dataclass(frozen=True)
class HistoryMessage:
    role: str  # "user" | "assistant"
    content: str
    images: tuple[str, ...] = ()  # data: or https URLs; sent to vision models in user turns
    document: DocumentText | None = None  # user turns only
    audio: AudioClip | None = None  # user turns only


def audio_marker(seconds: int) -> str:
    """What a model that does not listen reads in place of a recording."""
    return f"[voice note, {seconds} s]"


def document_block(document: DocumentText) -> str:
    """The document's text, delimited and named, as it opens its user turn."""
    name = document.name.replace('"', "'")
    attributes = f'name="{name}"'
    if document.pages:
        attributes += f' pages="{document.pages}"'
    text = document.text
    if document.limit is not None and document.limit < len(text):
        share = max(1, 100 * document.limit // max(1, len(text)))
        attributes += f' part="only the first {share}%: the rest did not fit"'
        text = text[: document.limit]
    return f"<document {attributes}>\n{text}\n</document>"


def message_text(message: HistoryMessage) -> str:
    """A message's text as the model gets it: a document first, then the words."""
    if message.document is None or message.role != "user":
        return message.content
    return f"{document_block(message.document)}\n\n{message.content}".rstrip()


def _listens(message: HistoryMessage, model: ModelInfo) -> bool:
    return message.audio is not None and message.role == "user" and model.audio


def _cost(message: HistoryMessage, model: ModelInfo, estimator: TokenEstimator) -> int:
    """Tokens of the message as `model` gets it; a recording by its seconds."""
    rendered = _render(message, model)
    tokens = estimator.count_message(rendered["role"], rendered["content"])
    if _listens(message, model):
        assert message.audio is not None
        tokens += message.audio.tokens
    return tokens


def newest_room(
    model: ModelInfo,
    system_prompt: str | None,
    estimator: TokenEstimator,
    reserve_output: int | None = None,
) -> int:
    """Tokens left for the message being answered, once the system prompt and the
    answer's reserve are set aside."""
    reserve = default_reserve(model) if reserve_output is None else max(0, reserve_output)
    used = REPLY_PRIMING
    if system_prompt:
        used += estimator.count_message("system", system_prompt)
    return model.context_length - reserve - used


def _audio_tokens(message: HistoryMessage, model: ModelInfo) -> int:
    """What the message's recording costs `model` (nothing if it does not listen)."""
    return message.audio.tokens if message.audio is not None and _listens(message, model) else 0


def _bound_cost(
    rendered: dict[str, Any], message: HistoryMessage, model: ModelInfo, estimator: TokenEstimator
) -> int:
    """`_cost`'s upper bound for the rendered `message` (no tokenizer)."""
    return estimator.bound_message(rendered["role"], rendered["content"]) + _audio_tokens(
        message, model
    )


def message_cost(message: HistoryMessage, model: ModelInfo, estimator: TokenEstimator) -> int:
    return _cost(message, model, estimator)


class MessageTooLong(OneAIError):
    code = "message_too_long"
    user_message = "That message is too long for this model. Please shorten it or split it up."


@dataclass(frozen=True)
class BuiltContext:
    messages: list[dict[str, Any]]  # OpenAI chat format, ready to send
    dropped: int  # oldest history messages left out to fit
    estimator: TokenEstimator = field(repr=False, compare=False)
    audio_tokens: int = 0  # of the recordings sent, which the parts do not tell

    @functools.cached_property
    def prompt_tokens(self) -> int:
        """The estimate of what `messages` cost (counted when asked: it needs the
        tokenizer, which fitting a short conversation does not)."""
        return self.estimator.count_messages(self.messages) + self.audio_tokens


def default_reserve(model: ModelInfo) -> int:
    """Room kept for the answer: the model's output limit, but at most a quarter of the
    context, since some models allow outputs as long as the whole context."""
    return min(model.max_output_tokens, model.context_length // 4)


def build_context(
    history: Sequence[HistoryMessage],
    *,
    model: ModelInfo,
    system_prompt: str | None,
    estimator: TokenEstimator | None = None,
    reserve_output: int | None = None,
) -> BuiltContext:
    """System prompt first, then as much of `history` (oldest first, ending with the
    user message being answered) as fits, dropping the oldest messages first.

    Raises MessageTooLong when the system prompt and the newest message alone do not fit.
    """
    if not history or history[-1].role != "user":
        raise ValueError("history must end with the user message being answered")
    estimator = estimator or default_estimator()
    reserve = default_reserve(model) if reserve_output is None else max(0, reserve_output)
    budget = model.context_length - reserve
    everything = _all_within_bound(history, model, system_prompt, estimator, budget)
    if everything is not None:
        return everything

    head: list[dict[str, Any]] = []
    used = REPLY_PRIMING
    if system_prompt:
        head.append({"role": "system", "content": system_prompt})
        used += estimator.count_message("system", system_prompt)

    newest = _render(history[-1], model)
    newest_cost = _cost(history[-1], model, estimator)
    audio = _audio_tokens(history[-1], model)
    if used + newest_cost > budget:
        raise _too_long(history[-1], newest_cost, used + newest_cost, budget, model)
    used += newest_cost

    # Walk from the newest backwards so each message is rendered and counted once.
    kept: list[tuple[dict[str, Any], int, int]] = []
    dropped = 0
    for index in range(len(history) - 2, -1, -1):
        message = history[index]
        if _is_empty_answer(message):
            continue
        rendered = _render(message, model)
        cost = _cost(message, model, estimator)
        if used + cost > budget:
            dropped = sum(1 for older in history[: index + 1] if not _is_empty_answer(older))
            break
        kept.append((rendered, cost, _audio_tokens(message, model)))
        used += cost

    # After trimming, a conversation should open with the user, not a dangling answer.
    if dropped and kept and kept[-1][0]["role"] == "assistant":
        used -= kept.pop()[1]
        dropped += 1

    messages = head + [rendered for rendered, _, _ in reversed(kept)] + [newest]
    audio += sum(tokens for _, _, tokens in kept)
    return BuiltContext(messages, dropped, estimator, audio)


def _all_within_bound(
    history: Sequence[HistoryMessage],
    model: ModelInfo,
    system_prompt: str | None,
    estimator: TokenEstimator,
    budget: int,
) -> BuiltContext | None:
    """The whole conversation when even its upper bound fits `budget`, which needs
    no tokenizer; else None (then it is counted exactly)."""
    messages: list[dict[str, Any]] = []
    used = REPLY_PRIMING
    audio = 0
    if system_prompt:
        messages.append({"role": "system", "content": system_prompt})
        used += estimator.bound_message("system", system_prompt)
    for message in history[:-1]:
        if _is_empty_answer(message):
            continue
        rendered = _render(message, model)
        messages.append(rendered)
        used += _bound_cost(rendered, message, model, estimator)
        audio += _audio_tokens(message, model)
        if used > budget:
            return None
    newest = _render(history[-1], model)
    used += _bound_cost(newest, history[-1], model, estimator)
    if used > budget:
        return None
    messages.append(newest)
    return BuiltContext(messages, 0, estimator, audio + _audio_tokens(history[-1], model))


def _is_empty_answer(message: HistoryMessage) -> bool:
    # An answer that failed before its first token leaves an empty assistant message.
    return message.role == "assistant" and not message.content.strip()


def _render(message: HistoryMessage, model: ModelInfo) -> dict[str, Any]:
    # Models without vision get the text only (the caller refuses images earlier anyway).
    # Images go in user turns only: OpenAI and Anthropic reject image parts from the
    # assistant, so a generated image stays out of later requests. A recording goes
    # as an `input_audio` part to a model that listens; any other model reads a
    # marker in its place (the conversation moved to it after the note).
    text = message_text(message)
    user = message.role == "user"
    audio = message.audio if user else None
    if audio is not None and not model.audio:
        text = f"{audio_marker(audio.seconds)}\n\n{text}".rstrip()
        audio = None
    images = message.images if user and model.vision else ()
    if not images and audio is None:
        return {"role": message.role, "content": text}
    parts: list[dict[str, Any]] = []
    if text:
        parts.append({"type": "text", "text": text})
    parts.extend({"type": "image_url", "image_url": {"url": url}} for url in images)
    if audio is not None:
        parts.append(
            {"type": "input_audio", "input_audio": {"data": audio.data, "format": audio.format}}
        )
    return {"role": message.role, "content": parts}


def _too_long(
    message: HistoryMessage, message_tokens: int, needed: int, limit: int, model: ModelInfo
) -> MessageTooLong:
    excess = needed - limit
    text_tokens = max(1, message_tokens)
    if excess >= text_tokens or not message.content:
        # Even an empty message would not fit (huge system prompt or tiny context).
        text = (
            f"{model.name} can't take a message this size here. "
            "Please pick a model with a larger context in /model."
        )
    else:
        share = math.ceil(100 * excess / text_tokens)
        chars = math.ceil(len(message.content) * excess / text_tokens / 100) * 100
        text = (
            f"That message is too long for {model.name}. Please make it about {share}% "
            f"shorter (roughly {chars:,} characters less), or split it into parts."
        )
    return MessageTooLong(text, tokens=needed, limit=limit, model=model.id)
