"""Long answers, flood limits, regenerate and paging, edits, replies, Stop, quotas,
forged buttons, failures and restarts: what a person sees in Telegram."""

from __future__ import annotations

import asyncio
import uuid

from sqlalchemy import func, select, update

from bot.telegram import keyboards
from core.accounts import PlatformProfile
from core.conversations.links import PlatformMessage
from core.db.models import ChatMessage, Identity, OutboxMessage, UsageQuota
from core.services import Services
from tests.fakes.llm_server import Reply
from tests.fakes.telegram_server import FakeTelegram
from tests.support.chat import all_rows
from tests.telegram.conftest import USER, Harness, until


async def _conversation_rows(app: Harness) -> list[ChatMessage]:
    user = await app.services.accounts.by_identity("telegram", str(USER))
    assert user is not None
    conversation = await app.services.conversations.current(user.id)
    assert conversation is not None
    return await all_rows(app.services.db, conversation.id)


async def test_ten_thousand_characters_arrive_whole_in_three_messages(app: Harness) -> None:
    words = [f"w{i:04d} " for i in range(1667)]  # 10,002 characters
    text = "".join(words)
    chunks = ["".join(words[i : i + 50]) for i in range(0, len(words), 50)]
    app.llm.script(Reply(chunks=chunks, chunk_delay=0.02))
    app.tg.send_text(USER, "Write a lot")
    await app.answered()
    messages = app.bot_messages()
    assert len(messages) == 3
    assert all(len(m.text or "") <= 4096 for m in messages)
    assert "".join(m.text or "" for m in messages).split() == text.split()
    # Only the last part carries the buttons.
    assert not messages[0].buttons and not messages[1].buttons and messages[2].buttons


async def test_a_storm_of_429s_still_ends_with_the_right_text(app: Harness) -> None:
    chunks = [f"part{i} " for i in range(15)]
    app.llm.script(Reply(chunks=chunks, chunk_delay=0.05))
    app.tg.flood_storm("editMessageText", count=3, retry_after=1)
    app.tg.send_text(USER, "hello")
    await app.answered(within=20)
    assert len([f for f in app.tg.floods if f.reason == "storm"]) == 3
    (message,) = app.bot_messages()
    assert message.text == "".join(chunks).strip()
    # After each 429 the bot waited at least retry_after before the next edit.
    edits = app.tg.calls_of("editMessageText")
    for flood in [f for f in app.tg.floods if f.reason == "storm"]:
        later = [c for c in edits if c.time > flood.time]
        assert not later or later[0].time - flood.time >= 0.95


async def test_regenerate_and_page_through_versions(app: Harness) -> None:
    app.llm.script(Reply(text="First version."), Reply(text="Second version."))
    app.tg.send_text(USER, "Say something")
    await app.answered()
    (message,) = app.bot_messages()
    app.tg.press(USER, message.message_id, app.button(message, "a:r:"))
    await until(lambda: app.tg.message(USER, message.message_id).text == "Second version.")
    await app.answered()
    message = app.tg.message(USER, message.message_id)
    labels = [b["text"] for b in message.buttons]
    assert labels[:3] == ["◀", "2/2", "▶"]
    assert len(app.bot_messages()) == 1  # edited in place, not a new message
    # ◀ shows version 1 in the same message, and makes it current.
    app.tg.press(USER, message.message_id, app.button(message, "a:p:"))
    await until(lambda: app.tg.message(USER, message.message_id).text == "First version.")
    await until(
        lambda: "1/2" in [b["text"] for b in app.tg.message(USER, message.message_id).buttons]
    )
    rows = await _conversation_rows(app)
    active = [r for r in rows if r.is_latest]
    assert active[-1].content == "First version."


async def test_editing_a_message_branches(app: Harness) -> None:
    app.llm.script(Reply(text="About cats."), Reply(text="About dogs."))
    sent = app.tg.send_text(USER, "Tell me about cats")
    await app.answered()
    app.tg.edit_text(USER, sent, "Tell me about dogs")
    await app.answered(2)
    texts = [m.text for m in app.bot_messages()]
    assert texts == ["About cats.", "About dogs."]
    assert app.llm.requests[1].body["messages"][-1]["content"] == "Tell me about dogs"
    rows = await _conversation_rows(app)
    assert {(r.revision_type, r.is_latest) for r in rows if r.role == "user"} == {
        (None, False),
        ("user_edit", True),
    }
    # The new answer pages with the old one (same revision group).
    last = app.bot_messages()[-1]
    assert [b["text"] for b in last.buttons][:3] == ["◀", "2/2", "▶"]


async def test_replying_to_an_older_answer_branches(app: Harness) -> None:
    app.tg.send_text(USER, "first")
    await app.answered(1)
    app.tg.send_text(USER, "second")
    await app.answered(2)
    first_answer = app.bot_messages()[0]
    app.tg.send_text(USER, "third, from the first", reply_to=first_answer.message_id)
    await app.answered(3)
    sent = app.llm.requests[-1].body["messages"]
    assert [m["content"] for m in sent] == ["first", "Echo: first", "third, from the first"]


async def test_stop_keeps_the_partial_text(app: Harness) -> None:
    app.llm.script(Reply(chunks=[f"slow{i} " for i in range(40)], chunk_delay=0.1))
    app.tg.send_text(USER, "Go slowly")
    message = await app.tg.wait_for(
        lambda: next((m for m in app.bot_messages() if m.buttons), None)
    )
    await asyncio.sleep(0.3)
    app.tg.press(USER, message.message_id, app.button(message, "a:s:"))
    await app.answered()
    final = app.tg.message(USER, message.message_id)
    assert final.text is not None
    assert final.text.startswith("slow0") and final.text.endswith("Stopped.")
    assert "slow39" not in final.text
    rows = await _conversation_rows(app)
    assert rows[-1].status == "cancelled"


async def test_quota_exhausted_answers_with_reset_time_and_makes_no_llm_call(
    app: Harness,
) -> None:
    app.tg.send_text(USER, "one")
    await app.answered()
    async with app.services.db.write() as session:
        await session.execute(update(UsageQuota).values(quota_limit=1))
    app.tg.send_text(USER, "two")
    reply = await app.tg.wait_for(
        lambda: next((m for m in app.bot_messages() if "reset" in (m.text or "")), None)
    )
    assert "Pro plan" in (reply.text or "")
    assert app.llm.requests_count == 1


async def test_forged_and_foreign_buttons_change_nothing(app: Harness, tg: FakeTelegram) -> None:
    app.tg.send_text(USER, "hello")
    await app.answered()
    (message,) = app.bot_messages()
    before = (message.text, message.edits)

    def press_raw(user_id: int, data: str) -> str:
        return tg.press(user_id, message.message_id, data, chat_id=USER, forge=True)

    forged = [
        f"a:r:{uuid.uuid4().hex}:0",  # a row that does not exist
        "a:r:not-a-uuid:0",
        "a:zz:1:1",  # an unknown operation
        "h:r:" + "0" * 32 + ":1",
        "m:99999:c",
    ]
    ids = [press_raw(USER, data) for data in forged]
    # Someone else pressing the real Regenerate button.
    tg.user(2002, first_name="Mallory")
    ids.append(press_raw(2002, app.button(message, "a:r:")))
    await until(
        lambda: all(tg.callback_queries.get(i) and tg.callback_queries[i].answered for i in ids)
    )
    assert app.llm.requests_count == 1
    message = app.tg.message(USER, message.message_id)
    assert (message.text, message.edits) == before
    assert len(app.bot_messages()) == 1


async def test_llm_failure_mid_stream_keeps_text_and_refunds(app: Harness) -> None:
    app.llm.script(Reply(chunks=["Half ", "an ", "answer ", "more"], disconnect_after=2))
    app.tg.send_text(USER, "hi")
    await app.answered()
    (message,) = app.bot_messages()
    assert message.text is not None
    assert message.text.startswith("Half an")
    assert "⚠️" in message.text
    user = await app.services.accounts.by_identity("telegram", str(USER))
    assert user is not None
    report = await app.services.quotas.report(user.id, "free")  # type: ignore[arg-type]
    assert report[0].used == 0


async def test_answers_of_a_dead_worker_are_shown_cut_from_the_outbox(app: Harness) -> None:
    """Another process died mid-answer: one answer was showing its first words, one
    had shown nothing yet. A sweep ends both; the person sees each cut, with 🔄."""
    user = await app.services.accounts.upsert(PlatformProfile("telegram", str(USER)))
    dead = Services.build(app.services.settings, llm=app.services.llm, db=app.services.db)
    # The dead process took these updates; this one never sees them.
    first_prompt = app.tg.send_text(USER, "long one", deliver=False)
    second_prompt = app.tg.send_text(USER, "another one", deliver=False)
    showing = await dead.chat.send(
        user.id,
        "long one",
        new_conversation=True,
        platform="telegram",
        prompt_link=PlatformMessage("telegram", str(USER), str(first_prompt)),
    )
    await dead.chat.send(
        user.id,
        "another one",
        new_conversation=True,
        platform="telegram",
        prompt_link=PlatformMessage("telegram", str(USER), str(second_prompt)),
    )
    async with app.services.db.write() as session:  # its last heartbeat saved this
        await session.execute(
            update(ChatMessage)
            .where(ChatMessage.id == showing.message_id)
            .values(content="The first words")
        )
    shown = await app.bot.send_message(
        USER, "The first words", reply_markup=keyboards.streaming("en", showing.message_id)
    )
    await app.answerer.links.show(USER, showing.message_id, [shown.message_id])
    before = len(app.bot_messages())

    assert await app.services.liveness.sweep(confirm=False) == 2
    cut_note = "⚠️ This answer was cut off by a restart. Press 🔄 to try again."
    # The one showing keeps its words (the row may hold fewer), ⏹ becomes 🔄, and a
    # note below says it was cut.
    await until(lambda: len(app.bot_messages()) == before + 2)
    final = app.tg.message(USER, shown.message_id)
    assert final.text == "The first words"
    assert any(b["callback_data"].startswith("a:r:") for b in final.buttons)
    note = next(m for m in app.bot_messages() if m.reply_to == shown.message_id)
    assert note.text == cut_note
    # The one that showed nothing gets a message of its own below its prompt.
    notice = next(m for m in app.bot_messages() if m.reply_to == second_prompt)
    assert notice.text == cut_note
    assert any(b["callback_data"].startswith("a:r:") for b in notice.buttons)
    # Its 🔄 works: the answer comes this time.
    app.tg.press(USER, notice.message_id, app.button(notice, "a:r:"))
    await until(lambda: "Echo: another one" in (app.tg.message(USER, notice.message_id).text or ""))
    async with app.services.db.read() as session:
        pending = await session.scalar(
            select(func.count()).select_from(OutboxMessage).where(OutboxMessage.sent_at.is_(None))
        )
    assert pending == 0  # each notice went out once


async def test_blocked_user_is_marked(app: Harness) -> None:
    app.tg.block(USER)
    app.tg.send_text(USER, "hello")
    await until(lambda: app.tg.calls_of("sendMessage") or app.tg.calls_of("editMessageText"))
    await asyncio.sleep(0.3)

    async def blocked() -> bool:
        async with app.services.db.read() as session:
            identity = await session.get(Identity, 1)
        return identity is not None and identity.is_blocked

    for _ in range(50):
        if await blocked():
            break
        await asyncio.sleep(0.05)
    assert await blocked()


async def test_a_multi_part_answer_is_regenerated_and_paged_as_a_whole(app: Harness) -> None:
    long_text = "".join(f"w{i:04d} " for i in range(1667))
    app.llm.script(
        Reply(chunks=[long_text[i : i + 500] for i in range(0, len(long_text), 500)]),
        Reply(text="Short now."),
    )
    app.tg.send_text(USER, "long please")
    await app.answered()
    parts = app.bot_messages()
    assert len(parts) == 3
    app.tg.press(USER, parts[-1].message_id, app.button(parts[-1], "a:r:"))
    await until(lambda: len(app.bot_messages()) == 1)
    await app.answered()
    (short,) = app.bot_messages()
    assert short.text == "Short now."
    assert short.message_id == parts[0].message_id  # the first part was reused
    # ◀ brings the long version back, in as many messages as it needs.
    app.tg.press(USER, short.message_id, app.button(short, "a:p:"))
    await until(lambda: len(app.bot_messages()) == 3)
    await until(lambda: bool(app.bot_messages()[-1].buttons))
    shown = app.bot_messages()
    assert "".join(m.text or "" for m in shown).split() == long_text.split()
    assert [b["text"] for b in shown[-1].buttons][:3] == ["◀", "1/2", "▶"]
    # Buttons of the page shown still work: ▶ goes to 2/2 again.
    app.tg.press(USER, shown[-1].message_id, app.button(shown[-1], "a:p:"))
    await until(lambda: len(app.bot_messages()) == 1)
