"""Streaming client for OpenAI-compatible chat APIs (OpenRouter first).

Timing is enforced here with asyncio deadlines around every read, because a
provider can hold a connection open forever while sending keep-alives, and an
httpx read timeout only measures the gap between bytes:

- connect: httpx's connect timeout;
- first token: from the start of an attempt until the first content or
  reasoning delta. It is an absolute deadline, so SSE comment keep-alives
  (": OPENROUTER PROCESSING") do not extend it;
- idle: the longest silence allowed once the first token arrived. Any line,
  comments included, resets it: after the first token a keep-alive proves the
  upstream is still generating.

Retries happen only before the first token reached the caller. After that a
failure raises (StreamInterrupted, or LLMTimeout for an idle timeout) and the
caller keeps the partial text it already has.
"""

from __future__ import annotations

import asyncio
import contextlib
import email.utils
import json
import logging
import random
from collections.abc import AsyncGenerator, AsyncIterator, Awaitable, Callable
from dataclasses import dataclass
from datetime import UTC, datetime
from types import TracebackType
from typing import TYPE_CHECKING, Any, Self, cast

import httpx

from core import metrics
from core.llm.citations import Citation, parse_annotations
from core.llm.errors import (
    LLMError,
    LLMTimeout,
    ProviderError,
    StreamInterrupted,
    TimeoutPhase,
    error_for_status,
)

if TYPE_CHECKING:
    from core.config import LLMSettings

log = logging.getLogger(__name__)

# Each first-token timeout already cost the user a full wait: retry it once at most.
_MAX_FIRST_TOKEN_RETRIES = 1
# Backstop for httpx's own read/write/pool timeouts; the asyncio deadlines fire first.
_HTTPX_BACKSTOP = 5.0
# After `[DONE]` the body's end is read for at most this long (and this many lines),
# so the connection goes back to the pool; past either, it is closed.
_DRAIN_SECONDS = 0.25
_DRAIN_LINES = 16
# Idle connections kept for the next answers.
_KEEP_IDLE = 20


@dataclass(frozen=True)
class Usage:
    prompt_tokens: int
    completion_tokens: int
    total_tokens: int
    cost: float | None = None  # OpenRouter sends usage.cost, in credits (USD)


@dataclass(frozen=True)
class StreamChunk:
    text: str = ""  # content delta
    reasoning: str = ""  # reasoning delta (delta.reasoning or delta.reasoning_content)
    usage: Usage | None = None
    finish_reason: str | None = None
    # Web-search sources (OpenRouter `url_citation` annotations) this chunk carried.
    citations: tuple[Citation, ...] = ()


class LLMClient:
    """Talks to `{base_url}/chat/completions` and `{base_url}/models`."""

    def __init__(
        self,
        base_url: str,
        api_key: str | None = None,
        *,
        app_url: str | None = None,
        app_title: str | None = None,
        connect_timeout: float = 10.0,
        first_token_timeout: float = 60.0,
        idle_timeout: float = 60.0,
        max_retries: int = 3,
        backoff_base: float = 0.5,
        backoff_max: float = 8.0,
        max_retry_after: float = 30.0,
        http: httpx.AsyncClient | None = None,
    ) -> None:
        self._base_url = base_url.rstrip("/")
        self._api_key = api_key
        self._app_url = app_url
        self._app_title = app_title
        self._connect_timeout = connect_timeout
        self._first_token_timeout = first_token_timeout
        self._idle_timeout = idle_timeout
        self._max_retries = max_retries
        self._backoff_base = backoff_base
        self._backoff_max = backoff_max
        # A longer Retry-After is not worth keeping the user waiting for.
        self._max_retry_after = max_retry_after
        self._timeout = httpx.Timeout(
            max(first_token_timeout, idle_timeout) + _HTTPX_BACKSTOP, connect=connect_timeout
        )
        self._owns_http = http is None
        # httpx allows 100 connections by default: the 101st concurrent answer
        # would wait for a free one. Every streaming answer holds one connection.
        # Idle ones are kept for the next answers (no new TCP and TLS handshake),
        # but few: httpcore's pool walks every connection for each idle one at each
        # request and response (encode/httpcore#928), which at 1,000 streams and
        # 100 idle cost about a third more CPU than with none kept.
        limits = httpx.Limits(max_connections=None, max_keepalive_connections=_KEEP_IDLE)
        self._http = (
            http if http is not None else httpx.AsyncClient(timeout=self._timeout, limits=limits)
        )

    @classmethod
    def from_settings(cls, settings: LLMSettings) -> LLMClient:
        return cls(
            settings.base_url,
            settings.api_key.get_secret_value() if settings.api_key is not None else None,
            app_url=settings.app_url or None,
            app_title=settings.app_title or None,
            connect_timeout=settings.connect_timeout,
            first_token_timeout=settings.first_token_timeout,
            idle_timeout=settings.idle_timeout,
            max_retries=settings.max_retries,
        )

    async def aclose(self) -> None:
        if self._owns_http:
            await self._http.aclose()

    async def __aenter__(self) -> Self:
        return self

    async def __aexit__(
        self,
        exc_type: type[BaseException] | None,
        exc: BaseException | None,
        tb: TracebackType | None,
    ) -> None:
        await self.aclose()

    # -- public calls ---------------------------------------------------------

    async def stream_chat(
        self,
        model: str,
        messages: list[dict[str, Any]],
        *,
        max_tokens: int | None = None,
        temperature: float | None = None,
        extra_body: dict[str, Any] | None = None,
        web_search: bool = False,
    ) -> AsyncGenerator[StreamChunk, None]:
        """Yield the answer as it is generated; raise an LLMError subclass on failure.
        `web_search` turns on OpenRouter's web plugin; its sources come as `citations`."""
        body: dict[str, Any] = {
            "model": model,
            "messages": messages,
            "stream": True,
            "stream_options": {"include_usage": True},
        }
        if max_tokens is not None:
            body["max_tokens"] = max_tokens
        if temperature is not None:
            body["temperature"] = temperature
        if web_search:
            body["plugins"] = [{"id": "web"}]
        if extra_body:
            body.update(extra_body)

        try:
            async with contextlib.aclosing(self._stream_retrying(body)) as chunks:
                async for chunk in chunks:
                    yield chunk
        except LLMError as exc:
            metrics.LLM_ERRORS.labels(exc.code).inc()
            raise

    async def _stream_retrying(self, body: dict[str, Any]) -> AsyncGenerator[StreamChunk, None]:
        failures = first_token_timeouts = 0
        while True:
            delivered = False
            try:
                # aclosing: if our consumer stops, the attempt closes its response now.
                async with contextlib.aclosing(self._attempt(body)) as chunks:
                    async for chunk in chunks:
                        delivered = delivered or bool(chunk.text or chunk.reasoning)
                        yield chunk
                return
            except LLMError as exc:
                if delivered:
                    converted = _after_first_token(exc)
                    if converted is exc:
                        raise
                    raise converted from exc
                if isinstance(exc, LLMTimeout) and exc.phase == "first_token":
                    first_token_timeouts += 1
                    if first_token_timeouts > _MAX_FIRST_TOKEN_RETRIES:
                        raise
                delay = self._retry_delay(exc, failures)
                if delay is None:
                    raise
            failures += 1
            await asyncio.sleep(delay)

    async def list_models(self) -> list[dict[str, Any]]:
        """The provider's model list (the `data` array of GET /models)."""
        payload = await self._retrying(lambda: self._json("GET", "/models"))
        data = payload.get("data") if isinstance(payload, dict) else None
        if not isinstance(data, list):
            raise ProviderError(reason="bad_models_response")
        return [item for item in data if isinstance(item, dict)]

    async def generate_images(self, model: str, prompt: str) -> list[str]:
        """Images (as data: or https URLs) from an image-output model, through
        OpenRouter's chat completions with `modalities: ["image", "text"]`."""
        body: dict[str, Any] = {
            "model": model,
            "messages": [{"role": "user", "content": prompt}],
            "modalities": ["image", "text"],
        }
        payload = await self._retrying(lambda: self._json("POST", "/chat/completions", body))
        if isinstance(payload, dict) and payload.get("error"):
            raise _stream_error(payload["error"])
        urls: list[str] = []
        choices = payload.get("choices") if isinstance(payload, dict) else None
        for choice in choices if isinstance(choices, list) else []:
            message = choice.get("message") if isinstance(choice, dict) else None
            images = message.get("images") if isinstance(message, dict) else None
            for image in images if isinstance(images, list) else []:
                url = image.get("image_url", {}).get("url") if isinstance(image, dict) else None
                if isinstance(url, str) and url:
                    urls.append(url)
        return urls

    async def _retrying(self, call: Callable[[], Awaitable[Any]]) -> Any:
        """A whole-answer call, retried by the same rules as a stream's start."""
        failures = 0
        while True:
            try:
                return await call()
            except LLMError as exc:
                delay = self._retry_delay(exc, failures)
                if delay is None:
                    raise
            failures += 1
            await asyncio.sleep(delay)

    async def _json(self, method: str, path: str, body: dict[str, Any] | None = None) -> Any:
        """One non-streamed request; its JSON body. An image model can take long
        before it answers at all, so the first-token deadline covers the whole answer."""
        deadline = asyncio.get_running_loop().time() + self._first_token_timeout
        request = self._http.build_request(
            method,
            f"{self._base_url}{path}",
            json=body,
            headers=self._headers("application/json"),
            timeout=self._timeout,
        )
        response = await self._send(request, deadline)
        try:
            if response.status_code != 200:
                raise await _status_error(response, deadline)
            return _json_or_none(await _read_body(response, deadline))
        finally:
            await response.aclose()

    # -- one attempt ------------------------------------------------------------

    async def _attempt(self, body: dict[str, Any]) -> AsyncGenerator[StreamChunk, None]:
        deadline = asyncio.get_running_loop().time() + self._first_token_timeout
        request = self._http.build_request(
            "POST",
            f"{self._base_url}/chat/completions",
            json=body,
            headers=self._headers("text/event-stream"),
            timeout=self._timeout,
        )
        response = await self._send(request, deadline)
        try:
            if response.status_code != 200:
                raise await _status_error(response, deadline)
            if "json" in response.headers.get("content-type", ""):
                # Some gateways answer a streaming request with a plain JSON error.
                raise await _json_instead_of_stream(response, deadline)
            async with contextlib.aclosing(self._read_stream(response, deadline)) as chunks:
                async for chunk in chunks:
                    yield chunk
        finally:
            await response.aclose()

    async def _send(self, request: httpx.Request, deadline: float) -> httpx.Response:
        """Send and wait for the response head, as a stream, within the first-token deadline."""
        try:
            async with asyncio.timeout_at(deadline):
                return await self._http.send(request, stream=True)
        except TimeoutError:
            raise LLMTimeout(phase="first_token") from None
        except httpx.ConnectTimeout:
            raise LLMTimeout(phase="connect") from None
        except httpx.TimeoutException:
            raise LLMTimeout(phase="first_token") from None
        except httpx.TransportError as exc:
            raise ProviderError(
                "Couldn't reach the AI provider. Please try again in a moment.",
                retryable=True,
                reason="connect_failed",
                error=type(exc).__name__,
            ) from None

    async def _read_stream(
        self, response: httpx.Response, first_token_deadline: float
    ) -> AsyncGenerator[StreamChunk, None]:
        """Parse the SSE body; see the module docstring for the timing rules."""
        loop = asyncio.get_running_loop()
        got_token = done = False
        finish_reason: str | None = None
        data: list[str] = []
        # httpx types aiter_lines as an iterator, but it is a generator we must close.
        lines = cast(AsyncGenerator[str, None], response.aiter_lines())
        line: str | None = ""
        async with contextlib.aclosing(lines):
            while not done:
                deadline = loop.time() + self._idle_timeout if got_token else first_token_deadline
                line = await _next_line(lines, deadline, "idle" if got_token else "first_token")
                if line is None or line == "":  # end of stream, or end of one event
                    if data:
                        chunk, done = _parse_event("\n".join(data))
                        data.clear()
                        if chunk is not None:
                            got_token = got_token or bool(chunk.text or chunk.reasoning)
                            finish_reason = chunk.finish_reason or finish_reason
                            yield chunk
                    if line is None:
                        break
                    continue
                if line.startswith(":"):
                    continue  # comment: a keep-alive
                field, _, value = line.partition(":")
                if field == "data":
                    data.append(value.removeprefix(" "))
            if done and line is not None:
                await _drain(lines, loop.time() + _DRAIN_SECONDS)
        if not done and finish_reason is None:
            raise StreamInterrupted(reason="ended_early")

    # -- helpers ----------------------------------------------------------------

    def _headers(self, accept: str) -> dict[str, str]:
        headers = {"Accept": accept}
        if self._api_key:
            headers["Authorization"] = f"Bearer {self._api_key}"
        if self._app_url:
            headers["HTTP-Referer"] = self._app_url
        if self._app_title:
            headers["X-Title"] = self._app_title
            headers["X-OpenRouter-Title"] = self._app_title
        return headers

    def _retry_delay(self, exc: LLMError, failures: int) -> float | None:
        """Seconds to wait before the next attempt, or None to give up."""
        if not exc.retryable or failures >= self._max_retries:
            return None
        ceiling = min(self._backoff_max, self._backoff_base * 2**failures)
        delay = random.uniform(ceiling / 2, ceiling)  # jitter spreads out retry bursts
        if exc.retry_after is not None:
            if exc.retry_after > self._max_retry_after:
                return None
            delay = max(delay, exc.retry_after)
        log.warning(
            "LLM attempt failed (%s, status %s); retry %d of %d in %.2fs",
            exc.code,
            exc.status,
            failures + 1,
            self._max_retries,
            delay,
        )
        return delay


async def _next_line(lines: AsyncIterator[str], deadline: float, phase: TimeoutPhase) -> str | None:
    """The next line of the body, None at its end; transport failures become LLMErrors."""
    try:
        async with asyncio.timeout_at(deadline):
            return await anext(lines)
    except StopAsyncIteration:
        return None
    except TimeoutError:
        raise LLMTimeout(phase=phase) from None
    except httpx.TimeoutException:
        raise LLMTimeout(phase=phase) from None
    except httpx.HTTPError as exc:
        raise StreamInterrupted(reason="connection_lost", error=type(exc).__name__) from None


async def _drain(lines: AsyncIterator[str], deadline: float) -> None:
    """Read what follows `[DONE]` up to the body's end. A response closed before
    its end takes its connection with it, and the next answer would wait for a new
    TCP and TLS handshake before its first token."""
    with contextlib.suppress(StopAsyncIteration, TimeoutError, httpx.HTTPError):
        async with asyncio.timeout_at(deadline):
            for _ in range(_DRAIN_LINES):
                await anext(lines)


def _parse_event(payload: str) -> tuple[StreamChunk | None, bool]:
    """One SSE `data` payload -> (chunk to yield, if any; whether the stream is done)."""
    if payload == "[DONE]":
        return None, True
    event = _json_or_none(payload)
    if not isinstance(event, dict):
        raise StreamInterrupted(reason="malformed_chunk")
    error = event.get("error")
    if error:
        raise _stream_error(error)
    text = reasoning = ""
    finish_reason: str | None = None
    citations: tuple[Citation, ...] = ()
    choices = event.get("choices")
    if isinstance(choices, list) and choices and isinstance(choices[0], dict):
        choice = choices[0]
        delta = choice.get("delta")
        if isinstance(delta, dict):
            text = _str(delta.get("content"))
            reasoning = _str(delta.get("reasoning")) or _str(delta.get("reasoning_content"))
        finish_reason = _str(choice.get("finish_reason")) or None
        citations = _citations(choice)
    if finish_reason == "error":
        raise StreamInterrupted(reason="finish_reason_error")
    usage = _usage(event.get("usage"))
    if text or reasoning or usage or finish_reason or citations:
        return StreamChunk(text, reasoning, usage, finish_reason, citations), False
    return None, False


def _citations(choice: dict[str, Any]) -> tuple[Citation, ...]:
    """Annotations of a streamed choice: OpenRouter sends them in `delta`, some
    providers on the choice itself or in a final `message`."""
    found: list[Citation] = []
    for holder in (choice.get("delta"), choice, choice.get("message")):
        if isinstance(holder, dict) and "annotations" in holder:
            found += parse_annotations(holder["annotations"])
    return tuple(found)


def _after_first_token(exc: LLMError) -> LLMError:
    """What the caller sees for a failure once it holds part of the answer."""
    if isinstance(exc, StreamInterrupted | LLMTimeout):
        return exc
    interrupted = StreamInterrupted(status=exc.status, cause=exc.code)
    interrupted.details.update(exc.details)
    return interrupted


def _stream_error(error: object) -> LLMError:
    """An `error` object inside a 200 stream (OpenRouter: {"code": 429, "message": ...})."""
    if not isinstance(error, dict):
        return error_for_status(None, str(error))
    code = error.get("code")
    status = code if isinstance(code, int) and 400 <= code <= 599 else None
    return error_for_status(status, _str(error.get("message")), code=code)


async def _read_body(response: httpx.Response, deadline: float) -> bytes:
    try:
        async with asyncio.timeout_at(deadline):
            return await response.aread()
    except TimeoutError:
        raise LLMTimeout(phase="first_token") from None
    except httpx.HTTPError as exc:
        raise ProviderError(
            retryable=True, reason="read_failed", error=type(exc).__name__
        ) from None


async def _status_error(response: httpx.Response, deadline: float) -> LLMError:
    try:
        raw = await _read_body(response, deadline)
    except LLMError:
        raw = b""  # the status alone is enough to classify the failure
    message, code = _error_fields(raw)
    return error_for_status(
        response.status_code, message, code=code, retry_after=_retry_after(response.headers)
    )


async def _json_instead_of_stream(response: httpx.Response, deadline: float) -> LLMError:
    payload = _json_or_none(await _read_body(response, deadline))
    if isinstance(payload, dict) and payload.get("error"):
        return _stream_error(payload["error"])
    return ProviderError(reason="not_a_stream")


def _error_fields(raw: bytes) -> tuple[str, object]:
    """(message, code) of a provider error body, whatever its shape."""
    payload = _json_or_none(raw)
    error = payload.get("error") if isinstance(payload, dict) else None
    if isinstance(error, dict):
        message = _str(error.get("message"))
        # OpenRouter nests the upstream provider's own wording in metadata.raw.
        metadata = error.get("metadata")
        if isinstance(metadata, dict) and isinstance(metadata.get("raw"), str):
            message = f"{message} ({metadata['raw']})"
        return message, error.get("code")
    if isinstance(error, str):
        return error, None
    return raw.decode("utf-8", "replace")[:500], None


def _retry_after(headers: httpx.Headers) -> float | None:
    """Seconds asked by `retry-after-ms` or `Retry-After` (seconds or an HTTP date)."""
    with contextlib.suppress(ValueError):
        if "retry-after-ms" in headers:
            return max(0.0, float(headers["retry-after-ms"]) / 1000)
    value = headers.get("retry-after")
    if value is None:
        return None
    with contextlib.suppress(ValueError):
        return max(0.0, float(value))
    with contextlib.suppress(TypeError, ValueError):
        when = email.utils.parsedate_to_datetime(value)
        if when.tzinfo is None:  # "-0000" dates come back naive, and mean UTC
            when = when.replace(tzinfo=UTC)
        return max(0.0, (when - datetime.now(UTC)).total_seconds())
    return None


def _usage(raw: object) -> Usage | None:
    if not isinstance(raw, dict):
        return None
    prompt = _int(raw.get("prompt_tokens"))
    completion = _int(raw.get("completion_tokens"))
    cost = raw.get("cost")
    return Usage(
        prompt_tokens=prompt,
        completion_tokens=completion,
        total_tokens=_int(raw.get("total_tokens")) or prompt + completion,
        cost=float(cost) if isinstance(cost, int | float) and not isinstance(cost, bool) else None,
    )


def _json_or_none(raw: str | bytes) -> Any:
    try:
        return json.loads(raw)
    except ValueError:  # includes JSONDecodeError and UnicodeDecodeError
        return None


def _str(value: object) -> str:
    return value if isinstance(value, str) else ""


def _int(value: object) -> int:
    return value if isinstance(value, int) and not isinstance(value, bool) else 0
