"""Typed failures of an LLM call, each with a message fit to show the user.

`retryable` says whether the same request may succeed if sent again; the
client only acts on it before the first token reached the caller. `details`
carries the provider's own message for logs, never credentials.
"""

from __future__ import annotations

import re
from typing import Literal

from core.errors import OneAIError

TimeoutPhase = Literal["connect", "first_token", "idle"]


class LLMError(OneAIError):
    """Base for every failure of a call to the model provider."""

    code = "llm_error"
    user_message = "The AI model could not answer right now. Please try again."
    retryable = False

    def __init__(
        self,
        user_message: str | None = None,
        *,
        status: int | None = None,
        retryable: bool | None = None,
        retry_after: float | None = None,
        **details: object,
    ) -> None:
        super().__init__(user_message, **details)
        self.status = status
        # Seconds the provider asked us to wait (Retry-After), on 429 and some 5xx.
        self.retry_after = retry_after
        if retryable is not None:
            self.retryable = retryable


class RateLimited(LLMError):
    code = "rate_limited"
    user_message = "The AI model is getting too many requests right now. Please try again shortly."
    retryable = True

    def __init__(
        self,
        user_message: str | None = None,
        *,
        status: int | None = 429,
        retryable: bool | None = None,
        retry_after: float | None = None,
        **details: object,
    ) -> None:
        super().__init__(
            user_message, status=status, retryable=retryable, retry_after=retry_after, **details
        )


class OutOfCredits(LLMError):
    code = "out_of_credits"
    user_message = (
        "The AI service has run out of credits for now. The bot's owner has to top it up; "
        "sorry for the trouble."
    )


class ModelUnavailable(LLMError):
    code = "model_unavailable"
    user_message = "This model is unavailable right now. Please pick another model."


class ContextTooLong(LLMError):
    code = "context_too_long"
    user_message = (
        "This conversation is too long for the model. Please start a new chat "
        "or pick a model with a larger context."
    )


class LLMTimeout(LLMError):
    code = "timeout"
    user_message = "The AI model took too long to answer. Please try again."
    retryable = True

    def __init__(
        self,
        user_message: str | None = None,
        *,
        phase: TimeoutPhase,
        status: int | None = None,
        retryable: bool | None = None,
        **details: object,
    ) -> None:
        super().__init__(
            user_message, status=status, retryable=retryable, retry_after=None, **details
        )
        self.phase: TimeoutPhase = phase


class StreamInterrupted(LLMError):
    """The answer broke off. Retryable only in the sense that nothing was shown yet."""

    code = "interrupted"
    user_message = "The answer was cut off by the AI provider. Please try again."
    retryable = True


class AuthenticationFailed(LLMError):
    code = "auth_failed"
    user_message = (
        "The bot could not sign in to the AI service. Please try again later; "
        "if this keeps happening, tell the bot's owner."
    )


class ProviderError(LLMError):
    code = "provider_error"
    user_message = "The AI provider returned an error. Please try again in a moment."


# Provider wording for "the prompt does not fit", across OpenAI, Anthropic, Google and others.
_CONTEXT_RE = re.compile(
    r"context[ _-]?(length|window)|maximum context|too many tokens|prompt is too long"
    r"|token limit|tokens? exceeds?|reduce the length",
    re.IGNORECASE,
)
_UNAVAILABLE_RE = re.compile(r"no endpoints|unavailable", re.IGNORECASE)
# OpenRouter answers 403 when its moderation flags the input: not a credentials problem.
_MODERATION_RE = re.compile(r"flagged|moderation", re.IGNORECASE)
_MODERATION_MESSAGE = "The AI provider's moderation refused this message. Please rephrase it."
# String codes some providers send instead of (or inside) an HTTP status.
_CODE_STATUS = {
    "rate_limit_exceeded": 429,
    "insufficient_quota": 402,
    "model_not_found": 404,
    "invalid_api_key": 401,
    "server_error": 500,
}


def error_for_status(
    status: int | None,
    message: str = "",
    *,
    code: object = None,
    retry_after: float | None = None,
) -> LLMError:
    """Map a provider failure (HTTP status, or an error object inside a stream) to a type.

    `status` is None for in-stream errors whose code is not numeric; those are
    treated as transient server-side failures.
    """
    if status is None and isinstance(code, str):
        status = _CODE_STATUS.get(code)
    wording = f"{message} {code or ''}"

    def make(
        kind: type[LLMError], retryable: bool | None = None, text: str | None = None
    ) -> LLMError:
        return kind(
            text,
            status=status,
            retryable=retryable,
            retry_after=retry_after,
            provider_message=message[:500],
            provider_code=code,
        )

    if code == "context_length_exceeded" or (
        status in (None, 400, 413) and _CONTEXT_RE.search(wording)
    ):
        return make(ContextTooLong)
    if code == "insufficient_quota" or status == 402:
        return make(OutOfCredits)
    if status == 429:
        return make(RateLimited)
    if status == 403 and _MODERATION_RE.search(wording):
        return make(ProviderError, text=_MODERATION_MESSAGE)
    if status in (401, 403):
        return make(AuthenticationFailed)
    if status == 404:
        return make(ModelUnavailable)
    if status in (502, 503) and _UNAVAILABLE_RE.search(wording):
        # The provider may route to another endpoint a moment later.
        return make(ModelUnavailable, retryable=True)
    return make(ProviderError, retryable=status is None or status == 408 or status >= 500)
