"""LLMClient against llmock, an independent OpenAI-compatible chaos server.

llmock's pytest plugin provides the `llmock` fixture: one real server per
session (in a thread), reset for each test. Its verdict grades the client's
retries from the server side; `assert_resilient()` is used wherever llmock
can see the whole story. It cannot see that the client *raised* on a stream
cut after text was delivered, so those tests assert on the error instead.
"""

from __future__ import annotations

import time
from typing import Any

import pytest
from llmock.pytest_plugin import LLMock

from core.llm.client import LLMClient, StreamChunk
from core.llm.errors import ContextTooLong, LLMError, LLMTimeout, StreamInterrupted

MODEL = "gpt-4o-mini"
MESSAGES: list[dict[str, Any]] = [{"role": "user", "content": "Tell me something"}]
ANSWER = "The quick brown fox jumps over the lazy dog"


def client_for(llmock: LLMock, **options: Any) -> LLMClient:
    settings: dict[str, Any] = {
        "api_key": "llmock-test-key",
        "connect_timeout": 1.0,
        "first_token_timeout": 2.0,
        "idle_timeout": 2.0,
        "backoff_base": 0.05,
        "backoff_max": 0.2,
    }
    return LLMClient(llmock.base_url("openai"), **(settings | options))


async def collect(client: LLMClient, into: list[StreamChunk] | None = None) -> list[StreamChunk]:
    chunks = into if into is not None else []
    async for chunk in client.stream_chat(MODEL, MESSAGES, max_tokens=100):
        chunks.append(chunk)
    return chunks


def text_of(chunks: list[StreamChunk]) -> str:
    return "".join(c.text for c in chunks)


async def test_streamed_reply(llmock: LLMock) -> None:
    llmock.reply(ANSWER)
    async with client_for(llmock) as client:
        chunks = await collect(client)
    assert text_of(chunks) == ANSWER
    assert any(c.finish_reason == "stop" for c in chunks)
    usage = chunks[-1].usage
    assert usage is not None and usage.completion_tokens > 0
    assert usage.total_tokens == usage.prompt_tokens + usage.completion_tokens
    assert llmock.last_request.body["stream_options"] == {"include_usage": True}
    llmock.assert_resilient(strict=True)


async def test_rate_limit_then_success_honours_retry_after(llmock: LLMock) -> None:
    llmock.rate_limit(retry_after=0.4).reply(ANSWER)
    async with client_for(llmock) as client:
        started = time.monotonic()
        chunks = await collect(client)
    assert time.monotonic() - started >= 0.4
    assert text_of(chunks) == ANSWER
    assert [r.status for r in llmock.requests] == [429, 200]
    llmock.assert_resilient(strict=True)


async def test_outage_gives_up_after_bounded_retries(llmock: LLMock) -> None:
    llmock.fail(503, times=None, retry_after=0.05)
    async with client_for(llmock, max_retries=2) as client:
        with pytest.raises(LLMError) as caught:
            await collect(client)
    assert caught.value.status == 503 and caught.value.retryable
    assert len(llmock.requests) == 3
    llmock.assert_resilient(strict=True)


async def test_context_overflow_is_not_retried(llmock: LLMock) -> None:
    llmock.context_overflow()
    async with client_for(llmock) as client:
        with pytest.raises(ContextTooLong):
            await collect(client)
    assert len(llmock.requests) == 1
    llmock.assert_resilient(strict=True)


async def test_truncated_stream_after_text_interrupts(llmock: LLMock) -> None:
    llmock.reply(ANSWER).truncate(after_chunks=3)  # role chunk + two words
    received: list[StreamChunk] = []
    async with client_for(llmock) as client:
        with pytest.raises(StreamInterrupted) as caught:
            await collect(client, received)
        assert caught.value.details["reason"] == "ended_early"
    assert text_of(received) == "The quick "
    assert len(llmock.requests) == 1


async def test_truncated_stream_before_text_is_retried(llmock: LLMock) -> None:
    llmock.reply(ANSWER, times=2).truncate(after_chunks=1)  # only the empty role chunk
    async with client_for(llmock) as client:
        assert text_of(await collect(client)) == ANSWER
    assert len(llmock.requests) == 2
    llmock.assert_resilient(strict=True)


async def test_disconnect_after_text_interrupts(llmock: LLMock) -> None:
    llmock.reply(ANSWER).disconnect(after_chunks=3)
    received: list[StreamChunk] = []
    async with client_for(llmock) as client:
        with pytest.raises(StreamInterrupted) as caught:
            await collect(client, received)
        assert caught.value.details["reason"] == "connection_lost"
    assert text_of(received) == "The quick "
    assert len(llmock.requests) == 1  # text was delivered: never retried
    llmock.assert_resilient()  # not strict: llmock warns that it was not retried


async def test_disconnect_before_text_is_retried(llmock: LLMock) -> None:
    llmock.reply(ANSWER, times=2).disconnect(after_chunks=1)
    async with client_for(llmock) as client:
        assert text_of(await collect(client)) == ANSWER
    assert len(llmock.requests) == 2
    llmock.assert_resilient(strict=True)


async def test_corrupt_chunk_after_text_interrupts(llmock: LLMock) -> None:
    llmock.reply(ANSWER).corrupt(after_chunks=2)
    received: list[StreamChunk] = []
    async with client_for(llmock) as client:
        with pytest.raises(StreamInterrupted) as caught:
            await collect(client, received)
        assert caught.value.details["reason"] == "malformed_chunk"
    assert text_of(received) == "The "
    assert len(llmock.requests) == 1


async def test_corrupt_chunk_before_text_is_retried(llmock: LLMock) -> None:
    llmock.reply(ANSWER, times=2).corrupt(after_chunks=0)
    async with client_for(llmock) as client:
        assert text_of(await collect(client)) == ANSWER
    assert len(llmock.requests) == 2
    # Not strict: llmock keeps sending after the bad chunk, so when it finishes before
    # noticing we hung up, it sees two separate calls and warns the first was "ignored".
    llmock.assert_resilient()


async def test_stall_trips_the_idle_timeout(llmock: LLMock) -> None:
    # Stall shorter than llmock's 1 s "sat through it" threshold, longer than our idle timeout.
    llmock.reply(ANSWER).stall(after_chunks=3, seconds=0.8)
    received: list[StreamChunk] = []
    async with client_for(llmock, idle_timeout=0.3) as client:
        started = time.monotonic()
        with pytest.raises(LLMTimeout) as caught:
            await collect(client, received)
        assert caught.value.phase == "idle"
        assert time.monotonic() - started < 0.7
    assert text_of(received) == "The quick "
    llmock.assert_resilient(strict=True)


async def test_slow_first_token_is_retried(llmock: LLMock) -> None:
    llmock.slow_first_token(0.8).reply(ANSWER, times=2)
    async with client_for(llmock, first_token_timeout=0.3) as client:
        started = time.monotonic()
        chunks = await collect(client)
    assert text_of(chunks) == ANSWER
    assert time.monotonic() - started < 0.8  # gave up on the slow attempt early
    assert len(llmock.requests) == 2
    llmock.assert_resilient(strict=True)


async def test_slow_first_token_every_time_raises_a_timeout(llmock: LLMock) -> None:
    llmock.slow_first_token(0.8, times=None)
    async with client_for(llmock, first_token_timeout=0.2) as client:
        with pytest.raises(LLMTimeout) as caught:
            await collect(client)
        assert caught.value.phase == "first_token"
    assert len(llmock.requests) == 2  # one retry at most for first-token timeouts


async def test_list_models(llmock: LLMock) -> None:
    async with client_for(llmock) as client:
        models = await client.list_models()
    assert models and all(isinstance(m.get("id"), str) for m in models)
