"""Stop pressed on one process reaches the process streaming the answer (Redis)."""

from __future__ import annotations

import asyncio

import pytest

from core.services import Services
from core.stop_signals import RedisStopBus
from tests.fakes.llm_server import FakeLLM, Reply
from tests.support.chat import finish, new_user


async def test_a_stop_published_elsewhere_stops_the_local_generation(
    services: Services, fake_llm: FakeLLM, redis_url: str | None
) -> None:
    if redis_url is None:
        pytest.skip("TEST_REDIS_URL not set (the PostgreSQL + Redis run sets it)")
    listener, other_process = RedisStopBus(redis_url), RedisStopBus(redis_url)
    await listener.start(services.chat.stop)
    try:
        user_id = await new_user(services)
        fake_llm.script(Reply(chunks=[f"t{i} " for i in range(50)], chunk_delay=0.1))
        generation = await services.chat.send(user_id, "long")
        consumer = asyncio.create_task(finish(generation))
        await fake_llm.wait_for_requests(1)
        await asyncio.sleep(0.3)
        # Someone else's stop request for it is ignored...
        await other_process.publish(user_id + 1, generation.message_id)
        await asyncio.sleep(0.2)
        assert not consumer.done()
        # ...the owner's stops it, though it was published by another process.
        await other_process.publish(user_id, generation.message_id)
        result = await asyncio.wait_for(consumer, 3)
        assert result.status == "cancelled"
        assert result.content.startswith("t0")
    finally:
        await listener.close()
        await other_process.close()
