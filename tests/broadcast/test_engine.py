"""The broadcast engine with a recording sender: each person once, blocked people
marked, errors retried, 429s waited out, cancel and pause, progress, and
resuming after a restart or a crash."""

from __future__ import annotations

import asyncio
import time

import pytest
from sqlalchemy import select

from core.broadcast import (
    BroadcastEngine,
    BroadcastError,
    Progress,
    ProgressRef,
    RecipientState,
    Status,
)
from core.db.engine import Database
from core.db.models import Broadcast, BroadcastRecipient, Identity
from tests.broadcast.conftest import RecordingSender, add_people, make_engine
from tests.support.wait import until


async def _states(db: Database, broadcast_id: int) -> dict[str, str]:
    """platform user id -> recipient state."""
    async with db.read() as session:
        rows = (
            await session.execute(
                select(BroadcastRecipient.platform_user_id, BroadcastRecipient.state).where(
                    BroadcastRecipient.broadcast_id == broadcast_id
                )
            )
        ).all()
    return {str(a): str(s) for a, s in rows}


async def _row(db: Database, broadcast_id: int) -> Broadcast:
    async with db.read() as session:
        row = await session.get(Broadcast, broadcast_id)
    assert row is not None
    return row


def _tasks_of(broadcast_id: int) -> list[asyncio.Task[object]]:
    """Every task an engine runs for the broadcast (its monitor and its workers)."""
    prefix = f"broadcast-{broadcast_id}-"
    return [t for t in asyncio.all_tasks() if t.get_name().startswith(prefix) and not t.done()]


async def _kill(broadcast_id: int) -> None:
    """Cancel every task of the broadcast at once, as a dying event loop would."""
    tasks = _tasks_of(broadcast_id)
    for task in tasks:
        task.cancel()
    await asyncio.gather(*tasks, return_exceptions=True)


async def test_everyone_gets_it_once_and_the_counts_are_kept(
    db: Database, engine: BroadcastEngine
) -> None:
    people = await add_people(db, 30)
    sender = RecordingSender()
    engine.add_sender(sender)
    draft = await engine.create_draft(None, "  **Hello** everyone  ")
    assert draft.status is Status.DRAFT and draft.text == "**Hello** everyone"
    await engine.start(draft.id)
    await engine.wait(draft.id)
    progress = await engine.progress(draft.id)
    assert progress.status is Status.DONE
    assert (progress.total, progress.sent, progress.pending) == (30, 30, 0)
    assert sorted(a for a, _, _ in sender.sent) == sorted(p.accounts["telegram"] for p in people)
    assert all(sender.count(p.accounts["telegram"]) == 1 for p in people)
    row = await _row(db, draft.id)
    assert (row.status, row.total, row.sent, row.runner_id) == ("done", 30, 30, None)
    assert row.finished_at is not None
    # A second start changes nothing.
    again = await engine.start(draft.id)
    assert again.status is Status.DONE and len(sender.sent) == 30


async def test_pressing_start_twice_at_once_starts_it_once(
    db: Database, engine: BroadcastEngine
) -> None:
    await add_people(db, 10)
    sender = RecordingSender()
    engine.add_sender(sender)
    draft = await engine.create_draft(None, "hi")
    await asyncio.gather(engine.start(draft.id), engine.start(draft.id))
    await engine.wait(draft.id)
    assert len(sender.sent) == 10
    assert (await engine.progress(draft.id)).total == 10


async def test_blocked_rejected_and_flaky_people(db: Database, engine: BroadcastEngine) -> None:
    people = await add_people(db, 10)
    ids = [p.accounts["telegram"] for p in people]
    sender = RecordingSender(
        blocked={ids[0], ids[1]}, rejected={ids[2]}, errors={ids[3]: 2, ids[4]: 5}
    )
    engine.add_sender(sender)
    draft = await engine.create_draft(None, "news")
    await engine.start(draft.id)
    await engine.wait(draft.id)
    progress = await engine.progress(draft.id)
    assert (progress.sent, progress.blocked, progress.failed) == (6, 2, 2)
    states = await _states(db, draft.id)
    assert states[ids[0]] == states[ids[1]] == RecipientState.BLOCKED
    assert states[ids[2]] == states[ids[4]] == RecipientState.FAILED
    assert states[ids[3]] == RecipientState.SENT  # two errors, then it went through
    assert sender.count(ids[3]) == 1
    async with db.read() as session:
        blocked = set(
            (
                await session.scalars(
                    select(Identity.platform_user_id).where(Identity.is_blocked.is_(True))
                )
            ).all()
        )
    assert blocked == {ids[0], ids[1]}
    # Blocked people are left out of the next broadcast.
    second = await engine.create_draft(None, "more news")
    assert (await engine.preview(second.id)).audience.total == 8


async def test_a_429_pauses_every_worker_for_its_retry_after(
    db: Database, engine: BroadcastEngine
) -> None:
    await add_people(db, 20)
    sender = RecordingSender(concurrency=4, floods=3, flood_seconds=0.3)
    engine.add_sender(sender)
    draft = await engine.create_draft(None, "hi")
    started = time.monotonic()
    await engine.start(draft.id)
    await engine.wait(draft.id)
    assert time.monotonic() - started >= 0.6  # the 429s' waits, at least partly serial
    progress = await engine.progress(draft.id)
    assert progress.sent == 20 and progress.floods == 3
    assert (await _row(db, draft.id)).floods == 3
    assert len(sender.sent) == 20


async def test_no_call_starts_while_a_429_is_waited_out(
    db: Database, engine: BroadcastEngine
) -> None:
    """A worker whose turn came just before another worker's 429 does not call
    during that 429's wait: the platform would only answer 429 again."""
    await add_people(db, 40)
    sender = RecordingSender(per_second=100_000, concurrency=4, floods=6, flood_seconds=0.1)
    engine.add_sender(sender)
    draft = await engine.create_draft(None, "hi")
    await engine.start(draft.id)
    await engine.wait(draft.id)
    assert (await engine.progress(draft.id)).sent == 40
    floods = [at for at, flooded in sender.started if flooded]
    assert len(floods) == 6
    early = [
        (round(at - flood, 4), flooded)
        for flood in floods
        for at, flooded in sender.started
        if flood < at < flood + 0.1
    ]
    assert early == []


async def test_the_rate_stays_within_the_platform_limit(
    db: Database, engine: BroadcastEngine
) -> None:
    await add_people(db, 45)
    sender = RecordingSender(per_second=20, concurrency=4)
    engine.add_sender(sender)
    draft = await engine.create_draft(None, "hi")
    await engine.start(draft.id)
    await engine.wait(draft.id)
    times = sorted(t for _, _, t in sender.sent)
    busiest = max(sum(1 for u in times if t <= u < t + 1.0) for t in times)
    assert busiest <= 20
    assert times[-1] - times[0] >= 44 / 20 * 0.9


async def test_cancel_stops_sending_within_a_second(db: Database, engine: BroadcastEngine) -> None:
    await add_people(db, 200)
    sender = RecordingSender(per_second=100, concurrency=4, delay=0.05)
    engine.add_sender(sender)
    shown: list[Progress] = []

    async def show(progress: Progress) -> None:
        shown.append(progress)

    draft = await engine.create_draft(None, "hi")
    await engine.start(draft.id, on_progress=show)
    await until(lambda: len(sender.sent) >= 20)
    asked = time.monotonic()
    progress = await engine.cancel(draft.id)
    assert time.monotonic() - asked < 1.0
    calls = sender.calls
    await asyncio.sleep(0.5)
    assert sender.calls == calls  # nothing started after cancel returned
    assert progress.status is Status.CANCELLED and progress.finished
    assert progress.sent == len(sender.sent) < 200
    assert progress.pending == 200 - progress.sent  # nobody held, nobody unconfirmed
    states = await _states(db, draft.id)
    assert RecipientState.SENDING not in states.values()
    await until(lambda: bool(shown) and shown[-1].status is Status.CANCELLED)
    assert "Cancelled" in shown[-1].line() and "not sent" in shown[-1].line()
    # A cancelled broadcast is not resumed at start-up.
    assert await make_engine(db, "worker-b").resume_running(take_over=True) == []


async def test_a_cancel_in_another_process_stops_the_sender_within_a_second(
    db: Database, engine: BroadcastEngine
) -> None:
    await add_people(db, 200)
    sender = RecordingSender(per_second=100, concurrency=4, delay=0.05)
    engine.add_sender(sender)
    draft = await engine.create_draft(None, "hi")
    await engine.start(draft.id)
    await until(lambda: len(sender.sent) >= 20)
    other = make_engine(db, "worker-b")  # an admin in another process
    await other.cancel(draft.id)
    asked = time.monotonic()
    await engine.wait(draft.id)
    assert time.monotonic() - asked < 1.0
    calls = sender.calls
    await asyncio.sleep(0.3)
    assert sender.calls == calls
    progress = await other.progress(draft.id)
    assert progress.status is Status.CANCELLED and progress.sent == len(sender.sent)


async def test_pause_and_resume(db: Database, engine: BroadcastEngine) -> None:
    people = await add_people(db, 60)
    sender = RecordingSender(per_second=100, concurrency=2, delay=0.02)
    engine.add_sender(sender)
    draft = await engine.create_draft(None, "hi")
    await engine.start(draft.id)
    await until(lambda: len(sender.sent) >= 10)
    paused = await engine.pause(draft.id)
    assert paused.status is Status.PAUSED and 0 < paused.sent < 60
    assert await engine.resume_running(take_over=True) == []  # paused stays paused
    await engine.resume(draft.id)
    await engine.wait(draft.id)
    assert (await engine.progress(draft.id)).status is Status.DONE
    assert all(sender.count(p.accounts["telegram"]) == 1 for p in people)


async def test_progress_is_shown_every_interval_and_at_the_end(
    db: Database, engine: BroadcastEngine
) -> None:
    await add_people(db, 40)
    engine.add_sender(RecordingSender(per_second=40))
    shown: list[Progress] = []

    async def show(progress: Progress) -> None:
        shown.append(progress)

    draft = await engine.create_draft(None, "hi")
    await engine.start(draft.id, on_progress=show)
    await engine.wait(draft.id)
    await until(lambda: bool(shown) and shown[-1].finished)
    assert len(shown) >= 3  # about a second at 0.2 s intervals, and the end
    done = [p.done for p in shown]
    assert done == sorted(done)
    assert shown[-1].status is Status.DONE and shown[-1].sent == 40
    assert shown[-1].line() == "✅ Done: 40/40 · sent 40"


async def test_a_restart_resumes_where_it_stopped(db: Database) -> None:
    people = await add_people(db, 80)
    first = make_engine(db, "worker-a")
    sender = RecordingSender(per_second=200, concurrency=3, delay=0.01)
    first.add_sender(sender)
    draft = await first.create_draft(None, "hi")
    await first.start(draft.id, report_to=ProgressRef("telegram", "500", "7"))
    await until(lambda: len(sender.sent) >= 30)
    await _kill(draft.id)  # the process goes away; its calls on the wire end first
    before = len(sender.sent)
    assert before < 80

    second = make_engine(db, "worker-b")
    second.add_sender(sender)
    reported: list[Progress] = []

    async def reporter(progress: Progress) -> None:
        reported.append(progress)

    second.add_reporter("telegram", reporter)
    # Another process does not take over while the first one's lease holds...
    assert await second.resume_running() == []
    # ...but the process that starts after a crash, as the only sender, does.
    assert await second.open(take_over=True) == [draft.id]
    await second.wait(draft.id)
    progress = await second.progress(draft.id)
    assert (progress.status, progress.sent, progress.unconfirmed) == (Status.DONE, 80, 0)
    assert all(sender.count(p.accounts["telegram"]) == 1 for p in people)
    # The progress message the broadcast was started with is edited after the restart.
    await until(lambda: bool(reported) and reported[-1].finished)
    assert reported[-1].report_to == ProgressRef("telegram", "500", "7")
    await second.close()
    await first.close()


async def test_a_broadcast_whose_process_stopped_renewing_is_taken_over(db: Database) -> None:
    people = await add_people(db, 40)
    first = make_engine(db, "worker-a", lease_seconds=0.5)
    sender = RecordingSender(per_second=200, concurrency=2, delay=0.02)
    first.add_sender(sender)
    draft = await first.create_draft(None, "hi")
    await first.start(draft.id)
    await until(lambda: len(sender.sent) >= 10)
    await _kill(draft.id)  # hung: it no longer renews its lease

    second = make_engine(db, "worker-b", lease_seconds=0.5)
    second.add_sender(sender)
    await second.open()  # watches for orphans every half lease
    await until(lambda: len(sender.sent) == 40, within=10)
    await second.wait(draft.id)
    assert (await second.progress(draft.id)).status is Status.DONE
    assert all(sender.count(p.accounts["telegram"]) == 1 for p in people)
    await second.close()
    await first.close()


async def test_a_call_whose_outcome_was_not_recorded_is_never_repeated(db: Database) -> None:
    """A process dies between the call and its record: the person may have the
    message, so the row is unconfirmed and nobody sends it again."""
    people = await add_people(db, 40)
    first = make_engine(db, "worker-a", settle_timeout=0.1)
    sender = RecordingSender(per_second=200, concurrency=2)
    first.add_sender(sender)
    recorded = 0
    frozen = asyncio.Event()
    finish = first.store.finish

    async def freezing_finish(*args: object, **kwargs: object) -> bool:
        nonlocal recorded
        if recorded >= 10:
            frozen.set()
            await asyncio.Event().wait()  # the process hangs here, then dies
        recorded += 1
        return await finish(*args, **kwargs)  # type: ignore[arg-type]

    first.store.finish = freezing_finish  # type: ignore[method-assign]
    draft = await first.create_draft(None, "hi")
    await first.start(draft.id)
    await frozen.wait()
    await asyncio.sleep(0.1)  # both workers are stuck after their call
    stuck = len(sender.sent) - 10
    assert stuck == 2

    second = make_engine(db, "worker-b")
    second.add_sender(sender)
    assert await second.open(take_over=True) == [draft.id]
    await second.wait(draft.id)
    await _kill(draft.id)  # the dead process's tasks: nothing of theirs is recorded now
    progress = await second.progress(draft.id)
    assert (progress.status, progress.sent, progress.unconfirmed) == (Status.DONE, 38, 2)
    # Nobody got it twice; the two unconfirmed people got it once, as it happens.
    assert all(sender.count(p.accounts["telegram"]) == 1 for p in people)
    assert "unconfirmed 2" in progress.line()
    await second.close()
    await first.close()


async def test_drafts_change_until_started(db: Database, engine: BroadcastEngine) -> None:
    await add_people(db, 3)
    engine.add_sender(RecordingSender(too_long=100))
    draft = await engine.create_draft(None, "first")
    edited = await engine.edit_draft(draft.id, text="second")
    assert edited.text == "second"
    with pytest.raises(BroadcastError):
        await engine.create_draft(None, "   ")
    long = await engine.edit_draft(draft.id, text="x" * 150)
    preview = await engine.preview(long.id)
    assert preview.problems == {"telegram": "too long"} and not preview.ready
    with pytest.raises(BroadcastError, match="too long"):
        await engine.start(draft.id)
    await engine.edit_draft(draft.id, text="short")
    await engine.start(draft.id)
    with pytest.raises(BroadcastError, match="Only a draft"):
        await engine.edit_draft(draft.id, text="again")
    await engine.wait(draft.id)
    recent = await engine.recent()
    assert [b.id for b in recent] == [draft.id] and recent[0].status is Status.DONE
