"""The stats screen's numbers on a small dataset whose answers are known."""

from __future__ import annotations

import uuid
from datetime import UTC, date, datetime, timedelta

from core.accounts import AccountService, PlatformProfile
from core.admin.stats import (
    WINDOW_DAYS,
    DayStats,
    FailureStats,
    ModelStats,
    PeopleStats,
    RevenueStats,
    collect_stats,
    forget_closed_days,
    render_stats,
    stats_screen,
)
from core.db.engine import Database
from core.db.models import ChatMessage, Conversation, Identity, Payment, Subscription, User
from core.services import Services
from core.tiers import Tier

NOW = datetime(2026, 3, 15, 12, 0, tzinfo=UTC)
A, B, C = "openai/gpt-4o-mini", "anthropic/claude-3.5-haiku", "openai/gpt-4.1-mini"


class Seeder:
    def __init__(self, db: Database) -> None:
        self.db = db
        self.sequence = 0

    async def users(self, seen: list[datetime | None]) -> list[int]:
        async with self.db.write() as session:
            users = [User(display_name=f"P{i}", last_seen_at=at) for i, at in enumerate(seen)]
            session.add_all(users)
            await session.flush()
            self.conversation = Conversation(
                id=uuid.uuid4(), user_id=users[0].id, model_id=A, meta={}
            )
            session.add(self.conversation)
            return [user.id for user in users]

    async def message(
        self,
        at: datetime,
        status: str = "complete",
        model: str = A,
        tokens: tuple[int, int] | None = None,
        error: str | None = None,
        role: str = "assistant",
    ) -> None:
        self.sequence += 1
        row_id = uuid.uuid4()
        async with self.db.write() as session:
            session.add(
                ChatMessage(
                    id=row_id,
                    conversation_id=self.conversation.id,
                    user_id=self.conversation.user_id,
                    role=role,
                    content="…",
                    model_id=model,
                    sequence_number=self.sequence,
                    original_message_id=row_id,
                    status=status,
                    error_code=error,
                    prompt_tokens=tokens[0] if tokens else None,
                    completion_tokens=tokens[1] if tokens else None,
                    created_at=at,
                )
            )

    async def plan(self, user_id: int, tier: str, status: str, current: bool = True) -> None:
        async with self.db.write() as session:
            session.add(
                Subscription(
                    user_id=user_id,
                    tier=tier,
                    status=status,
                    is_current=current,
                    payment_provider="grant",
                    current_period_start=NOW - timedelta(days=5),
                    current_period_end=NOW + timedelta(days=25),
                )
            )

    async def payment(
        self,
        user_id: int,
        provider: str,
        currency: str,
        amount: int,
        kind: str,
        at: datetime,
        status: str = "succeeded",
    ) -> None:
        async with self.db.write() as session:
            session.add(
                Payment(
                    user_id=user_id,
                    provider=provider,
                    provider_charge_id=uuid.uuid4().hex,
                    kind=kind,
                    status=status,
                    amount_minor=amount,
                    currency=currency,
                    payload={},
                    created_at=at,
                )
            )


def at(day: int, hour: int = 10) -> datetime:
    return datetime(2026, 3, day, hour, tzinfo=UTC)


async def _seed(db: Database) -> Seeder:
    seed = Seeder(db)
    ids = await seed.users(
        [NOW - timedelta(hours=1), NOW - timedelta(days=3), NOW - timedelta(days=20),
         NOW - timedelta(days=40), None]
    )  # fmt: skip
    await seed.message(at(15), tokens=(10, 20))
    await seed.message(at(15, 11), tokens=(5, 5))
    await seed.message(at(15, 9), "failed", error="timeout")
    await seed.message(at(15, 8), role="user")  # a question, not an answer
    await seed.message(at(14), "cancelled", model=B, tokens=(1, 2))
    await seed.message(at(14, 23), "interrupted", model=B, error="interrupted")
    await seed.message(at(1), model=C, tokens=(100, 100))  # before the 14 days
    await seed.message(at(2, 0), model=C, tokens=(7, 0))  # the first day shown
    await seed.message(at(15, 11) + timedelta(hours=13), tokens=(1, 1))  # tomorrow: not shown
    await seed.plan(ids[0], "pro", "active")
    await seed.plan(ids[1], "pro", "cancelled")
    await seed.plan(ids[2], "enterprise", "active")
    await seed.plan(ids[3], "pro", "expired", current=False)
    stars, yookassa = ("telegram_stars", "XTR"), ("yookassa", "RUB")
    await seed.payment(ids[0], *stars, 250, "payment", at(3))
    await seed.payment(ids[0], *stars, 250, "renewal", at(10))
    await seed.payment(ids[0], *stars, 250, "refund", at(11))
    await seed.payment(ids[1], *stars, 250, "refund", at(12), status="pending")  # not back yet
    await seed.payment(ids[1], *yookassa, 49_000, "payment", at(12))
    await seed.payment(ids[1], *stars, 250, "payment", datetime(2026, 2, 20, tzinfo=UTC))
    await seed.payment(ids[1], *stars, 250, "payment", datetime(2026, 1, 20, tzinfo=UTC))
    return seed


async def test_the_numbers_of_a_known_dataset(services: Services) -> None:
    await _seed(services.db)
    stats = await collect_stats(services.db, services.catalog, now=NOW)
    assert stats.people == PeopleStats(total=5, active_24h=1, active_7d=2, active_30d=3)
    assert len(stats.days) == WINDOW_DAYS
    assert stats.days[0] == DayStats(date(2026, 3, 2), 1, 0, 7, 0)
    assert stats.days[-2] == DayStats(date(2026, 3, 14), 1, 1, 1, 2)
    assert stats.days[-1] == DayStats(date(2026, 3, 15), 2, 1, 15, 25)
    assert all(day.answers == day.tokens == 0 for day in stats.days[1:-2])
    assert stats.answers == 4 and stats.tokens == 50
    assert stats.models == [
        ModelStats(A, "GPT-4o mini", 2, 40),
        ModelStats(B, "Claude 3.5 Haiku", 1, 3),
        ModelStats(C, "GPT-4.1 mini", 1, 7),
    ]
    assert stats.failures == [FailureStats("interrupted", 1), FailureStats("timeout", 1)]
    assert [(t.tier, t.people, t.ending) for t in stats.tiers] == [
        (Tier.FREE, 2, 0),
        (Tier.PRO, 2, 1),
        (Tier.ENTERPRISE, 1, 0),
    ]
    assert stats.revenue == [
        RevenueStats("telegram_stars", "XTR", date(2026, 2, 1), 1, 250, 0, 0),
        RevenueStats("telegram_stars", "XTR", date(2026, 3, 1), 2, 500, 250, 1),
        RevenueStats("yookassa", "RUB", date(2026, 3, 1), 1, 49_000, 0, 0),
    ]
    # Each section is timed: one statement per day, one for the others.
    assert stats.timings["answers"].statements == WINDOW_DAYS
    assert {name: t.statements for name, t in stats.timings.items() if name != "answers"} == {
        "people": 1,
        "plans": 1,
        "revenue": 1,
    }


async def test_the_screen_in_english_and_russian(services: Services) -> None:
    await _seed(services.db)
    text = (await stats_screen(services, "en", now=NOW)).text
    lines = text.splitlines()
    assert lines[0] == "📈 Stats · 2026-03-15 12:00 UTC"
    assert lines[1] == "👥 People: 5 · active 24 h 1 · 7 d 2 · 30 d 3"
    assert "💬 Answers in 14 days: 4 · 50 tokens" in lines
    assert "03-15 ▰▰▰▰▰▰▰▰ 2 · 40 tok" in lines
    assert "03-14 ▰▰▰▰▱▱▱▱ 1 · 3 tok" in lines
    assert "• GPT-4o mini: 2 (50%)" in lines
    assert "⚠️ Failures in 14 days: interrupted 1 · timeout 1" in lines
    assert "💳 Plans: Free 2 · Pro 2 (1 ending) · Enterprise 1" in lines
    assert "• telegram_stars: 250 XTR (2) −250 XTR / 250 XTR (1)" in lines
    assert "• yookassa: 490.00 RUB (1) / 0.00 RUB" in lines
    assert len(text) < 2000  # one Discord message
    russian = render_stats(await collect_stats(services.db, services.catalog, now=NOW), "ru")
    assert "👥 Людей: 5 · активны за 24 ч 1 · 7 д 2 · 30 д 3" in russian


async def test_closed_days_are_remembered_and_today_is_read_each_time(
    services: Services,
) -> None:
    seed = await _seed(services.db)
    first = await collect_stats(services.db, services.catalog, now=NOW)
    await seed.message(at(14, 12), tokens=(1, 1))  # a closed day changes (deleted rows do)
    await seed.message(at(15, 11), tokens=(1, 1))
    second = await collect_stats(services.db, services.catalog, now=NOW)
    assert second.timings["answers"].statements == 1  # only today was read
    assert second.days[-2] == first.days[-2]
    assert second.days[-1].answers == first.days[-1].answers + 1
    # 00:30 the next day: yesterday is not closed yet, so it is read again.
    later = await collect_stats(
        services.db, services.catalog, now=at(16, 0) + timedelta(minutes=30)
    )
    assert later.timings["answers"].statements == 2
    assert later.days[-2].answers == 3
    forget_closed_days(services.db)
    fresh = await collect_stats(services.db, services.catalog, now=NOW)
    assert fresh.days[-2].answers == first.days[-2].answers + 1


async def test_a_person_seen_on_any_platform_counts_as_active(services: Services) -> None:
    moments = iter([NOW - timedelta(days=10), NOW])
    accounts = AccountService(services.db, now=lambda: next(moments))
    user = await accounts.upsert(PlatformProfile("telegram", "1"))  # joined 10 days ago
    async with services.db.write() as session:
        session.add(
            Identity(user_id=user.id, platform="discord", platform_user_id="9", last_seen_at=None)
        )
    stats = await collect_stats(services.db, services.catalog, now=NOW)
    assert (stats.people.active_24h, stats.people.active_30d) == (0, 1)
    await accounts.upsert(PlatformProfile("discord", "9"))  # seen on Discord now
    stats = await collect_stats(services.db, services.catalog, now=NOW + timedelta(minutes=1))
    assert (stats.people.active_24h, stats.people.active_30d) == (1, 1)
