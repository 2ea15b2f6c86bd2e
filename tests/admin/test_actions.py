"""What admins change about a person, each with its audit row written in the same
transaction: grant, revoke, quota reset, ban (stopping a streaming answer) and unban."""

from __future__ import annotations

import asyncio
from datetime import timedelta
from typing import Any

import pytest
from sqlalchemy import select

from core.admin import actions
from core.admin.access import CLI_ACTOR, Actor
from core.admin.banned import BannedNotes, forget_banned, should_tell_banned
from core.admin.errors import (
    AdminTarget,
    BadDays,
    BadQuota,
    BadTier,
    NothingToRevoke,
    PersonNotFound,
)
from core.conversations.errors import UserBanned
from core.db.models import AuditLog, OutboxMessage, Subscription, User
from core.services import Services
from core.stop_signals import RedisStopBus
from core.tiers import QuotaKey, Tier
from tests.admin.conftest import TELEGRAM_ADMIN, Build, person
from tests.fakes.llm_server import FakeLLM, Reply
from tests.support.chat import finish


async def _admin(services: Services) -> Actor:
    user_id = await person(services, "telegram", TELEGRAM_ADMIN)
    return Actor(user_id, f"telegram:{TELEGRAM_ADMIN}")


async def _audit(services: Services) -> list[AuditLog]:
    async with services.db.read() as session:
        return list((await session.scalars(select(AuditLog).order_by(AuditLog.id))).all())


async def _user(services: Services, user_id: int) -> User:
    async with services.db.read() as session:
        user = await session.get(User, user_id)
    assert user is not None
    return user


async def _outbox_kinds(services: Services, user_id: int) -> list[str]:
    async with services.db.read() as session:
        rows = await session.scalars(
            select(OutboxMessage.kind)
            .where(OutboxMessage.user_id == user_id)
            .order_by(OutboxMessage.id)
        )
        return list(rows.all())


async def test_grant_gives_a_plan_and_writes_who_what_before_and_after(
    services: Services,
) -> None:
    admin = await _admin(services)
    target = await person(services, "discord", 5000)
    result = await actions.grant(services, admin, target, "pro", 30)
    assert result.changed and result.action == "grant"
    assert result.before["tier"] == "free" and result.after["tier"] == "pro"
    assert result.text.startswith(f"✅ #{target}: Free → Pro until ")
    assert (await _user(services, target)).tier == "pro"
    assert await _outbox_kinds(services, target) == ["plan.activated"]  # the person is told
    [row] = await _audit(services)
    assert row.id == result.audit_id
    assert (row.action, row.actor_user_id, row.target_user_id) == ("grant", admin.user_id, target)
    assert row.details["actor"] == f"telegram:{TELEGRAM_ADMIN}"
    assert row.details["before"] == {"tier": "free", "status": "active", "period_end": None}
    assert row.details["after"]["tier"] == "pro"
    assert row.details["after"]["provider"] == "grant"
    assert row.details["days"] == 30
    end = row.details["after"]["period_end"]
    # The same plan again: added to its end.
    again = await actions.grant(services, admin, target, Tier.PRO, 10)
    assert again.before["period_end"] == result.after["period_end"]
    assert again.after["period_end"] - again.before["period_end"] == timedelta(days=10)
    assert (await _audit(services))[-1].details["before"]["period_end"] == end


async def test_grant_refuses_free_bad_tiers_days_and_unknown_people(services: Services) -> None:
    target = await person(services, "discord", 5001)
    with pytest.raises(BadTier, match="revoke takes a plan away"):
        await actions.grant(services, CLI_ACTOR, target, "free", 30)
    with pytest.raises(BadTier):
        await actions.grant(services, CLI_ACTOR, target, "platinum", 30)
    for days in (0, -1, 3661):
        with pytest.raises(BadDays):
            await actions.grant(services, CLI_ACTOR, target, "pro", days)
    with pytest.raises(PersonNotFound):
        await actions.grant(services, CLI_ACTOR, 987654, "pro", 30)
    assert await _audit(services) == []


async def test_revoke_ends_the_plan_now(services: Services) -> None:
    target = await person(services, "discord", 5002)
    with pytest.raises(NothingToRevoke):
        await actions.revoke(services, CLI_ACTOR, target)
    await actions.grant(services, CLI_ACTOR, target, "enterprise", 90)
    result = await actions.revoke(services, CLI_ACTOR, target)
    assert result.text == f"✅ #{target}: Enterprise taken away; the plan is Free now."
    assert result.notes == []  # a granted plan renews nowhere
    assert (await _user(services, target)).tier == "free"
    async with services.db.read() as session:
        current = await session.scalar(
            select(Subscription).where(Subscription.user_id == target, Subscription.is_current)
        )
    assert current is None
    row = (await _audit(services))[-1]
    assert (row.action, row.actor_user_id, row.details["actor"]) == ("revoke", None, "cli")
    assert row.details["before"]["tier"] == "enterprise"
    assert row.details["after"] == {"tier": "free", "status": "active", "period_end": None}
    # The person's quotas follow the plan: Free's limits.
    report = {q.key: q.limit for q in await services.quotas.report(target, Tier.FREE)}
    assert report[QuotaKey.SMALL] == 100


async def test_revoking_a_plan_that_renews_at_its_provider_says_so(services: Services) -> None:
    from core.subscriptions import Purchase

    target = await person(services, "telegram", 5003)
    async with services.db.write() as session:
        await services.subscriptions.activate(
            session,
            target,
            Purchase(tier=Tier.PRO, provider="telegram_stars", provider_subscription_id="s1",
                     recurring=True),
        )  # fmt: skip
    result = await actions.revoke(services, CLI_ACTOR, target)
    assert result.notes == [
        "⚠️ It renews at telegram_stars: cancel it there too, or the next renewal brings it back."
    ]


async def _use(services: Services, user_id: int, key: QuotaKey, times: int) -> None:
    async with services.db.write() as session:
        for _ in range(times):
            await services.quotas.reserve(session, user_id, Tier.FREE, key)


async def test_reset_quota_sets_use_to_zero_and_keeps_the_windows(services: Services) -> None:
    target = await person(services, "telegram", 5004)
    await _use(services, target, QuotaKey.SMALL, 3)
    await _use(services, target, QuotaKey.LARGE, 2)
    before = {q.key: q for q in await services.quotas.report(target, Tier.FREE)}
    result = await actions.reset_quota(services, CLI_ACTOR, target, "small_messages")
    assert result.before == {"small_messages": 3}
    assert result.after == {"small_messages": 0}
    assert result.text == f"✅ #{target}: Small messages reset to 0."
    after = {q.key: q for q in await services.quotas.report(target, Tier.FREE)}
    assert after[QuotaKey.SMALL].used == 0
    assert after[QuotaKey.SMALL].resets_at == before[QuotaKey.SMALL].resets_at
    assert after[QuotaKey.LARGE].used == 2
    everything = await actions.reset_quota(services, CLI_ACTOR, target)
    assert everything.before == {
        "image_generation": 0,
        "large_messages": 2,
        "small_messages": 0,
        "voice_seconds": 0,
        "web_search": 0,
    }
    assert all(q.used == 0 for q in await services.quotas.report(target, Tier.FREE))
    rows = await _audit(services)
    assert [r.action for r in rows] == ["reset_quota", "reset_quota"]
    assert rows[0].details["quota"] == "small_messages" and rows[1].details["quota"] == "all"
    assert rows[1].details["before"]["large_messages"] == 2
    with pytest.raises(BadQuota):
        await actions.reset_quota(services, CLI_ACTOR, target, "huge_messages")
    # A person who never used anything: the rows are made, nothing was used.
    fresh = await person(services, "telegram", 5005)
    result = await actions.reset_quota(services, CLI_ACTOR, fresh)
    assert not result.changed and set(result.before) == {k.value for k in QuotaKey}


async def test_ban_and_unban_with_a_reason_and_their_audit_rows(services: Services) -> None:
    admin = await _admin(services)
    target = await person(services, "telegram", 5006)
    result = await actions.ban(services, admin, target, "  spam  ")
    assert result.changed and result.stopped == 0
    assert result.text == f"🚫 #{target} is banned. Reason: spam"
    user = await _user(services, target)
    assert (user.is_banned, user.ban_reason) == (True, "spam")
    # The same ban again changes nothing and writes nothing; a new reason is recorded.
    assert not (await actions.ban(services, admin, target, "spam")).changed
    assert (await actions.ban(services, admin, target, "spam and abuse")).changed
    with pytest.raises(UserBanned):
        await services.chat.send(target, "hello")
    unbanned = await actions.unban(services, admin, target)
    assert unbanned.text == f"✅ #{target} is not banned any more."
    assert not (await actions.unban(services, admin, target)).changed
    user = await _user(services, target)
    assert (user.is_banned, user.ban_reason) == (False, None)
    rows = await _audit(services)
    assert [(r.action, r.details["before"], r.details["after"]) for r in rows] == [
        ("ban", {"banned": False, "reason": None}, {"banned": True, "reason": "spam"}),
        ("ban", {"banned": True, "reason": "spam"}, {"banned": True, "reason": "spam and abuse"}),
        ("unban", {"banned": True, "reason": "spam and abuse"}, {"banned": False, "reason": None}),
    ]
    assert all(r.actor_user_id == admin.user_id and r.target_user_id == target for r in rows)
    await finish(await services.chat.send(target, "hello again"))


async def test_admins_cannot_be_banned(services: Services) -> None:
    admin = await _admin(services)
    with pytest.raises(AdminTarget):
        await actions.ban(services, CLI_ACTOR, admin.user_id or 0, "oops")
    assert not (await _user(services, admin.user_id or 0)).is_banned


async def _streaming(services: Services, fake_llm: FakeLLM, user_id: int) -> Any:
    """An answer that streams for seconds, consumed in a task once its first token came."""
    fake_llm.script(Reply(chunks=["one ", "two ", "three ", "four ", "five "], chunk_delay=0.5))
    generation = await services.chat.send(user_id, "tell me a long story")
    started = asyncio.Event()

    async def consume() -> Any:
        async for _ in generation.stream():
            started.set()
        return generation.result

    task = asyncio.create_task(consume())
    await asyncio.wait_for(started.wait(), 10)
    return task


async def test_a_ban_stops_the_answer_streaming_for_the_person(
    services: Services, fake_llm: FakeLLM
) -> None:
    target = await person(services, "telegram", 5007)
    consumer = await _streaming(services, fake_llm, target)
    result = await actions.ban(services, CLI_ACTOR, target, "abuse")
    assert result.stopped == 1
    assert result.notes == ["⏹ Answers streaming for them, told to stop: 1."]
    outcome = await asyncio.wait_for(consumer, 5)
    assert outcome.status == "cancelled"
    assert outcome.content == "one "  # stopped at once, not after the five chunks
    record = await fake_llm.requests[-1].wait_finished()
    assert record.client_disconnected
    with pytest.raises(UserBanned):
        await services.chat.send(target, "and now?")
    assert fake_llm.requests_count == 1  # no model call for a banned person


async def test_a_ban_from_another_process_stops_the_answer_without_redis(
    build: Build, fake_llm: FakeLLM
) -> None:
    """`oneai admin ban` at a shell: the bot process that streams the answer stops it
    at its next admin sync (every worker heartbeat)."""
    bot = await build()
    shell = await build(own_db=True)
    target = await person(bot, "telegram", 5008)
    consumer = await _streaming(bot, fake_llm, target)
    result = await actions.ban(shell, CLI_ACTOR, target)
    assert result.stopped == 1  # asked to stop; it runs elsewhere
    assert not consumer.done()
    assert await bot.admin_sync.stop_banned() == 1
    outcome = await asyncio.wait_for(consumer, 5)
    assert outcome.status == "cancelled"


async def test_a_ban_from_another_process_reaches_it_through_redis(
    build: Build, fake_llm: FakeLLM, redis_url: str | None
) -> None:
    if redis_url is None:
        pytest.skip("needs TEST_REDIS_URL")
    bot = await build(redis_url=redis_url)
    bus = RedisStopBus(redis_url)
    await bus.start(bot.chat.stop)
    bot.chat.stop_bus = bus
    try:
        shell = await build(redis_url=redis_url, own_db=True)
        target = await person(bot, "telegram", 5009)
        consumer = await _streaming(bot, fake_llm, target)
        await bot.workers.start()  # the bot's worker proves it is alive
        result = await actions.ban(shell, CLI_ACTOR, target)
        assert result.stopped == 1
        outcome = await asyncio.wait_for(consumer, 5)
        assert outcome.status == "cancelled"
        assert shell.chat.stop_bus is None  # the shell's channel was closed again
    finally:
        bot.chat.stop_bus = None
        await bus.close()
        await bot.workers.forget()
        await bot.workers.close()


def test_a_banned_person_is_told_once_an_hour_at_most() -> None:
    notes = BannedNotes(interval=3600, size=3)
    assert notes.should_tell(1, now=0)
    assert not notes.should_tell(1, now=10)
    assert not notes.should_tell(1, now=3599)
    assert notes.should_tell(1, now=3600)
    assert notes.should_tell(2, now=3600)
    notes.forget(2)
    assert notes.should_tell(2, now=3601)
    # Bounded: the oldest are forgotten first.
    for user in range(10, 20):
        notes.should_tell(user, now=4000)
    assert len(notes) == 3
    assert notes.should_tell(1, now=4000)


def test_the_process_wide_helper_and_a_ban_resetting_it() -> None:
    user = 10_000_001
    forget_banned(user)
    assert should_tell_banned(user)
    assert not should_tell_banned(user)
    forget_banned(user)  # what a ban or an unban does
    assert should_tell_banned(user)


async def test_every_action_rolls_back_with_its_audit_row(services: Services) -> None:
    """The audit row is part of the change's transaction: a change that fails
    leaves neither."""
    target = await person(services, "telegram", 5010)
    original = services.subscriptions.activate

    async def failing(*args: Any, **kwargs: Any) -> Any:
        await original(*args, **kwargs)
        raise RuntimeError("the database went away")

    services.subscriptions.activate = failing  # type: ignore[method-assign]
    with pytest.raises(RuntimeError):
        await actions.grant(services, CLI_ACTOR, target, "pro", 30)
    services.subscriptions.activate = original  # type: ignore[method-assign]
    assert await _audit(services) == []
    assert (await _user(services, target)).tier == "free"
