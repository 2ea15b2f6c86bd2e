"""Statements run straight on inline SQLite's connection (core/db/direct.py) write
and return what the same statement through the session does, fire the engine's
cursor events, fill Python-side defaults and raise SQLAlchemy's errors."""

from __future__ import annotations

import uuid
from datetime import UTC, datetime, timedelta
from typing import Any

import pytest
from sqlalchemy import bindparam, event, insert, select, update
from sqlalchemy.dialects.sqlite import aiosqlite
from sqlalchemy.exc import IntegrityError

from core.db.direct import Direct, _plan
from core.db.models import ChatMessage, MessageLink, UsageQuota
from core.db.models.base import table_of
from core.quotas import _EDGES, _reserve_statement
from core.services import Services
from core.tiers import QuotaKey, ResetFrequency, window_bounds
from tests.support.chat import finish, new_user
from tests.support.queries import count_queries

_LINKS = table_of(MessageLink)
_MESSAGES = table_of(ChatMessage)


def _window(now: datetime) -> dict[str, Any]:
    params: dict[str, Any] = {"now": now, "amount": 1, "key": QuotaKey.SMALL.value}
    for frequency in ResetFrequency:
        for edge, bound in zip(_EDGES, window_bounds(frequency, now), strict=True):
            params[f"{frequency.value}_{edge}"] = bound
    return params


async def test_a_direct_update_returns_what_the_session_returns(services: Services) -> None:
    """The quota reservation (datetimes bound and read back, CASE over them) run
    both ways on two people with the same rows gives the same returned values."""
    one, two = await new_user(services), await new_user(services)
    await finish(await services.chat.send(one, "warm"))
    await finish(await services.chat.send(two, "warm"))
    now = datetime.now(UTC)
    statement = _reserve_statement()
    async with services.db.write() as session:
        await session.execute(
            update(UsageQuota)
            .where(UsageQuota.user_id.in_([one, two]))
            .values(used_count=3, next_reset_at=now + timedelta(hours=1))
        )
        contexts: list[object] = []

        def seen(*args: object) -> None:
            contexts.append(args[4])

        engine = services.db.engine.sync_engine
        event.listen(engine, "before_cursor_execute", seen)
        try:
            with count_queries(services.db) as log:
                direct = await statement.rows(session, {**_window(now), "owner": one})
        finally:
            event.remove(engine, "before_cursor_execute", seen)
        through = (await session.execute(statement.statement, {**_window(now), "owner": two})).all()
    assert direct == [tuple(row) for row in through]
    assert direct[0][0] == 4 and direct[0][3].tzinfo is not None
    # The statement counters (engine events) saw it once; on SQLite it ran with no
    # execution context of SQLAlchemy's (straight on the connection).
    assert [s.split()[0] for s in log.statements] == ["UPDATE"]
    assert (contexts == [None]) == services.db.is_sqlite, contexts


async def test_rows_written_directly_read_back_as_written(services: Services) -> None:
    """Many rows of every column type (UUIDs, JSON, booleans, aware datetimes,
    nulls) in one executemany, then the answer's end with a RETURNING."""
    user_id = await new_user(services)
    generation = await services.chat.send(user_id, "hello")
    await finish(generation)
    conversation_id = generation.turn.conversation.id
    now = datetime.now(UTC)
    rows: list[dict[str, Any]] = []
    for seq in (90, 91):
        row_id = uuid.uuid4()
        rows.append(
            {
                "id": row_id,
                "conversation_id": conversation_id,
                "user_id": user_id,
                "role": "assistant",
                "content": "ünïcode \"quoted\" 'text'",
                "model_id": "m",
                "sequence_number": seq,
                "parent_message_id": None,
                "original_message_id": row_id,
                "revision_number": 0,
                "revision_type": None,
                "is_latest": False,
                "activated_at": now,
                "status": "streaming",
                "platform_message_ids": {"t": [1, 2]},
                "meta": {"nested": {"a": [1, None, "x"]}},
                "created_at": now,
                "error_code": None,
                "prompt_tokens": None,
                "completion_tokens": None,
                "quota_key": "basic",
                "quota_window_start": now,
                "worker_id": "w",
                "heartbeat_at": now,
                "display_pending": True,
                "finished_at": None,
                "attachment_id": None,
            }
        )
    values = [{("metadata" if k == "meta" else k): v for k, v in row.items()} for row in rows]
    end = Direct(
        update(_MESSAGES)
        .where(_MESSAGES.c.id == bindparam("row_id"), _MESSAGES.c.status == "streaming")
        .returning(_MESSAGES.c.id, _MESSAGES.c.finished_at)
    )
    async with services.db.write() as session:
        await Direct(insert(_MESSAGES)).many(session, values)
        ended = await end.rows(
            session, {"status": "complete", "finished_at": now, "row_id": rows[0]["id"]}
        )
        again = await end.rows(
            session, {"status": "complete", "finished_at": now, "row_id": rows[0]["id"]}
        )
    assert ended == [(rows[0]["id"], now)] and again == []
    async with services.db.read() as session:
        stored = {
            row.id: row
            for row in await session.scalars(
                select(ChatMessage).where(ChatMessage.id.in_([r["id"] for r in rows]))
            )
        }
    for row in rows:
        got = stored[row["id"]]
        for key, value in row.items():
            if row is rows[0] and key in ("status", "finished_at"):
                continue
            assert getattr(got, key) == value, key
    assert (stored[rows[0]["id"]].status, stored[rows[0]["id"]].finished_at) == (
        "complete",
        now,
    )


async def test_a_left_out_column_gets_its_default_and_a_conflict_is_sqlalchemys(
    services: Services,
) -> None:
    user_id = await new_user(services)
    generation = await services.chat.send(user_id, "hello")
    await finish(generation)
    statement = Direct(insert(_LINKS).returning(_LINKS.c.created_at))
    values = {
        "platform": "test",
        "chat_id": "1",
        "platform_message_id": uuid.uuid4().hex,
        "chat_message_id": generation.turn.answer.id,
        "part": 0,
    }
    before = datetime.now(UTC)
    async with services.db.write() as session:
        ((created,),) = await statement.rows(session, values)
    assert before <= created <= datetime.now(UTC)
    with pytest.raises(IntegrityError):
        async with services.db.write() as session:
            await statement.rows(session, values)


async def test_objects_added_before_are_written_before_a_direct_statement(
    services: Services,
) -> None:
    """As the session's own execute would (autoflush): a link to a message row added
    to the session just before finds that row (SQLite enforces the foreign key)."""
    user_id = await new_user(services)
    generation = await services.chat.send(user_id, "hello")
    await finish(generation)
    prompt = generation.turn.prompt
    row_id = uuid.uuid4()
    async with services.db.write() as session:
        session.add(
            ChatMessage(
                id=row_id,
                conversation_id=prompt.conversation_id,
                user_id=user_id,
                role="user",
                content="added",
                model_id=prompt.model_id,
                sequence_number=50,
                original_message_id=row_id,
                revision_number=0,
                is_latest=False,
                activated_at=datetime.now(UTC),
                status="complete",
                platform_message_ids={},
                meta={},
                created_at=datetime.now(UTC),
            )
        )
        await Direct(insert(_LINKS)).many(
            session,
            [
                {
                    "platform": "test",
                    "chat_id": "1",
                    "platform_message_id": "m",
                    "chat_message_id": row_id,
                    "part": 0,
                }
            ],
        )
    async with services.db.read() as session:
        linked = await session.scalar(
            select(MessageLink.chat_message_id).where(MessageLink.platform_message_id == "m")
        )
    assert linked == row_id


def _reference_args(statement: Any, params: dict[str, Any]) -> tuple[Any, ...]:
    """What SQLAlchemy binds for `params`: construct_params, then each bind type's
    processor, in the compiled statement's order."""
    dialect = aiosqlite.dialect()
    compiled = statement.compile(dialect=dialect, column_keys=sorted(params))
    values = compiled.construct_params(params)
    out = []
    for name in compiled.positiontup:
        process = compiled.binds[name].type.dialect_impl(dialect).bind_processor(dialect)
        out.append(values[name] if process is None else process(values[name]))
    return tuple(out)


def test_a_plan_binds_what_sqlalchemy_binds() -> None:
    """The plan's slots, decided once, give each call the values SQLAlchemy would
    bind: the call's own (processed), the statement's literals (the status the
    answer's end and the reservation hold) and a left-out column's default."""
    now = datetime.now(UTC)
    row_id = uuid.uuid4()
    ending = {"status": "complete", "finished_at": now, "metadata": {"a": [1]}, "row_id": row_id}
    reserving = {**_window(now), "owner": 7}
    link = {"platform": "t", "chat_id": "1", "platform_message_id": "9", "chat_message_id": row_id}
    dialect = aiosqlite.dialect()
    end_row = update(_MESSAGES).where(
        _MESSAGES.c.id == bindparam("row_id"), _MESSAGES.c.status == "streaming"
    )
    for statement, params in (
        (end_row, ending),
        (_reserve_statement().statement, reserving),
        (insert(_LINKS), {**link, "part": 2, "created_at": now}),
    ):
        plan = _plan(statement, dialect, frozenset(params))
        assert plan is not None
        assert plan.args(params) == _reference_args(statement, params)
    # Left out: `part` (the scalar 0) and `created_at` (utcnow, called per row).
    plan = _plan(insert(_LINKS), dialect, frozenset(link))
    assert plan is not None
    before = datetime.now(UTC)
    first, second = plan.args(link), plan.args(link)
    expected = _reference_args(insert(_LINKS), {**link, "part": 0, "created_at": now})
    changing = [i for i, (a, b) in enumerate(zip(first, expected, strict=True)) if a != b]
    assert len(changing) == 1  # only the time differs
    stamp = datetime.fromisoformat(first[changing[0]]).replace(tzinfo=UTC)
    assert before - timedelta(seconds=1) <= stamp <= datetime.now(UTC)
    assert second[changing[0]] >= first[changing[0]]
    # A parameter the call does not give and nothing fills: left to the session.
    assert _plan(end_row, dialect, frozenset({"status"})) is None


async def test_the_connection_is_asked_once_per_transaction(services: Services) -> None:
    """Direct statements in one transaction ask the session for its connection
    once; the session's next transaction gets a connection of its own."""
    user_id = await new_user(services)
    generation = await services.chat.send(user_id, "hello")
    await finish(generation)
    answer = generation.turn.answer.id
    touch = Direct(
        update(_MESSAGES).where(_MESSAGES.c.id == bindparam("row_id")).returning(_MESSAGES.c.id)
    )
    session = services.db._writer()
    asked: list[object] = []
    real = session.connection

    async def connection(**kw: Any) -> Any:
        found = await real(**kw)
        asked.append(found)
        return found

    session.connection = connection  # type: ignore[method-assign,assignment]
    try:
        for _ in range(2):
            async with session.begin():
                for content in ("a", "b", "c"):
                    assert await touch.rows(session, {"content": content, "row_id": answer}) == [
                        (answer,)
                    ]
    finally:
        await session.close()
    assert len(asked) == 2
    async with services.db.read() as reader:
        stored = await reader.get(ChatMessage, answer)
    assert stored is not None and stored.content == "c"
