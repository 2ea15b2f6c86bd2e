"""How a generation ends and what it costs: complete, failed, stopped, interrupted,
refused."""

from __future__ import annotations

import asyncio

import pytest
from sqlalchemy import func, select, update

from core.chat import Generation
from core.conversations.errors import (
    ConversationBusy,
    EmptyMessage,
    InputTooLong,
    TooManyGenerations,
)
from core.db.models import ChatMessage, UsageQuota, User
from core.llm.catalog import ModelLocked
from core.llm.context import MessageTooLong
from core.quotas import QuotaExceeded
from core.services import Services
from core.tiers import QuotaKey, Tier
from tests.fakes.llm_server import FakeLLM, Reply
from tests.support.chat import finish, new_user


async def _used(services: Services, user_id: int, key: QuotaKey = QuotaKey.SMALL) -> int:
    report = {s.key: s for s in await services.quotas.report(user_id, Tier.FREE)}
    return report[key].used


async def _row(services: Services, generation: Generation) -> ChatMessage:
    async with services.db.read() as session:
        row = await session.get(ChatMessage, generation.message_id)
    assert row is not None
    return row


async def _count_messages(services: Services) -> int:
    async with services.db.read() as session:
        return int(await session.scalar(select(func.count()).select_from(ChatMessage)) or 0)


async def test_complete_answer_is_charged(services: Services) -> None:
    user_id = await new_user(services)
    await finish(await services.chat.send(user_id, "hi"))
    assert await _used(services, user_id) == 1


async def test_failure_before_first_token_gives_the_unit_back(
    services: Services, fake_llm: FakeLLM
) -> None:
    user_id = await new_user(services)
    fake_llm.script(Reply.error(500, "upstream exploded"))
    gen = await services.chat.send(user_id, "hi")
    result = await finish(gen)
    assert result.status == "failed"
    assert result.error is not None and result.error.code == "provider_error"
    assert not result.charged
    assert await _used(services, user_id) == 0
    row = await _row(services, gen)
    assert (row.status, row.error_code) == ("failed", "provider_error")


async def test_interrupted_mid_stream_keeps_partial_text_and_gives_unit_back(
    services: Services, fake_llm: FakeLLM
) -> None:
    user_id = await new_user(services)
    fake_llm.script(Reply(chunks=["Partial ", "answer ", "that ", "breaks"], disconnect_after=2))
    gen = await services.chat.send(user_id, "hi")
    deltas = [d async for d in gen.stream()]
    assert deltas == ["Partial ", "answer "]
    assert gen.result is not None
    assert gen.result.status == "failed"
    assert gen.result.error is not None and gen.result.error.code == "interrupted"
    row = await _row(services, gen)
    assert row.content == "Partial answer "
    assert row.status == "failed"
    assert await _used(services, user_id) == 0


async def test_error_object_inside_a_200_stream_fails_the_answer(
    services: Services, fake_llm: FakeLLM
) -> None:
    user_id = await new_user(services)
    fake_llm.script(Reply(chunks=["a", "b", "c"], error_in_stream_after=1))
    result = await finish(await services.chat.send(user_id, "hi"))
    assert result.status == "failed"
    assert result.content == "a"
    assert await _used(services, user_id) == 0


async def test_stop_before_first_token_is_free(services: Services, fake_llm: FakeLLM) -> None:
    user_id = await new_user(services)
    fake_llm.script(Reply(text="too late", first_token_delay=5))
    gen = await services.chat.send(user_id, "hi")
    consumer = asyncio.create_task(finish(gen))
    await fake_llm.wait_for_requests(1)
    assert services.chat.stop(user_id, gen.message_id)
    result = await asyncio.wait_for(consumer, 3)
    assert result.status == "cancelled"
    assert not result.charged
    assert await _used(services, user_id) == 0
    record = await fake_llm.requests[0].wait_finished()
    assert record.client_disconnected  # the HTTP request was closed, not left running


async def test_stop_after_first_token_keeps_text_and_charges(
    services: Services, fake_llm: FakeLLM
) -> None:
    user_id = await new_user(services)
    fake_llm.script(Reply(chunks=["Once ", "upon ", "a ", "time"], chunk_delay=0.5))
    gen = await services.chat.send(user_id, "story")
    received: list[str] = []
    async for delta in gen.stream():
        received.append(delta)
        gen.stop()
    assert received == ["Once "]
    assert gen.result is not None
    assert gen.result.status == "cancelled"
    assert gen.result.charged
    row = await _row(services, gen)
    assert (row.status, row.content) == ("cancelled", "Once ")
    assert await _used(services, user_id) == 1


async def test_a_user_cannot_stop_someone_elses_answer(
    services: Services, fake_llm: FakeLLM
) -> None:
    owner = await new_user(services)
    fake_llm.script(Reply(text="slow", first_token_delay=0.3))
    gen = await services.chat.send(owner, "hi")
    consumer = asyncio.create_task(finish(gen))
    await fake_llm.wait_for_requests(1)
    assert not services.chat.stop(await new_user(services), gen.message_id)
    result = await consumer
    assert result.status == "complete"


async def test_consumer_going_away_interrupts_and_refunds(
    services: Services, fake_llm: FakeLLM
) -> None:
    user_id = await new_user(services)
    fake_llm.script(Reply(chunks=["x"] * 50, chunk_delay=0.1))
    gen = await services.chat.send(user_id, "hi")

    async def consume() -> None:
        async for _ in gen.stream():
            pass

    task = asyncio.create_task(consume())
    await fake_llm.wait_for_requests(1)
    await asyncio.sleep(0.25)
    task.cancel()
    with pytest.raises(asyncio.CancelledError):
        await task
    row = await _row(services, gen)
    assert row.status == "interrupted"
    assert row.content.startswith("x")
    assert await _used(services, user_id) == 0


async def test_busy_conversation_refuses_other_operations(
    services: Services, fake_llm: FakeLLM
) -> None:
    user_id = await new_user(services)
    first = await services.chat.send(user_id, "warm up")
    await finish(first)
    fake_llm.script(Reply(text="slow answer", first_token_delay=0.5))
    gen = await services.chat.send(user_id, "slow please")
    consumer = asyncio.create_task(finish(gen))
    await fake_llm.wait_for_requests(2)
    with pytest.raises(ConversationBusy):
        await services.chat.send(user_id, "another")
    with pytest.raises(ConversationBusy):
        await services.chat.regenerate(user_id, first.message_id)
    with pytest.raises(ConversationBusy):
        await services.chat.edit(user_id, first.turn.prompt.id, "edit")
    with pytest.raises(ConversationBusy):
        await services.conversations.switch_revision(user_id, first.message_id, 1)
    with pytest.raises(ConversationBusy):
        await services.conversations.delete(user_id, first.turn.conversation.id)
    await consumer
    # Idle again: it continues.
    await finish(await services.chat.send(user_id, "another"))


async def test_concurrent_generations_per_user_are_bounded(
    services: Services, fake_llm: FakeLLM
) -> None:
    user_id = await new_user(services)
    fake_llm.default = Reply(text="slow", first_token_delay=0.5)
    running = [
        await services.chat.send(user_id, f"chat {i}", new_conversation=True) for i in range(2)
    ]
    consumers = [asyncio.create_task(finish(g)) for g in running]
    with pytest.raises(TooManyGenerations):
        await services.chat.send(user_id, "a third at once", new_conversation=True)
    await asyncio.gather(*consumers)


async def test_quota_exhausted_makes_no_llm_call_and_writes_nothing(
    services: Services, fake_llm: FakeLLM
) -> None:
    user_id = await new_user(services)
    await finish(await services.chat.send(user_id, "one"))
    async with services.db.write() as session:
        await session.execute(
            update(UsageQuota)
            .where(UsageQuota.user_id == user_id, UsageQuota.quota_key == "small_messages")
            .values(quota_limit=1)
        )
    before_rows = await _count_messages(services)
    before_requests = fake_llm.requests_count
    with pytest.raises(QuotaExceeded) as info:
        await services.chat.send(user_id, "two")
    assert info.value.upgrade is Tier.PRO
    assert "reset" in info.value.user_message
    assert await _count_messages(services) == before_rows
    assert fake_llm.requests_count == before_requests


async def test_oversized_input_is_refused_for_free(services: Services, fake_llm: FakeLLM) -> None:
    user_id = await new_user(services)
    limit = services.settings.limits.max_input_chars
    with pytest.raises(InputTooLong):
        await services.chat.send(user_id, "x" * (limit + 1))
    with pytest.raises(EmptyMessage):
        await services.chat.send(user_id, "   ")
    # Within the character limit but beyond the model's context window.
    small = services.catalog.require("openai/gpt-4o-mini")
    import dataclasses

    from core.llm.catalog import ModelCatalog

    tiny = dataclasses.replace(small, context_length=600, max_output_tokens=100)
    services.planner.catalog = ModelCatalog([tiny], tiny.id)
    with pytest.raises(MessageTooLong):
        await services.chat.send(user_id, "word " * 2000)
    assert await _count_messages(services) == 0
    assert fake_llm.requests_count == 0
    assert await _used(services, user_id) == 0


async def test_locked_model_is_refused(services: Services) -> None:
    user_id = await new_user(services)
    gen = await services.chat.send(user_id, "hi")
    await finish(gen)
    await services.conversations.set_model(user_id, gen.turn.conversation.id, "openai/gpt-5")
    with pytest.raises(ModelLocked):
        await services.chat.send(user_id, "use the big one")
    async with services.db.write() as session:
        await session.execute(update(User).where(User.id == user_id).values(tier="pro"))
    result = await finish(await services.chat.send(user_id, "use the big one"))
    assert result.status == "complete"


async def test_context_sent_to_the_model(services: Services, fake_llm: FakeLLM) -> None:
    user_id = await new_user(services)
    await services.accounts.set_system_prompt(user_id, "Be brief.")
    await finish(await services.chat.send(user_id, "first"))
    await finish(await services.chat.send(user_id, "second"))
    body = fake_llm.requests[-1].body
    assert body["messages"] == [
        {"role": "system", "content": "Be brief."},
        {"role": "user", "content": "first"},
        {"role": "assistant", "content": "Echo: first"},
        {"role": "user", "content": "second"},
    ]
    assert body["model"] == "openai/gpt-4o-mini"
    assert body["stream"] is True
    assert body["max_tokens"] > 0
