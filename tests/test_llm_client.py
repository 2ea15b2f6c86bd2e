"""LLMClient against the FakeLLM server, over real HTTP on 127.0.0.1."""

from __future__ import annotations

import asyncio
import email.utils
import socket
import sys
import time
from collections.abc import AsyncIterator, Iterator
from typing import Any

import httpx
import pytest

from core.config import LLMSettings
from core.llm.client import LLMClient, StreamChunk, Usage
from core.llm.errors import (
    AuthenticationFailed,
    ContextTooLong,
    LLMError,
    LLMTimeout,
    ModelUnavailable,
    OutOfCredits,
    ProviderError,
    RateLimited,
    StreamInterrupted,
)
from tests.fakes.llm_server import DEFAULT_MODELS, FakeLLM, Reply

MODEL = "openai/gpt-4o-mini"
MESSAGES: list[dict[str, Any]] = [{"role": "user", "content": "hi there"}]


@pytest.fixture
async def llm() -> AsyncIterator[FakeLLM]:
    async with FakeLLM() as server:
        yield server


def client_for(llm: FakeLLM, **options: Any) -> LLMClient:
    """A client with test-sized timeouts and near-instant backoff."""
    settings: dict[str, Any] = {
        "connect_timeout": 1.0,
        "first_token_timeout": 2.0,
        "idle_timeout": 2.0,
        "backoff_base": 0.01,
        "backoff_max": 0.05,
    }
    return LLMClient(llm.base_url, **(settings | options))


async def collect(
    client: LLMClient, into: list[StreamChunk] | None = None, **kwargs: Any
) -> list[StreamChunk]:
    """Consume one stream; `into` keeps what arrived even if it then raises."""
    chunks = into if into is not None else []
    async for chunk in client.stream_chat(MODEL, MESSAGES, **kwargs):
        chunks.append(chunk)
    return chunks


def text_of(chunks: list[StreamChunk]) -> str:
    return "".join(c.text for c in chunks)


# -- happy path -------------------------------------------------------------------


async def test_text_deltas_arrive_as_they_are_sent(llm: FakeLLM) -> None:
    llm.default = Reply(text="one two three four five", chunk_delay=0.1)
    arrivals: list[float] = []
    chunks: list[StreamChunk] = []
    async with client_for(llm) as client:
        started = time.monotonic()
        async for chunk in client.stream_chat(MODEL, MESSAGES):
            chunks.append(chunk)
            if chunk.text:
                arrivals.append(time.monotonic() - started)
    assert text_of(chunks) == "one two three four five"
    assert len(arrivals) == 5
    # The server needs ~0.4 s to send it all; the first delta must not wait for that.
    assert arrivals[0] < arrivals[-1] - 0.25
    assert chunks[-1].usage is not None
    assert any(c.finish_reason == "stop" for c in chunks)


class _ImportWatch:
    """A meta-path finder that only records what was looked up."""

    def __init__(self) -> None:
        self.names: list[str] = []

    def find_spec(self, name: str, *_args: object) -> None:
        self.names.append(name)


async def test_a_streamed_request_never_searches_for_modules(llm: FakeLLM) -> None:
    """The hot path must not import: an import that fails (httpcore asks for
    sniffio on every request) is not cached and searches sys.path each time."""
    llm.default = Reply(text="one two three")
    async with client_for(llm) as client:
        await collect(client)  # first use may import lazily
        watch = _ImportWatch()
        sys.meta_path.insert(0, watch)
        try:
            for _ in range(3):
                assert text_of(await collect(client)) == "one two three"
        finally:
            sys.meta_path.remove(watch)
    assert watch.names == []


async def test_request_body_and_headers(llm: FakeLLM) -> None:
    client = client_for(
        llm, api_key="sk-test-123", app_url="https://example.org", app_title="OneAI"
    )
    async with client:
        await collect(client, max_tokens=64, temperature=0.3, extra_body={"reasoning": {}})
    (request,) = llm.requests
    assert request.body == {
        "model": MODEL,
        "messages": MESSAGES,
        "stream": True,
        "stream_options": {"include_usage": True},
        "max_tokens": 64,
        "temperature": 0.3,
        "reasoning": {},
    }
    assert request.headers["authorization"] == "Bearer sk-test-123"
    assert request.headers["http-referer"] == "https://example.org"
    assert request.headers["x-title"] == "OneAI"
    assert request.headers["x-openrouter-title"] == "OneAI"
    assert request.headers["accept"] == "text/event-stream"


async def test_optional_fields_and_headers_left_out(llm: FakeLLM) -> None:
    async with client_for(llm) as client:
        await collect(client)
    (request,) = llm.requests
    assert "max_tokens" not in request.body and "temperature" not in request.body
    assert "authorization" not in request.headers and "x-title" not in request.headers


async def test_from_settings(llm: FakeLLM) -> None:
    settings = LLMSettings.model_validate(
        {"base_url": llm.base_url, "LLM_API_KEY": "sk-from-settings", "app_title": "Bot"}
    )
    async with LLMClient.from_settings(settings) as client:
        assert text_of(await collect(client)) == Reply().text
    assert llm.requests[0].headers["authorization"] == "Bearer sk-from-settings"
    assert llm.requests[0].headers["x-title"] == "Bot"


async def test_comment_lines_are_skipped(llm: FakeLLM) -> None:
    llm.default = Reply(text="Fine, thanks", comments=3, comment_interval=0.02)
    async with client_for(llm) as client:
        chunks = await collect(client)
    assert text_of(chunks) == "Fine, thanks"
    assert all(c.text or c.reasoning or c.usage or c.finish_reason for c in chunks)


async def test_comments_do_not_count_as_a_first_token(llm: FakeLLM) -> None:
    llm.default = Reply(comments=20, comment_interval=0.05)
    async with client_for(llm, first_token_timeout=0.3, max_retries=0) as client:
        with pytest.raises(LLMTimeout) as caught:
            await collect(client)
    assert caught.value.phase == "first_token"


async def test_reasoning_deltas_are_yielded_before_content(llm: FakeLLM) -> None:
    llm.default = Reply(text="42", reasoning=["Let me ", "think."])
    async with client_for(llm) as client:
        chunks = await collect(client)
    assert "".join(c.reasoning for c in chunks) == "Let me think."
    assert [c.reasoning for c in chunks[:2]] == ["Let me ", "think."]
    assert text_of(chunks) == "42"


async def test_reasoning_content_field_is_read(llm: FakeLLM) -> None:
    llm.default = Reply(text="ok", reasoning=["hmm"], reasoning_key="reasoning_content")
    async with client_for(llm) as client:
        chunks = await collect(client)
    assert "".join(c.reasoning for c in chunks) == "hmm"


async def test_reasoning_counts_as_activity_for_the_first_token(llm: FakeLLM) -> None:
    # Content only starts ~0.45 s in, past the first-token timeout; reasoning came first.
    llm.default = Reply(text="done", reasoning=["a", "b", "c", "d"], chunk_delay=0.15)
    async with client_for(llm, first_token_timeout=0.3, idle_timeout=1.0) as client:
        chunks = await collect(client)
    assert text_of(chunks) == "done"
    assert llm.requests_count == 1


async def test_usage_is_read_from_the_final_chunk(llm: FakeLLM) -> None:
    usage = {"prompt_tokens": 11, "completion_tokens": 7, "total_tokens": 18, "cost": 0.00042}
    llm.default = Reply(usage=usage)
    async with client_for(llm) as client:
        chunks = await collect(client)
    assert chunks[-1] == StreamChunk(usage=Usage(11, 7, 18, 0.00042))


async def test_echo_reply_reflects_the_last_user_message(llm: FakeLLM) -> None:
    llm.default = Reply(text=None)
    async with client_for(llm) as client:
        assert text_of(await collect(client)) == "Echo: hi there"


async def test_finish_reason_then_eof_without_done_is_complete(llm: FakeLLM) -> None:
    llm.default = Reply(text="all here", send_done=False)
    async with client_for(llm) as client:
        assert text_of(await collect(client)) == "all here"


async def test_answers_in_a_row_share_one_connection(llm: FakeLLM) -> None:
    """The body is read to its end after [DONE], so the connection returns to the
    pool: no new TCP (and, against a real provider, TLS) handshake before each answer."""
    llm.default = Reply(text="once more")
    async with client_for(llm) as client:
        for _ in range(3):
            assert text_of(await collect(client)) == "once more"
    assert len(llm.requests) == 3
    assert len({request.peer for request in llm.requests}) == 1


async def test_a_body_held_open_after_done_ends_the_answer_within_the_drain_bound(
    llm: FakeLLM,
) -> None:
    llm.default = Reply(text="all here", hold_after_done=30.0)
    async with client_for(llm) as client:
        started = time.monotonic()
        assert text_of(await collect(client)) == "all here"
        assert time.monotonic() - started < 2.0
        # That connection was given up; the next answer opens another one.
        llm.default = Reply(text="again")
        assert text_of(await collect(client)) == "again"
    first, second = llm.requests
    assert first.peer != second.peer
    await first.wait_finished()
    assert first.client_disconnected


# -- broken streams ----------------------------------------------------------------


async def test_error_object_before_first_token_is_typed(llm: FakeLLM) -> None:
    llm.default = Reply(
        error_in_stream_after=0, stream_error={"code": 402, "message": "No credits"}
    )
    async with client_for(llm) as client:
        with pytest.raises(OutOfCredits) as caught:
            await collect(client)
    assert caught.value.details["provider_message"] == "No credits"
    assert llm.requests_count == 1


async def test_retryable_error_object_before_first_token_is_retried(llm: FakeLLM) -> None:
    llm.script(Reply(error_in_stream_after=0, stream_error={"code": 429, "message": "Slow down"}))
    async with client_for(llm) as client:
        assert text_of(await collect(client)) == Reply().text
    assert llm.requests_count == 2


async def test_error_object_after_first_token_interrupts(llm: FakeLLM) -> None:
    llm.default = Reply(
        text="a b c", error_in_stream_after=2, stream_error={"code": 429, "message": "Slow down"}
    )
    received: list[StreamChunk] = []
    async with client_for(llm) as client:
        with pytest.raises(StreamInterrupted) as caught:
            await collect(client, received)
    assert text_of(received) == "a b "
    assert caught.value.details["cause"] == "rate_limited"
    assert caught.value.details["provider_message"] == "Slow down"
    assert caught.value.status == 429
    assert llm.requests_count == 1


async def test_truncated_stream_interrupts(llm: FakeLLM) -> None:
    llm.default = Reply(text="a b c d", truncate_after=2)
    received: list[StreamChunk] = []
    async with client_for(llm) as client:
        with pytest.raises(StreamInterrupted):
            await collect(client, received)
    assert text_of(received) == "a b "
    assert llm.requests_count == 1


async def test_truncated_before_first_token_is_retried(llm: FakeLLM) -> None:
    llm.script(Reply(truncate_after=0))
    async with client_for(llm) as client:
        assert text_of(await collect(client)) == Reply().text
    assert llm.requests_count == 2


async def test_finish_reason_error_interrupts(llm: FakeLLM) -> None:
    llm.default = Reply(text="partial", finish_reason="error")
    async with client_for(llm) as client:
        with pytest.raises(StreamInterrupted):
            await collect(client)


async def test_malformed_chunk_interrupts(llm: FakeLLM) -> None:
    llm.default = Reply(text="a b c", malformed_after=1)
    received: list[StreamChunk] = []
    async with client_for(llm) as client:
        with pytest.raises(StreamInterrupted) as caught:
            await collect(client, received)
    assert caught.value.details["reason"] == "malformed_chunk"
    assert text_of(received) == "a "


async def test_disconnect_mid_stream_interrupts_and_keeps_partial_text(llm: FakeLLM) -> None:
    llm.default = Reply(text="a b c d", disconnect_after=2)
    received: list[StreamChunk] = []
    async with client_for(llm) as client:
        with pytest.raises(StreamInterrupted) as caught:
            await collect(client, received)
    assert text_of(received) == "a b "
    assert caught.value.details["reason"] == "connection_lost"
    assert llm.requests_count == 1  # never retried once text reached the caller


# -- HTTP errors and retries ----------------------------------------------------------


async def test_429_waits_for_retry_after_then_succeeds(llm: FakeLLM) -> None:
    llm.script(Reply.error(429, retry_after=0.5))
    async with client_for(llm) as client:
        assert text_of(await collect(client)) == Reply().text
    first, second = llm.requests
    assert second.received_at - first.received_at >= 0.5


async def test_429_with_long_retry_after_gives_up_at_once(llm: FakeLLM) -> None:
    llm.default = Reply.error(429, retry_after=120)
    async with client_for(llm) as client:
        started = time.monotonic()
        with pytest.raises(RateLimited) as caught:
            await collect(client)
    assert time.monotonic() - started < 1.0
    assert caught.value.retry_after == 120
    assert llm.requests_count == 1


async def test_retry_after_as_http_date(llm: FakeLLM) -> None:
    in_an_hour = email.utils.formatdate(time.time() + 3600, usegmt=True)
    llm.default = Reply.error(429, retry_after=in_an_hour)
    async with client_for(llm) as client:
        with pytest.raises(RateLimited) as caught:
            await collect(client)
    assert caught.value.retry_after is not None
    assert 3590 < caught.value.retry_after <= 3600


@pytest.mark.parametrize(
    ("reply", "error"),
    [
        (Reply.error(402), OutOfCredits),
        (Reply.error(401), AuthenticationFailed),
        (Reply.error(403), AuthenticationFailed),
        (Reply.error(404, "No endpoints found for openai/gpt-9."), ModelUnavailable),
        (
            Reply.error(400, "This endpoint's maximum context length is 8192 tokens."),
            ContextTooLong,
        ),
        (Reply.error(413, "Too many tokens in the prompt"), ContextTooLong),
        (Reply.error(400, "Invalid temperature"), ProviderError),
        (Reply.error(422, "Unprocessable"), ProviderError),
    ],
)
async def test_non_retryable_statuses_are_typed_and_not_retried(
    llm: FakeLLM, reply: Reply, error: type[LLMError]
) -> None:
    llm.default = reply
    async with client_for(llm) as client:
        with pytest.raises(error) as caught:
            await collect(client)
    assert type(caught.value) is error
    assert caught.value.status == reply.status
    assert not caught.value.retryable
    assert llm.requests_count == 1


async def test_500_then_success_is_retried(llm: FakeLLM) -> None:
    llm.script(Reply.error(500))
    async with client_for(llm) as client:
        assert text_of(await collect(client)) == Reply().text
    assert llm.requests_count == 2


async def test_persistent_5xx_gives_up_after_max_retries(llm: FakeLLM) -> None:
    llm.default = Reply.error(502)
    async with client_for(llm, max_retries=2) as client:
        with pytest.raises(ProviderError) as caught:
            await collect(client)
    assert caught.value.status == 502 and caught.value.retryable
    assert llm.requests_count == 3


async def test_503_unavailable_is_model_unavailable(llm: FakeLLM) -> None:
    llm.default = Reply.error(503, "No endpoints available for this model")
    async with client_for(llm, max_retries=0) as client:
        with pytest.raises(ModelUnavailable):
            await collect(client)


async def test_api_key_never_appears_in_errors(llm: FakeLLM) -> None:
    llm.default = Reply.error(401, "Invalid key")
    async with client_for(llm, api_key="sk-secret-XYZ") as client:
        with pytest.raises(AuthenticationFailed) as caught:
            await collect(client)
    exc = caught.value
    assert "sk-secret-XYZ" not in f"{exc} {exc!r} {exc.details} {exc.user_message}"


# -- timeouts -----------------------------------------------------------------------


async def test_first_token_timeout_is_retried_once_at_most(llm: FakeLLM) -> None:
    llm.default = Reply(first_token_delay=2.0)
    async with client_for(llm, first_token_timeout=0.3, max_retries=3) as client:
        started = time.monotonic()
        with pytest.raises(LLMTimeout) as caught:
            await collect(client)
    assert caught.value.phase == "first_token"
    assert llm.requests_count == 2
    assert time.monotonic() - started < 1.5


async def test_first_token_timeout_then_success(llm: FakeLLM) -> None:
    llm.script(Reply(first_token_delay=2.0))
    async with client_for(llm, first_token_timeout=0.3) as client:
        assert text_of(await collect(client)) == Reply().text
    assert llm.requests_count == 2


async def test_idle_timeout_on_a_stalled_stream(llm: FakeLLM) -> None:
    llm.default = Reply(text="a b c", stall_after=1, stall_seconds=5.0)
    received: list[StreamChunk] = []
    async with client_for(llm, idle_timeout=0.3) as client:
        started = time.monotonic()
        with pytest.raises(LLMTimeout) as caught:
            await collect(client, received)
    assert caught.value.phase == "idle"
    assert text_of(received) == "a "
    assert time.monotonic() - started < 1.5
    (request,) = llm.requests
    assert (await request.wait_finished()).client_disconnected


@pytest.fixture
def nothing_listening() -> Iterator[int]:
    """A port that refuses connections."""
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        port: int = sock.getsockname()[1]
    yield port


async def test_connection_refused_is_typed_and_quick(nothing_listening: int) -> None:
    url = f"http://127.0.0.1:{nothing_listening}/v1"
    client = LLMClient(url, max_retries=1, backoff_base=0.01, backoff_max=0.02)
    async with client:
        started = time.monotonic()
        with pytest.raises(ProviderError) as caught:
            await collect(client)
    assert caught.value.details["reason"] == "connect_failed"
    assert caught.value.retryable
    assert time.monotonic() - started < 1.0


@pytest.fixture
def full_backlog() -> Iterator[int]:
    """A port whose accept queue is full, so a new connection hangs (Linux drops the SYN)."""
    with socket.socket() as server:
        server.bind(("127.0.0.1", 0))
        server.listen(0)
        port: int = server.getsockname()[1]
        fillers = [socket.socket() for _ in range(3)]
        for filler in fillers:
            filler.setblocking(False)
            filler.connect_ex(("127.0.0.1", port))
        try:
            yield port
        finally:
            for filler in fillers:
                filler.close()


@pytest.mark.skipif(sys.platform != "linux", reason="relies on Linux dropping SYNs")
async def test_connect_timeout(full_backlog: int) -> None:
    client = LLMClient(f"http://127.0.0.1:{full_backlog}/v1", connect_timeout=0.2, max_retries=0)
    async with client:
        started = time.monotonic()
        with pytest.raises(LLMTimeout) as caught:
            await collect(client)
    assert caught.value.phase == "connect"
    assert time.monotonic() - started < 1.0


# -- cancellation -------------------------------------------------------------------


async def test_cancelling_the_consumer_closes_the_response(llm: FakeLLM) -> None:
    llm.default = Reply(text="a b c d e f g h", chunk_delay=0.2)
    first = asyncio.Event()

    async def consume(client: LLMClient) -> None:
        async for _ in client.stream_chat(MODEL, MESSAGES):
            first.set()

    async with client_for(llm) as client:
        task = asyncio.create_task(consume(client))
        await llm.wait_for_requests(1)
        await asyncio.wait_for(first.wait(), 2.0)
        task.cancel()
        with pytest.raises(asyncio.CancelledError):
            await task
        request = await llm.requests[0].wait_finished()
        assert request.client_disconnected
        assert request.chunks_sent < 8
        await asyncio.sleep(0.3)  # a retry would have arrived by now
    assert llm.requests_count == 1


async def test_closing_the_stream_early_closes_the_response(llm: FakeLLM) -> None:
    llm.default = Reply(text="a b c d e f g h", chunk_delay=0.2)
    async with client_for(llm) as client:
        stream = client.stream_chat(MODEL, MESSAGES)
        async for _ in stream:
            break
        await stream.aclose()
        request = await llm.requests[0].wait_finished()
    assert request.client_disconnected
    assert llm.requests_count == 1


# -- models -------------------------------------------------------------------------


async def test_list_models(llm: FakeLLM) -> None:
    async with client_for(llm, api_key="sk-models") as client:
        models = await client.list_models()
    assert models == DEFAULT_MODELS
    assert llm.models_requests == 1


async def test_list_models_errors_are_typed_and_retried(llm: FakeLLM) -> None:
    llm.models_status = 500
    async with client_for(llm, max_retries=1) as client:
        with pytest.raises(ProviderError):
            await client.list_models()
    assert llm.models_requests == 2
    llm.models_status = 401
    async with client_for(llm) as client:
        with pytest.raises(AuthenticationFailed):
            await client.list_models()
    assert llm.models_requests == 3


# -- the fake itself ----------------------------------------------------------------


async def test_fake_answers_non_streaming_requests(llm: FakeLLM) -> None:
    llm.default = Reply(text=None, reasoning=["hm"])
    async with httpx.AsyncClient() as http:
        response = await http.post(
            f"{llm.base_url}/chat/completions", json={"model": MODEL, "messages": MESSAGES}
        )
    answer = response.json()
    assert answer["choices"][0]["message"] == {
        "role": "assistant",
        "content": "Echo: hi there",
        "reasoning": "hm",
    }
    assert answer["usage"]["completion_tokens"] == 4
