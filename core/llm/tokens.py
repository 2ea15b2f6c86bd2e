"""Token estimates for fitting a conversation into a model's context, fully offline.

`bpe-openai` ships its encodings inside the package (tiktoken would download them).
If it cannot be loaded we fall back to a character-class heuristic. Either way the
numbers are estimates: providers tokenize differently, so callers keep a margin.

The encoder's vocabulary takes about 140 MB once loaded, so it is loaded only when a
count is needed: most conversations are far below their model's window, which the
UTF-8 length shows without it (`bound`: a byte-level BPE token is at least one
byte, so a text never has more tokens than bytes).
"""

from __future__ import annotations

import functools
import logging
import re
import warnings
from collections.abc import Callable, Mapping, Sequence
from typing import Any

logger = logging.getLogger(__name__)

# OpenAI's chat format spends 3 tokens framing each message, plus the role's own
# token(s): ~4 per message in all.
MESSAGE_FRAMING = 3
# Every reply is primed with `<|start|>assistant<|message|>`.
REPLY_PRIMING = 3
# Flat charge per image (or other attachment) part: a detailed 1024px image costs
# 765 tokens on OpenAI; other providers land in the same range.
IMAGE_TOKENS = 800
# Audio is counted by its length, not its bytes: Gemini bills 32 tokens a second of
# input audio (OpenAI's audio models land near 10/s), so 32/s is the safe side for
# the context budget. `count_message` leaves `input_audio` parts to the caller, who
# knows the seconds (core/llm/context.py).
AUDIO_TOKENS_PER_SECOND = 32

# Texts up to this many characters are counted in full. Longer ones are estimated from
# evenly spread samples totalling this much, so counting a huge paste stays cheap.
_FULL_COUNT_CHARS = 200_000
_SAMPLES = 4
# bpe-openai refuses inputs over 200k tokens; a character is at most ~4 tokens, so
# slices of this size are always accepted.
_SLICE_CHARS = 50_000

# Fallback heuristic, calibrated against o200k_base on English, Russian, Ukrainian,
# German, Arabic, Chinese, Japanese, code, JSON and number-heavy samples: prose lands
# within ~25%, mostly on the over-counting side, which is the safe side for fitting a
# context. tests/test_context.py holds English and Russian to 35%.
_PIECE = re.compile(r"[A-Za-z]+|[^\W\d_]+|\d+|\s+|[^\w\s]+|_+")
_LATIN_LETTERS_PER_TOKEN = 7  # most English words are one token, long ones split
_OTHER_LETTERS_PER_TOKEN = 6.0  # Cyrillic, Greek, Arabic...: a token, then one per ~6 letters
_CJK_CHARS_PER_TOKEN = 1.3  # Chinese, Japanese, Korean
_CJK_START = "\u2e80"
_ASCII_SYMBOL_TOKENS = 0.6  # punctuation often merges with its neighbours
_OTHER_SYMBOL_TOKENS = 1.5  # emoji and other symbols are usually 1-3 tokens
_DIGITS_PER_TOKEN = 3  # o200k splits numbers into groups of up to three digits


def heuristic_count(text: str) -> int:
    """Character-class estimate of o200k_base tokens; O(n), no data files needed."""
    total = 0.0
    for match in _PIECE.finditer(text):
        piece = match.group()
        size = len(piece)
        first = piece[0]
        if first.isalpha():
            if first.isascii():
                total += 1 + (size - 1) // _LATIN_LETTERS_PER_TOKEN
            elif first >= _CJK_START:
                total += size / _CJK_CHARS_PER_TOKEN
            else:
                total += 1 + (size - 1) / _OTHER_LETTERS_PER_TOKEN
        elif first.isdigit():
            total += -(-size // _DIGITS_PER_TOKEN)
        elif first.isspace():
            # A single space joins the next word; newlines and indentation cost tokens.
            newlines = piece.count("\n")
            total += newlines if newlines else (size - 1) / 2
        else:
            ascii_symbols = sum(1 for char in piece if char.isascii())
            total += ascii_symbols * _ASCII_SYMBOL_TOKENS
            total += (size - ascii_symbols) * _OTHER_SYMBOL_TOKENS
    return max(1, round(total)) if text else 0


def _load_encoder(encoding: str) -> Callable[[str], int] | None:
    try:
        with warnings.catch_warnings():
            # It loads its data with a deprecated importlib.resources call; not our concern.
            warnings.simplefilter("ignore", DeprecationWarning)
            import bpe_openai

            encoder = bpe_openai.get_encoding(encoding)
    except Exception as exc:
        logger.warning("bpe-openai unavailable (%r); using a character-based estimate", exc)
        return None

    def count(text: str) -> int:
        # encode_ordinary treats text like "<|endoftext|>" as plain text, as it must be
        # for whatever a user types.
        return len(encoder.encode_ordinary(text))

    return count


class TokenEstimator:
    def __init__(self, encoding: str = "o200k_base") -> None:
        self.encoding = encoding
        self._loaded = False
        self._encoder: Callable[[str], int] | None = None

    @property
    def _exact(self) -> Callable[[str], int] | None:
        if not self._loaded:
            self._encoder = _load_encoder(self.encoding)
            self._loaded = True
        return self._encoder

    @property
    def exact(self) -> bool:
        """Whether counts come from the real tokenizer rather than the heuristic."""
        return self._exact is not None

    @property
    def loaded(self) -> bool:
        """Whether the tokenizer was needed (and so loaded) yet."""
        return self._loaded

    @staticmethod
    def bound(text: str) -> int:
        """At least as many tokens as `text` has: its UTF-8 length (no vocabulary)."""
        return len(text.encode("utf-8", "surrogatepass"))

    def bound_message(self, role: str, content: str | Sequence[Mapping[str, Any]]) -> int:
        """`count_message`'s upper bound, from `bound`."""
        return _message_tokens(role, content, self.bound)

    def count(self, text: str) -> int:
        if len(text) <= _FULL_COUNT_CHARS:
            return self._count_slices(text)
        # Scale evenly spread samples up to the full length.
        size = _FULL_COUNT_CHARS // _SAMPLES
        step = (len(text) - size) // (_SAMPLES - 1)
        sampled = sum(self._count_slices(text[i * step : i * step + size]) for i in range(_SAMPLES))
        return round(sampled * len(text) / (size * _SAMPLES))

    def _count_slices(self, text: str) -> int:
        if self._exact is None:
            return heuristic_count(text)
        total = 0
        for start in range(0, len(text), _SLICE_CHARS):
            piece = text[start : start + _SLICE_CHARS]
            try:
                total += self._exact(piece)
            except Exception:  # never let an odd input break a reply over an estimate
                total += heuristic_count(piece)
        return total

    def count_message(self, role: str, content: str | Sequence[Mapping[str, Any]]) -> int:
        return _message_tokens(role, content, self.count)

    def count_messages(self, messages: Sequence[Mapping[str, Any]]) -> int:
        total = REPLY_PRIMING
        for message in messages:
            total += self.count_message(str(message["role"]), message.get("content") or "")
        return total


def _message_tokens(
    role: str, content: str | Sequence[Mapping[str, Any]], count: Callable[[str], int]
) -> int:
    """A chat message's tokens with `count` for its texts: the framing, the role,
    the text parts, and a flat charge for an image part."""
    tokens = MESSAGE_FRAMING + count(role)
    if isinstance(content, str):
        return tokens + count(content)
    for part in content:
        if part.get("type") == "text":
            tokens += count(str(part.get("text") or ""))
        elif part.get("type") == "input_audio":
            continue  # counted by its seconds: AUDIO_TOKENS_PER_SECOND
        else:  # image_url and other attachments
            tokens += IMAGE_TOKENS
    return tokens


@functools.cache
def default_estimator() -> TokenEstimator:
    return TokenEstimator()
