"""Conversations, revisions and branches through the real services, database and an
LLM over HTTP."""

from __future__ import annotations

import json
import uuid

import pytest
from sqlalchemy import func, select, update

from core.conversations import store
from core.conversations.errors import (
    BlockingAnswer,
    ConversationBusy,
    ConversationNotFound,
    MessageNotFound,
    NotARevisionTarget,
)
from core.conversations.export import export_json, export_markdown
from core.conversations.links import PlatformMessage
from core.conversations.path import PathMessage
from core.conversations.turns import _LOCK
from core.db.models import Attachment, ChatMessage, MessageStatus
from core.services import Services
from tests.fakes.llm_server import FakeLLM, Reply
from tests.support.chat import all_rows, check_invariants, finish, new_user
from tests.support.queries import count_queries


async def test_first_message_creates_a_titled_conversation(services: Services) -> None:
    user_id = await new_user(services)
    gen = await services.chat.send(user_id, "  What is the capital of France, and why is it there?")
    result = await finish(gen)
    assert result.status == "complete"
    assert result.content == "Echo: What is the capital of France, and why is it there?"
    conversation = gen.turn.conversation
    assert conversation.title == "What is the capital of France, and why…"
    path = await services.conversations.active_path(conversation.id)
    assert [(r.role, r.sequence_number, r.revision_number) for r in path] == [
        ("user", 1, 0),
        ("assistant", 2, 0),
    ]
    assert path[1].content == result.content
    assert path[1].status == "complete"
    assert path[1].completion_tokens is not None
    # The next message continues the same conversation.
    second = await services.chat.send(user_id, "And Germany?")
    await finish(second)
    assert second.turn.conversation.id == conversation.id
    check_invariants(await all_rows(services.db, conversation.id))


async def test_seed_example_edit_then_continue(services: Services) -> None:
    """The seed's table: seq=1 rev=0, seq=2 rev=0, edit -> seq=1 rev=1 and
    seq=2 rev=1 (regenerated due to edit), then seq=3 rev=0, seq=4 rev=0."""
    user_id = await new_user(services)
    first = await services.chat.send(user_id, "Hello")
    await finish(first)
    edit = await services.chat.edit(user_id, first.turn.prompt.id, "Hello, world")
    await finish(edit)
    more = await services.chat.send(user_id, "Next")
    await finish(more)
    rows = await all_rows(services.db, first.turn.conversation.id)
    table = sorted(
        (r.sequence_number, r.revision_number, r.role, r.revision_type, r.is_latest) for r in rows
    )
    assert table == [
        (1, 0, "user", None, False),
        (1, 1, "user", "user_edit", True),
        (2, 0, "assistant", None, False),
        (2, 1, "assistant", "regeneration", True),
        (3, 0, "user", None, True),
        (4, 0, "assistant", None, True),
    ]
    edited_answer = next(r for r in rows if r.sequence_number == 2 and r.revision_number == 1)
    assert edited_answer.original_message_id == first.turn.answer.id
    assert edited_answer.meta == {"cause": "user_edit"}
    check_invariants(rows)


async def test_regenerate_keeps_old_answer_and_pages(services: Services, fake_llm: FakeLLM) -> None:
    user_id = await new_user(services)
    fake_llm.script(Reply(text="First answer"), Reply(text="Second answer"))
    gen = await services.chat.send(user_id, "Tell me something")
    await finish(gen)
    regen = await services.chat.regenerate(user_id, gen.message_id)
    await finish(regen)
    revisions = await services.conversations.revisions(user_id, gen.message_id)
    assert [r.content for r in revisions.items] == ["First answer", "Second answer"]
    assert revisions.label == "2/2"
    assert revisions.items[1].revision_type == "regeneration"
    # Page back to 1/2.
    path = await services.conversations.switch_revision(user_id, gen.message_id, 1)
    assert path[-1].content == "First answer"
    assert (await services.conversations.revisions(user_id, gen.message_id)).label == "1/2"
    check_invariants(await all_rows(services.db, gen.turn.conversation.id))
    # The regenerated request sent the same prompt.
    bodies = [r.body["messages"] for r in fake_llm.requests]
    assert bodies[0] == bodies[1]


async def test_edit_branches_and_switching_back_restores_the_old_branch(
    services: Services,
) -> None:
    user_id = await new_user(services)
    a = await services.chat.send(user_id, "one")
    await finish(a)
    b = await services.chat.send(user_id, "two")
    await finish(b)
    c = await services.chat.send(user_id, "three")
    await finish(c)
    conversation_id = a.turn.conversation.id
    # Edit message 2 ("two"): a new branch from there; "three" leaves the path.
    edit = await services.chat.edit(user_id, b.turn.prompt.id, "two, edited")
    await finish(edit)
    path = await services.conversations.active_path(conversation_id)
    assert [r.content for r in path] == ["one", "Echo: one", "two, edited", "Echo: two, edited"]
    # The old branch is still there, whole.
    rows = await all_rows(services.db, conversation_id)
    assert len(rows) == 8
    # Switching message 2 back to revision 1 brings back everything that followed it.
    path = await services.conversations.switch_revision(user_id, b.turn.prompt.id, 1)
    assert [r.content for r in path] == [
        "one",
        "Echo: one",
        "two",
        "Echo: two",
        "three",
        "Echo: three",
    ]
    # And revision 2 again brings back the edited branch.
    path = await services.conversations.switch_revision(user_id, b.turn.prompt.id, 2)
    assert [r.content for r in path][-1] == "Echo: two, edited"
    check_invariants(await all_rows(services.db, conversation_id))


async def test_switching_an_answer_revision_picks_the_most_recent_child(
    services: Services,
) -> None:
    user_id = await new_user(services)
    a = await services.chat.send(user_id, "q1")
    await finish(a)
    a2 = await services.chat.regenerate(user_id, a.message_id)  # answer 1, revision 2
    await finish(a2)
    x = await services.chat.send(user_id, "after rev2 (x)")
    await finish(x)
    await services.conversations.switch_revision(user_id, a.message_id, 1)
    y = await services.chat.send(user_id, "after rev1 (y)")
    await finish(y)
    z = await services.chat.send(user_id, "after rev1 (z)")
    await finish(z)
    path = await services.conversations.switch_revision(user_id, a.message_id, 2)
    assert [r.content for r in path][2:] == ["after rev2 (x)", "Echo: after rev2 (x)"]
    path = await services.conversations.switch_revision(user_id, a.message_id, 1)
    assert [r.content for r in path][2:] == [
        "after rev1 (y)",
        "Echo: after rev1 (y)",
        "after rev1 (z)",
        "Echo: after rev1 (z)",
    ]
    check_invariants(await all_rows(services.db, a.turn.conversation.id))


async def test_reply_to_an_older_answer_branches(services: Services) -> None:
    user_id = await new_user(services)
    a = await services.chat.send(user_id, "alpha")
    await finish(a)
    b = await services.chat.send(user_id, "beta")
    await finish(b)
    branch = await services.chat.send(user_id, "gamma", reply_to=a.message_id)
    await finish(branch)
    conversation_id = a.turn.conversation.id
    path = await services.conversations.active_path(conversation_id)
    assert [r.content for r in path] == ["alpha", "Echo: alpha", "gamma", "Echo: gamma"]
    assert branch.turn.prompt.revision_number == 0  # a new message, not a revision
    # The old branch comes back through its answer.
    path = await services.conversations.activate(user_id, b.message_id)
    assert [r.content for r in path][2:] == ["beta", "Echo: beta"]
    # The LLM saw only the branch's history.
    check_invariants(await all_rows(services.db, conversation_id))


async def test_branch_from_then_send(services: Services) -> None:
    user_id = await new_user(services)
    a = await services.chat.send(user_id, "alpha")
    await finish(a)
    b = await services.chat.send(user_id, "beta")
    await finish(b)
    path = await services.conversations.branch_from(user_id, a.message_id)
    assert [r.content for r in path] == ["alpha", "Echo: alpha"]
    c = await services.chat.send(user_id, "delta")
    await finish(c)
    sent = c.turn.history
    assert [m.content for m in sent] == ["alpha", "Echo: alpha", "delta"]
    check_invariants(await all_rows(services.db, a.turn.conversation.id))


async def test_regenerating_an_old_answer_acts_on_that_answer(services: Services) -> None:
    user_id = await new_user(services)
    a = await services.chat.send(user_id, "first")
    await finish(a)
    b = await services.chat.send(user_id, "second")
    await finish(b)
    regen = await services.chat.regenerate(user_id, a.message_id)
    await finish(regen)
    path = await services.conversations.active_path(a.turn.conversation.id)
    assert len(path) == 2
    assert path[-1].original_message_id == a.message_id
    assert path[-1].revision_number == 1


async def test_load_active_path_is_one_query(services: Services) -> None:
    user_id = await new_user(services)
    for text in ("a", "b", "c", "d"):
        await finish(await services.chat.send(user_id, text))
    gen = await services.chat.send(user_id, "e")
    await finish(gen)
    with count_queries(services.db) as log:
        path = await services.conversations.active_path(gen.turn.conversation.id)
    assert len(path) == 10
    assert log.count == 1


async def test_a_message_at_the_end_is_planned_in_four_statements(services: Services) -> None:
    """User lock with the path, quota, both rows, and the prompt's link: the
    conversation's count and time are the database's to keep (migration 0013)."""
    user_id = await new_user(services)
    await finish(await services.chat.send(user_id, "a"))
    with count_queries(services.db) as log:
        gen = await services.chat.send(
            user_id, "b", prompt_link=PlatformMessage("test", "1", uuid.uuid4().hex)
        )
    await finish(gen)
    assert log.count == 4, "\n".join(s[:70] for s in log.statements)
    assert not any(s.startswith("UPDATE conversations") for s in log.statements)


async def test_the_count_of_streaming_answers_reads_only_streaming_rows(
    services: Services,
) -> None:
    """The lock query counts a person's streaming answers from the partial index of
    them (migration 0014), not from every message the person ever had: the same
    count either way, a plan that names the index on SQLite (there the index holds
    all the count reads, so the planner always prefers it)."""
    user_id = await new_user(services)
    for text in ("a", "b", "c"):
        await finish(await services.chat.send(user_id, text))
    streaming = await services.chat.send(user_id, "d")  # left streaming
    async with services.db.read() as session:
        running = (await session.execute(_LOCK, {"user_id": user_id})).one()[1]
        counted = await session.scalar(
            select(func.count())
            .select_from(ChatMessage)
            .where(
                ChatMessage.user_id == user_id,
                ChatMessage.status == MessageStatus.STREAMING,
            )
        )
        assert running == counted == 1
        if services.db.is_sqlite:
            connection = await session.connection()
            compiled = _LOCK.compile(dialect=connection.dialect)
            params = tuple(user_id for _ in compiled.positiontup or ())
            plan = await connection.exec_driver_sql(f"EXPLAIN QUERY PLAN {compiled}", params)
            details = [row[-1] for row in plan]
            assert any("ix_chat_messages_user_streaming" in d for d in details), details
    await finish(streaming)


async def test_the_path_read_with_the_lock_is_the_stored_path(services: Services) -> None:
    """The active path the lock query brings as one JSON value holds what the stored
    rows hold: ids, order, nested metadata, a document, and a streaming answer's
    worker and heartbeat (to the microsecond); other revisions stay out."""
    user_id = await new_user(services)
    first = await services.chat.send(user_id, "a")
    await finish(first)
    await finish(await services.chat.regenerate(user_id, first.message_id))  # a revision
    await finish(await services.chat.send(user_id, 'ü \u2603 "quoted"\n'))
    streaming = await services.chat.send(user_id, "c")  # left streaming
    async with services.db.write() as session:
        document = Attachment(
            user_id=user_id,
            name="r.pdf",
            mime_type="application/pdf",
            size_bytes=3,
            pages=1,
            chars=3,
            content="abc",
        )
        session.add(document)
        await session.flush()
        await session.execute(
            update(ChatMessage)
            .where(ChatMessage.id == streaming.turn.prompt.id)
            .values(attachment_id=document.id, meta={"images": ["x"], "n": [1, {"k": None}]})
        )
    async with services.db.write() as session:
        _, current, path = await services.chat.planner._lock_user(session, user_id, with_path=True)
        assert current is not None
        stored = await store.load_active_path(session, current.id)
    fields = PathMessage._fields
    assert path is not None and len(path) == len(stored) == 6
    assert [tuple(getattr(m, f) for f in fields) for m in path] == [
        tuple(getattr(m, f) for f in fields) for m in stored
    ]
    last = path[-1]
    assert last.status == MessageStatus.STREAMING and last.worker_id is not None
    assert last.heartbeat_at is not None and last.heartbeat_at.tzinfo is not None
    with pytest.raises(ConversationBusy) as busy:  # read from the JSON path, in `send`
        await services.chat.send(user_id, "d")
    assert busy.value.blocking == (BlockingAnswer(last.id, last.worker_id, last.heartbeat_at),)
    await finish(streaming)


async def test_metadata_that_json_would_refuse_still_reads_as_before(services: Services) -> None:
    """SQLite keeps a JSON column as text; what the column type reads (NaN from
    Python's json.dumps) the path reads too, instead of failing every later turn."""
    if not services.db.is_sqlite:
        pytest.skip("PostgreSQL refuses NaN in a json value on the way in")
    user_id = await new_user(services)
    first = await services.chat.send(user_id, "a")
    await finish(first)
    async with services.db.write() as session:
        await session.execute(
            update(ChatMessage)
            .where(ChatMessage.id == first.turn.prompt.id)
            .values(meta={"score": float("nan")})
        )
    await finish(await services.chat.send(user_id, "b"))  # planned with the path


async def test_the_database_counts_a_conversations_rows_and_its_last_message_time(
    services: Services,
) -> None:
    user_id = await new_user(services)
    first = await services.chat.send(user_id, "a")
    await finish(first)
    conversation_id = first.turn.conversation.id
    assert first.turn.conversation.message_count == 2  # the object is told as well
    regen = await services.chat.regenerate(user_id, first.message_id)
    await finish(regen)
    second = await services.chat.send(user_id, "b")
    await finish(second)
    stored = await services.conversations.get(user_id, conversation_id)
    rows = await all_rows(services.db, conversation_id)
    assert stored.message_count == len(rows) == 5  # revisions count too
    assert stored.last_message_at == max(r.created_at for r in rows)
    assert stored.updated_at == stored.last_message_at


async def test_list_rename_delete(services: Services) -> None:
    user_id = await new_user(services)
    ids = []
    for text in ("first chat", "second chat", "third chat"):
        gen = await services.chat.send(user_id, text, new_conversation=True)
        await finish(gen)
        ids.append(gen.turn.conversation.id)
    page = await services.conversations.page(user_id, page=1, per_page=2)
    assert [c.title for c in page.items] == ["third chat", "second chat"]
    assert (page.page, page.pages, page.total) == (1, 2, 3)
    page2 = await services.conversations.page(user_id, page=2, per_page=2)
    assert [c.title for c in page2.items] == ["first chat"]
    # Activity moves a conversation to the top.
    await finish(await services.chat.send(user_id, "more", conversation_id=ids[0]))
    page = await services.conversations.page(user_id, page=1, per_page=2)
    assert page.items[0].id == ids[0]

    assert (
        await services.conversations.rename(user_id, ids[1], "  Renamed   chat ") == "Renamed chat"
    )
    assert (await services.conversations.get(user_id, ids[1])).title == "Renamed chat"

    other = await new_user(services)
    with pytest.raises(ConversationNotFound):
        await services.conversations.rename(other, ids[1], "stolen")
    with pytest.raises(ConversationNotFound):
        await services.conversations.delete(other, ids[1])

    await services.conversations.delete(user_id, ids[0])
    assert await all_rows(services.db, ids[0]) == []
    assert (await services.conversations.page(user_id)).total == 2
    assert await services.conversations.current(user_id) is None  # it was current


async def test_other_users_messages_are_out_of_reach(services: Services) -> None:
    owner = await new_user(services)
    gen = await services.chat.send(owner, "mine")
    await finish(gen)
    intruder = await new_user(services)
    with pytest.raises(MessageNotFound):
        await services.chat.regenerate(intruder, gen.message_id)
    with pytest.raises(MessageNotFound):
        await services.chat.edit(intruder, gen.turn.prompt.id, "hacked")
    with pytest.raises(MessageNotFound):
        await services.conversations.switch_revision(intruder, gen.message_id, 1)
    with pytest.raises(MessageNotFound):
        await services.chat.send(intruder, "hi", reply_to=gen.message_id)
    with pytest.raises(NotARevisionTarget):
        await services.chat.regenerate(owner, gen.turn.prompt.id)
    with pytest.raises(NotARevisionTarget):
        await services.chat.edit(owner, gen.message_id, "answers are not edited")


async def test_export_markdown_and_json(services: Services) -> None:
    user_id = await new_user(services)
    gen = await services.chat.send(user_id, "Export me")
    await finish(gen)
    await finish(await services.chat.regenerate(user_id, gen.message_id))
    conversation_id = gen.turn.conversation.id
    markdown = await export_markdown(services.db, user_id, conversation_id)
    assert markdown.startswith("# Export me\n")
    assert "## You\n\nExport me" in markdown
    assert markdown.count("## Assistant") == 1  # the active path only
    document = json.loads(await export_json(services.db, user_id, conversation_id))
    assert len(document["messages"]) == 3  # every revision
    assert sum(m["is_latest"] for m in document["messages"]) == 2
    with pytest.raises(ConversationNotFound):
        await export_json(services.db, await new_user(services), conversation_id)


async def test_switching_back_restores_the_most_recently_shown_answer(
    services: Services, fake_llm: FakeLLM
) -> None:
    """Under a message with several answers, switching back to that message shows the
    answer that was shown last, not the first or the newest."""
    user_id = await new_user(services)
    fake_llm.script(Reply(text="A1"), Reply(text="A2"), Reply(text="A3"), Reply(text="E1"))
    gen = await services.chat.send(user_id, "question")
    await finish(gen)
    await finish(await services.chat.regenerate(user_id, gen.message_id))  # A2
    await finish(await services.chat.regenerate(user_id, gen.message_id))  # A3
    await services.conversations.switch_revision(user_id, gen.message_id, 2)  # show A2
    await finish(await services.chat.edit(user_id, gen.turn.prompt.id, "other question"))
    path = await services.conversations.switch_revision(user_id, gen.turn.prompt.id, 1)
    assert [r.content for r in path] == ["question", "A2"]
