"""One account across platforms: link codes, joining two users into one (plans,
quotas, conversations), unlinking, on the real database."""

from __future__ import annotations

import asyncio
import hashlib
import re
from datetime import UTC, datetime, timedelta
from typing import Any

import pytest
from sqlalchemy import func, select

from core.accounts import AccountService, PlatformProfile
from core.conversations.errors import UserBanned
from core.db.engine import Database
from core.db.models import (
    AuditLog,
    Base,
    ChatMessage,
    Conversation,
    Identity,
    LinkAttempt,
    LinkCodeRecord,
    MessageLink,
    OutboxMessage,
    Payment,
    Subscription,
    SubscriptionHistory,
    UsageQuota,
    User,
)
from core.linking import (
    CODE_TTL,
    AlreadyLinked,
    LastIdentity,
    LinkBusy,
    LinkCodeInvalid,
    LinkCodeMalformed,
    LinkConflict,
    LinkLocked,
    LinkOwnCode,
    LinkResult,
    LinkSamePlatform,
    LinkService,
    NotLinked,
    hash_code,
    new_code,
    normalize_code,
)
from core.outbox import Outbox
from core.quotas import QuotaService
from core.services import Services
from core.subscriptions import Purchase, Reason, Status, SubscriptionService
from core.tiers import TIERS, QuotaKey, Tier
from tests.support.chat import all_rows, check_invariants, finish
from tests.test_quotas import FakeNow

START = datetime(2026, 3, 10, 12, 0, tzinfo=UTC)


class World:
    """The link service and its neighbours on one controlled clock."""

    def __init__(self, db: Database) -> None:
        self.db = db
        self.now = FakeNow(START)
        self.quotas = QuotaService(db, now=self.now)
        self.outbox = Outbox(db, now=self.now)
        self.subs = SubscriptionService(db, self.quotas, self.outbox, now=self.now)
        self.links = LinkService(db, now=self.now, quotas=self.quotas, outbox=self.outbox)
        self.accounts = AccountService(db, now=self.now)

    async def user(self, platform: str, platform_id: str) -> int:
        user = await self.accounts.upsert(PlatformProfile(platform, platform_id))
        return user.id

    async def link(self, owner: int, owner_platform: str, redeemer: int, platform: str) -> Any:
        code = await self.links.issue_code(owner, owner_platform)
        return await self.links.redeem(redeemer, platform, code.code)

    async def buy(self, user_id: int, tier: Tier, days: int, **purchase: Any) -> None:
        async with self.db.write() as session:
            await self.subs.activate(
                session,
                user_id,
                Purchase(
                    tier=tier,
                    provider=str(purchase.pop("provider", "test")),
                    period=timedelta(days=days),
                    **purchase,
                ),
            )

    async def use(self, user_id: int, key: QuotaKey, times: int, tier: Tier = Tier.FREE) -> None:
        for _ in range(times):
            async with self.db.write() as session:
                await self.quotas.reserve(session, user_id, tier, key)

    async def used(self, user_id: int, key: QuotaKey = QuotaKey.SMALL) -> tuple[int, int]:
        tier = await self.tier(user_id)
        report = {s.key: s for s in await self.quotas.report(user_id, Tier(tier))}
        return report[key].used, report[key].limit

    async def tier(self, user_id: int) -> str:
        async with self.db.read() as session:
            user = await session.get(User, user_id)
            assert user is not None
            return user.tier

    async def exists(self, user_id: int) -> bool:
        async with self.db.read() as session:
            return await session.get(User, user_id) is not None

    async def count(self, model: type[Any], *where: Any) -> int:
        async with self.db.read() as session:
            query = select(func.count()).select_from(model)
            return int(await session.scalar(query.where(*where)) or 0)


@pytest.fixture
def world(db: Database) -> World:
    return World(db)


# -- codes ------------------------------------------------------------------------


def test_codes_are_short_unambiguous_and_forgiving() -> None:
    code = new_code()
    assert re.fullmatch(r"[A-HJKMNP-Z2-9]{4}-[A-HJKMNP-Z2-9]{4}", code)
    assert normalize_code("abcd-efgh") == "ABCDEFGH"
    assert normalize_code(" abcd efgh ") == "ABCDEFGH"
    assert hash_code("ABCD-EFGH") == hash_code("abcdefgh")
    for bad in ("", "ABCD-EFG", "ABCD-EFGHJ", "ABCD-EFG0", "ABCD-EFG1", "ABCD-EFGI"):
        with pytest.raises(LinkCodeMalformed):
            normalize_code(bad)


async def test_only_the_hash_is_stored_and_a_new_code_replaces_the_old(world: World) -> None:
    owner = await world.user("discord", "d1")
    first = await world.links.issue_code(owner, "discord")
    assert first.expires_at == START + CODE_TTL
    second = await world.links.issue_code(owner, "discord")
    async with world.db.read() as session:
        rows = (await session.scalars(select(LinkCodeRecord))).all()
    assert len(rows) == 1
    assert rows[0].code_hash == hashlib.sha256(second.code.replace("-", "").encode()).hexdigest()
    stored = " ".join(str(getattr(rows[0], c.key)) for c in LinkCodeRecord.__table__.columns)
    assert normalize_code(second.code) not in stored and second.code not in stored
    redeemer = await world.user("telegram", "t1")
    with pytest.raises(LinkCodeInvalid):
        await world.links.redeem(redeemer, "telegram", first.code)
    result = await world.links.redeem(redeemer, "telegram", second.code.lower())
    assert result.user_id == owner


async def test_a_code_expires_after_ten_minutes(world: World) -> None:
    owner = await world.user("discord", "d1")
    redeemer = await world.user("telegram", "t1")
    code = await world.links.issue_code(owner, "discord")
    world.now.advance(minutes=10)
    with pytest.raises(LinkCodeInvalid):
        await world.links.redeem(redeemer, "telegram", code.code)
    code = await world.links.issue_code(owner, "discord")
    world.now.advance(minutes=9, seconds=59)
    assert (await world.links.redeem(redeemer, "telegram", code.code)).user_id == owner


async def test_a_code_works_once(world: World) -> None:
    owner = await world.user("discord", "d1")
    first = await world.user("telegram", "t1")
    second = await world.user("cli", "c1")
    code = await world.links.issue_code(owner, "discord")
    await world.links.redeem(first, "telegram", code.code)
    with pytest.raises(LinkCodeInvalid):
        await world.links.redeem(second, "cli", code.code)
    assert await world.count(LinkCodeRecord) == 0


async def test_five_wrong_codes_lock_linking_for_an_hour(world: World) -> None:
    owner = await world.user("discord", "d1")
    redeemer = await world.user("telegram", "t1")
    code = await world.links.issue_code(owner, "discord")
    lefts = []
    for _ in range(4):
        with pytest.raises(LinkCodeInvalid) as wrong:
            await world.links.redeem(redeemer, "telegram", "ZZZZ-ZZZZ")
        lefts.append(wrong.value.tries_left)
    assert lefts == [4, 3, 2, 1]
    # Malformed input is no guess and costs no try.
    with pytest.raises(LinkCodeMalformed):
        await world.links.redeem(redeemer, "telegram", "hello")
    with pytest.raises(LinkLocked) as locked:
        await world.links.redeem(redeemer, "telegram", "ZZZZ-ZZZZ")
    assert locked.value.until == START + timedelta(hours=1)
    # Locked: even the right code is refused, and the count is in the database.
    fresh = LinkService(world.db, now=world.now)
    world.now.advance(minutes=59)
    code = await world.links.issue_code(owner, "discord")
    with pytest.raises(LinkLocked):
        await fresh.redeem(redeemer, "telegram", code.code)
    # Somebody else is not locked by it.
    other = await world.user("telegram", "t2")
    with pytest.raises(LinkCodeInvalid):
        await fresh.redeem(other, "telegram", "ZZZZ-ZZZZ")
    world.now.advance(minutes=1)
    result = await fresh.redeem(redeemer, "telegram", code.code)
    assert result.user_id == owner
    assert await world.count(LinkAttempt, LinkAttempt.user_id.in_([owner, redeemer])) == 0


async def test_old_wrong_codes_are_forgotten_after_an_hour(world: World) -> None:
    redeemer = await world.user("telegram", "t1")
    for _ in range(4):
        with pytest.raises(LinkCodeInvalid):
            await world.links.redeem(redeemer, "telegram", "ZZZZ-ZZZZ")
    world.now.advance(hours=1)
    with pytest.raises(LinkCodeInvalid) as wrong:
        await world.links.redeem(redeemer, "telegram", "ZZZZ-ZZZZ")
    assert wrong.value.tries_left == 4


async def test_refusals_leave_the_code_and_both_users_alone(world: World) -> None:
    owner = await world.user("discord", "d1")
    code = await world.links.issue_code(owner, "discord")
    with pytest.raises(LinkOwnCode):
        await world.links.redeem(owner, "discord", code.code)
    other_discord = await world.user("discord", "d2")
    with pytest.raises(LinkSamePlatform) as same:
        await world.links.redeem(other_discord, "discord", code.code)
    assert same.value.platform == "discord"
    assert "Discord" in same.value.user_message
    # Already one user: the code comes back to its owner through another platform.
    tg = await world.user("telegram", "t1")
    await world.links.redeem(tg, "telegram", code.code)
    again = await world.links.issue_code(owner, "telegram")
    with pytest.raises(AlreadyLinked):
        await world.links.redeem(owner, "discord", again.code)
    # A user that already has Telegram cannot take another Telegram account.
    tg2 = await world.user("telegram", "t2")
    with pytest.raises(LinkSamePlatform):
        await world.links.redeem(tg2, "telegram", again.code)
    # None of these counted as a wrong code.
    assert await world.count(LinkAttempt) == 0
    banned = await world.user("cli", "c1")
    await world.accounts.set_banned(banned, True, "spam")
    with pytest.raises(UserBanned):
        await world.links.redeem(banned, "cli", again.code)
    assert await world.exists(banned) and await world.exists(owner)


# -- joining ----------------------------------------------------------------------


async def _identities(db: Database, user_id: int) -> list[tuple[str, str]]:
    async with db.read() as session:
        rows = await session.execute(
            select(Identity.platform, Identity.platform_user_id)
            .where(Identity.user_id == user_id)
            .order_by(Identity.platform)
        )
        return [tuple(r) for r in rows.all()]  # type: ignore[misc]


async def test_linking_moves_identities_conversations_and_messages(services: Services) -> None:
    accounts = services.accounts
    tg = (await accounts.upsert(PlatformProfile("telegram", "100", language="ru"))).id
    dc = (await accounts.upsert(PlatformProfile("discord", "200"))).id
    await accounts.set_system_prompt(dc, "Be brief.")
    await finish(await services.chat.send(tg, "hello from telegram", platform="telegram"))
    await finish(await services.chat.send(tg, "second telegram message", platform="telegram"))
    await finish(await services.chat.send(dc, "hello from discord", platform="discord"))
    tg_conversation = await services.conversations.current(tg)
    dc_conversation = await services.conversations.current(dc)
    assert tg_conversation is not None and dc_conversation is not None
    async with services.db.write() as session:
        session.add(
            Payment(
                user_id=tg,
                provider="stars",
                provider_charge_id="ch1",
                kind="payment",
                status="succeeded",
                currency="XTR",
            )
        )

    code = await services.linking.issue_code(dc, "discord")
    result = await services.linking.redeem(tg, "telegram", code.code)

    assert isinstance(result, LinkResult)
    assert (result.user_id, result.absorbed_user_id) == (dc, tg)
    assert result.platforms == ("discord", "telegram")
    assert result.conversations == 2
    assert await _identities(services.db, dc) == [("discord", "200"), ("telegram", "100")]
    telegram_user = await accounts.by_identity("telegram", "100")
    assert telegram_user is not None and telegram_user.id == dc
    async with services.db.read() as session:
        assert await session.get(User, tg) is None
        survivor = await session.get(User, dc)
        assert survivor is not None
        # The survivor's own settings stay; gaps are filled from the other user.
        assert survivor.system_prompt == "Be brief."
        assert survivor.language == "ru"
        assert survivor.current_conversation_id == dc_conversation.id
        for model in (Conversation, ChatMessage, Payment):
            owners = set((await session.scalars(select(model.user_id))).all())
            assert owners == {dc}, model
    for conversation in (tg_conversation, dc_conversation):
        check_invariants(await all_rows(services.db, conversation.id))
    assert len(await all_rows(services.db, tg_conversation.id)) == 4
    # The joined user carries on in the conversation that came from Telegram.
    await services.conversations.get(dc, tg_conversation.id)
    await finish(await services.chat.send(dc, "more", conversation_id=tg_conversation.id))
    check_invariants(await all_rows(services.db, tg_conversation.id))


async def test_every_table_that_points_at_users_is_moved_or_merged() -> None:
    from core.linking import _NOT_MOVED

    pointing = {
        table.name
        for table in Base.metadata.sorted_tables
        for key in table.foreign_keys
        if key.column.table.name == "users"
    }
    # Merged by hand: quotas; dropped: codes and wrong-code counts. Everything
    # else is moved by the foreign-key walk (new tables included).
    assert pointing & _NOT_MOVED == {"usage_quotas", "link_codes", "link_attempts"}
    assert {"identities", "conversations", "chat_messages", "subscriptions"} <= pointing


async def test_audit_row_and_notice_record_the_link(world: World) -> None:
    owner = await world.user("discord", "d1")
    redeemer = await world.user("telegram", "t1")
    await world.link(owner, "discord", redeemer, "telegram")
    async with world.db.read() as session:
        audit = (await session.scalars(select(AuditLog).where(AuditLog.action == "link"))).one()
        notices = (await session.execute(select(OutboxMessage.kind, OutboxMessage.platform))).all()
    assert audit.actor_user_id == owner and audit.target_user_id == owner
    details = audit.details
    assert details["absorbed_user_id"] == redeemer
    assert details["redeemed_on"] == "telegram" and details["code_from"] == "discord"
    assert details["before"]["survivor"]["platforms"] == ["discord"]
    assert details["before"]["absorbed"]["platforms"] == ["telegram"]
    assert details["after"]["platforms"] == ["discord", "telegram"]
    assert ("account.linked", "discord") in [tuple(n) for n in notices]


# -- plans ------------------------------------------------------------------------


async def _current(db: Database, user_id: int) -> Subscription | None:
    async with db.read() as session:
        return await session.scalar(
            select(Subscription).where(Subscription.user_id == user_id, Subscription.is_current)
        )


async def _history(db: Database, user_id: int) -> list[tuple[str | None, str, str]]:
    async with db.read() as session:
        rows = await session.execute(
            select(
                SubscriptionHistory.old_tier,
                SubscriptionHistory.new_tier,
                SubscriptionHistory.change_reason,
            )
            .where(SubscriptionHistory.user_id == user_id)
            .order_by(SubscriptionHistory.id)
        )
        return [tuple(r) for r in rows.all()]  # type: ignore[misc]


async def test_both_paid_the_higher_tier_wins_even_if_it_ends_sooner(world: World) -> None:
    owner = await world.user("discord", "d1")
    redeemer = await world.user("telegram", "t1")
    await world.buy(owner, Tier.PRO, days=90)
    await world.buy(redeemer, Tier.ENTERPRISE, days=10)
    result = await world.link(owner, "discord", redeemer, "telegram")
    assert result.tier is Tier.ENTERPRISE and result.ended_tier is Tier.PRO
    assert await world.tier(owner) == "enterprise"
    current = await _current(world.db, owner)
    assert current is not None and current.tier == "enterprise"
    assert current.current_period_end == START + timedelta(days=10)
    assert await world.count(Subscription, Subscription.is_current) == 1
    history = await _history(world.db, owner)
    # Both users' own history comes along, plus the link's two rows.
    assert history[-2:] == [("pro", "enterprise", "link"), ("pro", "enterprise", "link")]
    assert ("free", "enterprise", Reason.NEW.value) in history
    async with world.db.read() as session:
        ended = await session.get(Subscription, result.ended_subscription_id)
    assert ended is not None and ended.status == Status.REPLACED and not ended.is_current
    assert ended.user_id == owner


async def test_both_on_the_same_tier_the_later_end_wins(world: World) -> None:
    owner = await world.user("discord", "d1")
    redeemer = await world.user("telegram", "t1")
    await world.buy(owner, Tier.PRO, days=5)
    await world.buy(redeemer, Tier.PRO, days=25, recurring=True, provider_subscription_id="s1")
    result = await world.link(owner, "discord", redeemer, "telegram")
    current = await _current(world.db, owner)
    assert current is not None and current.current_period_end == START + timedelta(days=25)
    assert result.period_end == START + timedelta(days=25)
    assert result.ended_tier is Tier.PRO and not result.ended_recurring
    assert await world.tier(owner) == "pro"
    # The other way round the loser is the recurring one: the result says so.
    a = await world.user("discord", "d2")
    b = await world.user("telegram", "t2")
    await world.buy(a, Tier.PRO, days=30)
    await world.buy(b, Tier.PRO, days=3, recurring=True, provider_subscription_id="s2")
    result = await world.link(a, "discord", b, "telegram")
    assert result.ended_recurring


async def test_one_paid_plan_goes_to_the_joined_user(world: World) -> None:
    owner = await world.user("discord", "d1")
    redeemer = await world.user("telegram", "t1")
    await world.buy(redeemer, Tier.PRO, days=30)
    result = await world.link(owner, "discord", redeemer, "telegram")
    assert result.tier is Tier.PRO and result.ended_subscription_id is None
    assert await world.tier(owner) == "pro"
    assert (await world.used(owner))[1] == TIERS[Tier.PRO].quotas[QuotaKey.SMALL].limit
    assert (await _history(world.db, owner))[-1] == ("free", "pro", "link")


async def test_no_paid_plan_stays_free(world: World) -> None:
    owner = await world.user("discord", "d1")
    redeemer = await world.user("telegram", "t1")
    result = await world.link(owner, "discord", redeemer, "telegram")
    assert result.tier is Tier.FREE and result.period_end is None
    assert await world.tier(owner) == "free"
    assert await _history(world.db, owner) == []


# -- quotas -----------------------------------------------------------------------


async def test_used_counts_of_the_current_window_add_up(world: World) -> None:
    owner = await world.user("discord", "d1")
    redeemer = await world.user("telegram", "t1")
    await world.use(owner, QuotaKey.SMALL, 3)
    await world.use(redeemer, QuotaKey.SMALL, 4)
    await world.use(redeemer, QuotaKey.LARGE, 2)
    await world.link(owner, "discord", redeemer, "telegram")
    assert await world.used(owner) == (7, 100)
    assert await world.used(owner, QuotaKey.LARGE) == (2, 20)
    assert await world.count(UsageQuota, UsageQuota.user_id == owner) == len(QuotaKey)
    assert await world.count(UsageQuota) == len(QuotaKey)


async def test_joined_quota_never_exceeds_its_limit(world: World) -> None:
    owner = await world.user("discord", "d1")
    redeemer = await world.user("telegram", "t1")
    await world.use(owner, QuotaKey.IMAGE, 4)  # rolling 3 h window from START
    world.now.advance(hours=1)
    await world.use(redeemer, QuotaKey.IMAGE, 3)  # from START + 1 h
    world.now.advance(hours=1)
    await world.link(owner, "discord", redeemer, "telegram")
    used, limit = await world.used(owner, QuotaKey.IMAGE)
    assert (used, limit) == (5, 5)
    async with world.db.read() as session:
        image = await session.scalar(
            select(UsageQuota).where(
                UsageQuota.user_id == owner, UsageQuota.quota_key == QuotaKey.IMAGE.value
            )
        )
    assert image is not None
    # The window that ends later (the stricter) is kept.
    assert image.next_reset_at == START + timedelta(hours=4)


async def test_an_expired_window_on_one_side_counts_nothing(world: World) -> None:
    owner = await world.user("discord", "d1")
    redeemer = await world.user("telegram", "t1")
    await world.use(redeemer, QuotaKey.SMALL, 9)  # March
    world.now.advance(days=31)  # April: March's window is over
    await world.use(owner, QuotaKey.SMALL, 2)
    await world.link(owner, "discord", redeemer, "telegram")
    assert await world.used(owner) == (2, 100)


async def test_one_quota_goes_down_from_both_platforms_after_the_link(
    services: Services,
) -> None:
    accounts = services.accounts
    tg_profile = PlatformProfile("telegram", "100")
    dc_profile = PlatformProfile("discord", "200")
    tg = (await accounts.upsert(tg_profile)).id
    dc = (await accounts.upsert(dc_profile)).id
    await finish(await services.chat.send(tg, "one", platform="telegram"))
    await finish(await services.chat.send(dc, "two", platform="discord"))

    code = await services.linking.issue_code(tg, "telegram")
    await services.linking.redeem(dc, "discord", code.code)

    async def used() -> int:
        report = await services.quotas.report(tg, Tier.FREE)
        return next(s.used for s in report if s.key is QuotaKey.SMALL)

    assert await used() == 2
    for profile, text in ((tg_profile, "three"), (dc_profile, "four"), (tg_profile, "five")):
        user = await accounts.upsert(profile)
        assert user.id == tg
        await finish(await services.chat.send(user.id, text, platform=profile.platform))
    assert await used() == 5


# -- streaming ----------------------------------------------------------------------


async def test_an_answer_streaming_blocks_the_link_until_it_ends(services: Services) -> None:
    tg = (await services.accounts.upsert(PlatformProfile("telegram", "100"))).id
    dc = (await services.accounts.upsert(PlatformProfile("discord", "200"))).id
    generation = await services.chat.send(tg, "still answering", platform="telegram")
    code = await services.linking.issue_code(dc, "discord")
    with pytest.raises(LinkBusy) as busy:
        await services.linking.redeem(tg, "telegram", code.code)
    assert "Stop" in busy.value.user_message
    await finish(generation)
    result = await services.linking.redeem(tg, "telegram", code.code)
    assert result.user_id == dc
    async with services.db.read() as session:
        statuses = set((await session.scalars(select(ChatMessage.status))).all())
    assert statuses == {"complete"}


async def test_an_answer_of_a_gone_worker_does_not_block(services: Services) -> None:
    tg = (await services.accounts.upsert(PlatformProfile("telegram", "100"))).id
    dc = (await services.accounts.upsert(PlatformProfile("discord", "200"))).id
    generation = await services.chat.send(tg, "cut by a crash", platform="telegram")
    async with services.db.write() as session:
        row = await session.get(ChatMessage, generation.message_id)
        assert row is not None
        row.worker_id = "gone-worker"
    code = await services.linking.issue_code(dc, "discord")
    result = await services.linking.redeem(tg, "telegram", code.code)
    assert result.user_id == dc
    async with services.db.read() as session:
        row = await session.get(ChatMessage, generation.message_id)
    assert row is not None and row.status == "interrupted" and row.user_id == dc


# -- unlinking ----------------------------------------------------------------------


async def test_linked_and_unlink(world: World) -> None:
    owner = await world.user("discord", "d1")
    redeemer = await world.user("telegram", "t1")
    await world.buy(owner, Tier.PRO, days=30)
    await world.link(owner, "discord", redeemer, "telegram")
    linked = await world.links.linked(owner)
    assert [(i.platform, i.platform_user_id) for i in linked] == [
        ("discord", "d1"),
        ("telegram", "t1"),
    ]
    with pytest.raises(NotLinked):
        await world.links.unlink(owner, "cli")
    result = await world.links.unlink(owner, "telegram")
    assert result.user_id == owner and result.new_user_id != owner
    split = await world.accounts.by_identity("telegram", "t1")
    assert split is not None and split.id == result.new_user_id
    assert split.tier == "free"
    assert await world.tier(owner) == "pro"
    assert await world.count(Conversation, Conversation.user_id == split.id) == 0
    assert [i.platform for i in await world.links.linked(owner)] == ["discord"]
    with pytest.raises(LastIdentity):
        await world.links.unlink(owner, "discord")
    async with world.db.read() as session:
        audit = (await session.scalars(select(AuditLog).where(AuditLog.action == "unlink"))).one()
        kinds = (
            await session.execute(
                select(OutboxMessage.kind, OutboxMessage.platform).where(
                    OutboxMessage.user_id == split.id
                )
            )
        ).all()
    assert audit.actor_user_id == owner and audit.target_user_id == split.id
    assert audit.details["platform"] == "telegram"
    assert [tuple(k) for k in kinds] == [("account.unlinked", "telegram")]
    # Split off, it can be linked again.
    await world.link(owner, "discord", split.id, "telegram")
    assert len(await world.links.linked(owner)) == 2


# -- concurrency --------------------------------------------------------------------


async def test_two_redeems_of_one_code_at_once_one_wins(world: World) -> None:
    owner = await world.user("discord", "d1")
    first = await world.user("telegram", "t1")
    second = await world.user("cli", "c1")
    code = await world.links.issue_code(owner, "discord")
    outcomes = await asyncio.gather(
        world.links.redeem(first, "telegram", code.code),
        LinkService(world.db, now=world.now).redeem(second, "cli", code.code),
        return_exceptions=True,
    )
    wins = [o for o in outcomes if isinstance(o, LinkResult)]
    losses = [o for o in outcomes if isinstance(o, LinkCodeInvalid)]
    assert len(wins) == 1 and len(losses) == 1, outcomes
    assert len(await world.links.linked(owner)) == 2
    assert await world.count(User) == 2


async def test_two_people_redeeming_each_others_codes_at_once(world: World) -> None:
    a = await world.user("discord", "d1")
    b = await world.user("telegram", "t1")
    code_a = await world.links.issue_code(a, "discord")
    code_b = await world.links.issue_code(b, "telegram")
    outcomes = await asyncio.gather(
        world.links.redeem(b, "telegram", code_a.code),
        LinkService(world.db, now=world.now).redeem(a, "discord", code_b.code),
        return_exceptions=True,
    )
    wins = [o for o in outcomes if isinstance(o, LinkResult)]
    assert len(wins) == 1, outcomes
    (loss,) = [o for o in outcomes if not isinstance(o, LinkResult)]
    assert isinstance(loss, (LinkCodeInvalid, AlreadyLinked, LinkConflict)), loss
    assert await world.count(User) == 1
    assert await world.count(Identity) == 2


async def test_link_keeps_message_links(services: Services) -> None:
    from core.conversations.links import PlatformMessage

    tg = (await services.accounts.upsert(PlatformProfile("telegram", "100"))).id
    dc = (await services.accounts.upsert(PlatformProfile("discord", "200"))).id
    await finish(
        await services.chat.send(
            tg, "linked message", prompt_link=PlatformMessage("telegram", "100", "7")
        )
    )
    code = await services.linking.issue_code(dc, "discord")
    await services.linking.redeem(tg, "telegram", code.code)
    async with services.db.read() as session:
        link = await session.scalar(select(MessageLink))
        assert link is not None
        row = await session.get(ChatMessage, link.chat_message_id)
    assert row is not None and row.user_id == dc
