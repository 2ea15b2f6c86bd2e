"""Answers whose worker is gone: ended by any sweep, never making a conversation
busy, never counting against the concurrent limit, ended by Stop; and answers
whose final save fails end `failed` with their unit back, never `streaming`."""

from __future__ import annotations

import asyncio
import uuid
from collections.abc import AsyncIterator
from datetime import timedelta

import pytest
from sqlalchemy import select, text, update

from core.chat import AnswerNotSaved
from core.conversations.errors import ConversationBusy
from core.conversations.links import PlatformMessage
from core.db.engine import null_pool_engine
from core.db.models import ChatMessage, OutboxMessage
from core.services import Services
from core.tiers import QuotaKey, Tier
from core.workers import RedisWorkers
from tests.fakes.llm_server import FakeLLM, Reply
from tests.support.chat import finish, new_user
from tests.support.queries import count_queries
from tests.support.wait import until


async def _used(services: Services, user_id: int) -> int:
    report = {s.key: s for s in await services.quotas.report(user_id, Tier.FREE)}
    return report[QuotaKey.SMALL].used


async def _row(services: Services, row_id: uuid.UUID) -> ChatMessage:
    async with services.db.read() as session:
        row = await session.get(ChatMessage, row_id)
    assert row is not None
    return row


def _other_process(services: Services, role: str = "bot") -> Services:
    """Another worker on the same database (a second process, as far as rows and
    heartbeats tell)."""
    return Services.build(services.settings, llm=services.llm, db=services.db, role=role)


async def _left_streaming(worker: Services, user_id: int, **send: object) -> uuid.UUID:
    """An answer `worker` wrote and then never streamed or settled: what a process
    killed mid-answer leaves behind."""
    generation = await worker.chat.send(user_id, "cut off", **send)  # type: ignore[arg-type]
    return generation.message_id


async def test_a_sweep_ends_answers_of_gone_workers_and_spares_live_ones(
    services: Services, fake_llm: FakeLLM
) -> None:
    user_id = await new_user(services)
    dead, live = _other_process(services), _other_process(services)
    await live.workers.beat()
    dead_row = await _left_streaming(
        dead,
        user_id,
        new_conversation=True,
        platform="telegram",
        prompt_link=PlatformMessage("telegram", "77", "5"),
    )
    live_row = await _left_streaming(live, user_id, new_conversation=True)
    assert await _used(services, user_id) == 2

    assert await services.liveness.sweep(confirm=False) == 1
    ended = await _row(services, dead_row)
    assert (ended.status, ended.error_code) == ("interrupted", "interrupted")
    assert ended.finished_at is not None
    assert (await _row(services, live_row)).status == "streaming"
    assert await _used(services, user_id) == 1
    # The person is told where the prompt was shown, from the outbox.
    async with services.db.read() as session:
        notices = (await session.scalars(select(OutboxMessage))).all()
    assert [(n.kind, n.platform, n.payload) for n in notices] == [
        ("answer.interrupted", "telegram", {"message_id": str(dead_row)})
    ]
    # Another sweep (another process) finds nothing more: the unit went back once.
    assert await services.liveness.sweep(confirm=False) == 0
    assert await _used(services, user_id) == 1


async def test_a_sweep_with_redis_confirms_before_ending(
    services: Services, redis_url: str | None
) -> None:
    if redis_url is None:
        pytest.skip("needs TEST_REDIS_URL")
    user_id = await new_user(services)
    row = await _left_streaming(_other_process(services), user_id)
    watcher = RedisWorkers(redis_url, services.worker_id, "bot", timeout=20)
    services.liveness.registry = watcher
    services.liveness.heartbeat_seconds = 0.05
    assert await services.liveness.sweep() == 0  # first look: only suspected
    assert (await _row(services, row)).status == "streaming"
    await asyncio.sleep(0.06)
    assert await services.liveness.sweep() == 1
    await watcher.close()


async def test_an_answer_of_a_gone_worker_never_makes_its_conversation_busy(
    services: Services, fake_llm: FakeLLM
) -> None:
    user_id = await new_user(services)
    dead = _other_process(services)
    cut = await dead.chat.send(user_id, "first", new_conversation=True)
    conversation = cut.turn.conversation.id
    # Today's message goes ahead; the cut answer ends and its unit comes back.
    result = await finish(
        await services.chat.send(user_id, "are you there?", conversation_id=conversation)
    )
    assert result.status == "complete"
    assert (await _row(services, cut.message_id)).status == "interrupted"
    assert await _used(services, user_id) == 1


async def test_an_answer_of_a_live_worker_still_makes_it_busy(services: Services) -> None:
    user_id = await new_user(services)
    live = _other_process(services)
    await live.workers.beat()
    running = await live.chat.send(user_id, "first", new_conversation=True)
    with pytest.raises(ConversationBusy):
        await services.chat.send(user_id, "second", conversation_id=running.turn.conversation.id)
    assert (await _row(services, running.message_id)).status == "streaming"


async def test_answers_of_gone_workers_do_not_count_against_the_concurrent_limit(
    services: Services, fake_llm: FakeLLM
) -> None:
    user_id = await new_user(services)
    dead = _other_process(services)
    stuck = [await _left_streaming(dead, user_id, new_conversation=True) for _ in range(2)]
    result = await finish(await services.chat.send(user_id, "hello", new_conversation=True))
    assert result.status == "complete"
    assert {(await _row(services, r)).status for r in stuck} == {"interrupted"}
    assert await _used(services, user_id) == 1


async def test_paging_and_regenerating_past_a_gone_answer(
    services: Services, fake_llm: FakeLLM
) -> None:
    user_id = await new_user(services)
    first = await finish(await services.chat.send(user_id, "one", new_conversation=True))
    assert first.status == "complete"
    conversation = await services.conversations.current(user_id)
    assert conversation is not None
    answer = await services.conversations.last_answer(user_id, conversation.id)
    assert answer is not None
    dead = _other_process(services)
    regenerated = await dead.chat.regenerate(user_id, answer.id)  # then the worker dies
    await services.conversations.switch_revision(user_id, answer.id, 1)
    assert (await _row(services, regenerated.message_id)).status == "interrupted"
    again = await finish(await services.chat.regenerate(user_id, answer.id))
    assert again.status == "complete"


async def test_stop_on_an_answer_of_a_gone_worker_ends_it(services: Services) -> None:
    user_id = await new_user(services)
    row = await _left_streaming(_other_process(services), user_id)
    assert await services.chat.request_stop(user_id, row)
    assert (await _row(services, row)).status == "interrupted"
    assert await _used(services, user_id) == 0
    # Someone else's Stop, or one on a finished answer, changes nothing.
    assert not await services.chat.request_stop(user_id + 1, row)
    assert not await services.chat.request_stop(user_id, row)


async def test_an_answer_of_this_worker_that_no_generation_streams_is_ended(
    services: Services,
) -> None:
    user_id = await new_user(services)
    generation = await services.chat.send(user_id, "never streamed")
    # Just written: its generation is about to start, so it is left alone.
    assert await services.liveness.sweep(confirm=False) == 0
    async with services.db.write() as session:
        await session.execute(
            update(ChatMessage)
            .where(ChatMessage.id == generation.message_id)
            .values(heartbeat_at=services.chat.now() - timedelta(minutes=1))
        )
    assert await services.liveness.sweep(confirm=False) == 1
    assert await _used(services, user_id) == 0


async def test_abandoning_an_unstreamed_generation_gives_its_unit_back(
    services: Services,
) -> None:
    user_id = await new_user(services)
    generation = await services.chat.send(user_id, "the platform failed before showing it")
    await services.chat.abandon(generation)
    assert generation.result is not None and generation.result.status == "interrupted"
    assert (await _row(services, generation.message_id)).status == "interrupted"
    assert await _used(services, user_id) == 0
    assert not services.chat.running_ids()


async def test_a_bot_starting_without_redis_ends_every_other_bots_answers(
    services: Services,
) -> None:
    user_id = await new_user(services)
    old_bot, chat = _other_process(services), _other_process(services, role="cli")
    # Both beat a moment ago: the old bot was killed and restarted at once.
    await old_bot.workers.beat()
    await chat.workers.beat()
    bot_row = await _left_streaming(old_bot, user_id, new_conversation=True)
    chat_row = await _left_streaming(chat, user_id, new_conversation=True)
    assert await services.liveness.sweep(confirm=False) == 0
    assert await services.liveness.sweep(confirm=False, role_gone="bot") == 1
    assert (await _row(services, bot_row)).status == "interrupted"
    assert (await _row(services, chat_row)).status == "streaming"


async def test_go_live_ends_stuck_answers_at_once_and_signs_off_on_close(
    services: Services, fake_llm: FakeLLM
) -> None:
    user_id = await new_user(services)
    old_bot = _other_process(services)
    await old_bot.workers.beat()
    row = await _left_streaming(old_bot, user_id)
    restarted = _other_process(services)
    assert await restarted.go_live() == 1
    assert (await _row(services, row)).status == "interrupted"
    assert await services.workers.gone([restarted.worker_id]) == set()
    # A clean exit signs off: at once gone for the others, not after the timeout.
    restarted._live.cancel()  # type: ignore[union-attr]
    await restarted.workers.forget()
    assert await services.workers.gone([restarted.worker_id]) == {restarted.worker_id}


# -- the final save ---------------------------------------------------------------------


@pytest.fixture
async def refuse_poison(services: Services, is_postgres: bool) -> AsyncIterator[None]:
    """The database refuses to complete an answer that says "poison" while a row
    sits in `faults`: a real refusal, as a dropped connection or a bad byte
    would give, without touching our code."""
    db = services.db
    async with db.engine.begin() as conn:
        await conn.execute(text("CREATE TABLE faults (id INTEGER PRIMARY KEY)"))
        await conn.execute(text("INSERT INTO faults (id) VALUES (1)"))
        if is_postgres:
            await conn.execute(
                text(
                    "CREATE FUNCTION refuse_poison() RETURNS trigger AS $$ BEGIN "
                    "IF NEW.status = 'complete' AND NEW.content LIKE '%poison%' "
                    "AND EXISTS (SELECT 1 FROM faults) THEN "
                    "RAISE EXCEPTION 'refused by the test'; END IF; RETURN NEW; END "
                    "$$ LANGUAGE plpgsql"
                )
            )
            await conn.execute(
                text(
                    "CREATE TRIGGER refuse_poison BEFORE UPDATE ON chat_messages "
                    "FOR EACH ROW EXECUTE FUNCTION refuse_poison()"
                )
            )
        else:
            await conn.execute(
                text(
                    "CREATE TRIGGER refuse_poison BEFORE UPDATE OF status ON chat_messages "
                    "WHEN NEW.status = 'complete' AND NEW.content LIKE '%poison%' "
                    "AND EXISTS (SELECT 1 FROM faults) "
                    "BEGIN SELECT RAISE(ABORT, 'refused by the test'); END"
                )
            )
    try:
        yield
    finally:
        async with db.engine.begin() as conn:
            await conn.execute(
                text("DROP TRIGGER IF EXISTS refuse_poison ON chat_messages")
                if is_postgres
                else text("DROP TRIGGER IF EXISTS refuse_poison")
            )
            if is_postgres:
                await conn.execute(text("DROP FUNCTION IF EXISTS refuse_poison()"))
            await conn.execute(text("DROP TABLE faults"))


async def test_a_final_save_that_keeps_failing_ends_failed_with_the_unit_back(
    services: Services, fake_llm: FakeLLM, refuse_poison: None
) -> None:
    user_id = await new_user(services)
    fake_llm.script(Reply(chunks=["a poison ", "answer"]))
    generation = await services.chat.send(user_id, "hi")
    result = await asyncio.wait_for(finish(generation), 30)
    # The person is told it was not kept, and it was not charged.
    assert result.status == "failed" and not result.charged
    assert isinstance(result.error, AnswerNotSaved)
    assert result.content == "a poison answer"

    await until(lambda: _status(services, generation.message_id, "failed"))
    row = await _row(services, generation.message_id)
    assert (row.status, row.error_code) == ("failed", "not_saved")
    assert await _used(services, user_id) == 0
    await until(lambda: not services.chat.running_ids())
    # The conversation goes on.
    assert (await finish(await services.chat.send(user_id, "again"))).status == "complete"


async def test_a_final_save_that_fails_once_is_retried(
    services: Services,
    fake_llm: FakeLLM,
    refuse_poison: None,
    caplog: pytest.LogCaptureFixture,
) -> None:
    user_id = await new_user(services)
    fake_llm.script(Reply(chunks=["poison ", "but fine"]))
    generation = await services.chat.send(user_id, "hi")
    settle = asyncio.create_task(finish(generation))
    # The first save is refused (as by a dropped connection); then the fault clears.
    await until(lambda: "retrying" in caplog.text)
    async with services.db.write() as session:
        await session.execute(text("DELETE FROM faults"))
    result = await asyncio.wait_for(settle, 30)
    assert result.status == "complete" and result.charged
    assert (await _row(services, generation.message_id)).status == "complete"
    assert await _used(services, user_id) == 1


async def _status(services: Services, row_id: uuid.UUID, status: str) -> bool:
    return (await _row(services, row_id)).status == status


# -- with Redis --------------------------------------------------------------------------


async def test_a_redis_worker_is_gone_as_soon_as_its_process_is(redis_url: str | None) -> None:
    if redis_url is None:
        pytest.skip("needs TEST_REDIS_URL")
    suffix = uuid.uuid4().hex[:8]
    watcher = RedisWorkers(redis_url, f"watcher-{suffix}", "bot", timeout=20)
    alive = RedisWorkers(redis_url, f"alive-{suffix}", "bot", timeout=20)
    killed = RedisWorkers(redis_url, f"killed-{suffix}", "bot", timeout=20)
    hung = RedisWorkers(redis_url, f"hung-{suffix}", "bot", timeout=1)
    try:
        for worker in (alive, killed, hung):
            await worker.start()
        names = [alive.worker_id, killed.worker_id, hung.worker_id, f"never-{suffix}"]
        assert await watcher.gone(names) == {f"never-{suffix}"}
        # A killed process: its connections close; its key has ~20 s left, but
        # its subscription is gone at once.
        await killed.close()
        assert await watcher.gone(names) == {f"never-{suffix}", killed.worker_id}
        # A hung process keeps its connection but stops beating: its key runs out.
        await asyncio.sleep(1.5)
        assert await watcher.gone(names) == {f"never-{suffix}", killed.worker_id, hung.worker_id}
    finally:
        for worker in (watcher, alive, hung):
            await worker.close()


async def test_a_redis_worker_takes_its_subscription_again_after_a_reset(
    redis_url: str | None,
) -> None:
    if redis_url is None:
        pytest.skip("needs TEST_REDIS_URL")
    from redis.asyncio import Redis

    suffix = uuid.uuid4().hex[:8]
    watcher = RedisWorkers(redis_url, f"watcher-{suffix}", "bot", timeout=20)
    worker = RedisWorkers(redis_url, f"worker-{suffix}", "bot", timeout=20)
    admin = Redis.from_url(redis_url)
    try:
        await worker.start()
        await admin.client_kill_filter(_type="pubsub")  # a Redis restart, as clients see it

        async def back() -> bool:
            return not await watcher.gone([worker.worker_id])

        await until(back, 5)
    finally:
        await admin.aclose()
        await watcher.close()
        await worker.close()


async def test_connections_killed_while_answers_finish_leave_nothing_streaming(
    services: Services, fake_llm: FakeLLM, is_postgres: bool
) -> None:
    """PostgreSQL drops every connection, again and again, while ten answers make
    their final saves: each ends saved (charged) or failed (its unit back)."""
    if not is_postgres:
        pytest.skip("kills PostgreSQL backends")
    users = [await new_user(services) for _ in range(10)]
    fake_llm.default = Reply(chunks=[f"w{i} " for i in range(20)], chunk_delay=0.02)
    generations = [await services.chat.send(user, "hello") for user in users]
    killer = null_pool_engine(services.db.url)
    stop = asyncio.Event()

    async def kill_connections() -> int:
        killed = 0
        async with killer.connect() as conn:
            while not stop.is_set():
                killed += int(
                    await conn.scalar(
                        text(
                            "SELECT count(pg_terminate_backend(pid)) FROM pg_stat_activity "
                            "WHERE datname = current_database() AND pid <> pg_backend_pid()"
                        )
                    )
                    or 0
                )
                await conn.commit()
                await asyncio.sleep(0.01)
        return killed

    chaos = asyncio.create_task(kill_connections())
    runs = [asyncio.create_task(finish(g)) for g in generations]
    await asyncio.sleep(1.5)  # through the streams and their first final saves
    stop.set()
    killed = await chaos
    await killer.dispose()
    results = await asyncio.wait_for(asyncio.gather(*runs), 60)
    await until(lambda: not services.chat.running_ids(), 30)
    assert killed > 0
    print("\noutcomes:", sorted(r.status for r in results))
    for user, generation, result in zip(users, generations, results, strict=True):
        row = await _row(services, generation.message_id)
        assert row.status == result.status, (row.status, result)
        assert row.status in ("complete", "failed")
        assert await _used(services, user) == (1 if result.charged else 0)


async def test_a_long_answer_saves_its_text_every_heartbeat_and_stops_at_its_end(
    services: Services, fake_llm: FakeLLM
) -> None:
    """While it streams, the row gets the text so far and a fresh heartbeat every
    `heartbeat_seconds` (from when streaming began); once it ends, no beat writes."""
    services.chat.limits.heartbeat_seconds = 0.2
    user_id = await new_user(services)
    fake_llm.default = Reply(chunks=[f"w{i} " for i in range(12)], chunk_delay=0.1)
    generation = await services.chat.send(user_id, "hello")
    beats: list[tuple[object, str]] = []

    async def watch() -> None:
        while True:
            row = await _row(services, generation.message_id)
            if row.status != "streaming":
                return
            if row.heartbeat_at is not None and (not beats or beats[-1][0] != row.heartbeat_at):
                beats.append((row.heartbeat_at, row.content))
            await asyncio.sleep(0.03)

    watcher = asyncio.create_task(watch())
    result = await finish(generation)
    await asyncio.wait_for(watcher, 5)
    # 1.2 s of streaming: beats at 0.2, 0.4, ... (the first one written at send).
    saved = [content for _, content in beats if content]
    assert len(saved) >= 3, beats
    assert saved == sorted(saved, key=len) and all(result.content.startswith(s) for s in saved)
    assert saved[-1] != result.content  # the heartbeats saved partial text
    final = await _row(services, generation.message_id)
    with count_queries(services.db) as log:
        await asyncio.sleep(0.5)  # longer than two beats
    assert log.statements == []
    after = await _row(services, generation.message_id)
    assert (after.status, after.content, after.heartbeat_at) == (
        final.status,
        result.content,
        None,
    )


async def test_an_answer_whose_reader_is_cancelled_while_it_is_saved_still_ends_saved(
    services: Services, fake_llm: FakeLLM
) -> None:
    """The task reading the answer is cancelled while the final save waits for the
    database: the reader ends at once (CancelledError), and the answer is still
    saved (complete, charged once) and leaves the conversation free."""
    user_id = await new_user(services)
    fake_llm.default = Reply(chunks=["all ", "of ", "it"])
    generation = await services.chat.send(user_id, "hello")
    held, release = asyncio.Event(), asyncio.Event()

    async def hold_the_row() -> None:
        # The writer's lock on SQLite, the row's lock on PostgreSQL.
        async with services.db.write() as session:
            await session.execute(
                select(ChatMessage.id)
                .where(ChatMessage.id == generation.message_id)
                .with_for_update()
            )
            held.set()
            await release.wait()

    blocker = asyncio.create_task(hold_the_row())
    await held.wait()
    reader = asyncio.create_task(finish(generation))
    await until(lambda: generation.ending)
    await asyncio.sleep(0.1)  # the save is waiting now
    reader.cancel()
    with pytest.raises(asyncio.CancelledError):
        await asyncio.wait_for(reader, 5)
    release.set()
    await blocker
    await until(lambda: generation.result is not None and not services.chat.running_ids())
    assert generation.result is not None and generation.result.status == "complete"
    row = await _row(services, generation.message_id)
    assert (row.status, row.content) == ("complete", "all of it")
    assert await _used(services, user_id) == 1
    follow_up = await services.chat.send(user_id, "and then?")
    await finish(follow_up)
