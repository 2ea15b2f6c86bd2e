"""The stats screen: people, answers and tokens per day, top models, failures,
plans and revenue, as numbers and as one screen of text.

Every statement is indexed to stay well under 200 ms on 100,000 people and
1,000,000 messages whatever their spread (`python -m bench.admin_stats` measures
them on SQLite and PostgreSQL; the indexes are in migration 0007):

- people: one range of `users.last_seen_at` (kept as the latest time any of the
  person's accounts was seen), read from the index alone;
- answers per day, top models and failures: one statement per UTC day, grouping
  that day's answers by status, model and error from a partial covering index on
  `chat_messages (created_at, …) WHERE role = 'assistant'` (the role is a literal
  in the query, so SQLite uses it). A statement reads one day, so its cost is
  bounded by a day's traffic, not by the history. A day an hour past its end no
  longer changes: its groups are kept in memory (per database, for the window
  only), so a screen after the first one queries only today;
- plans: the current subscriptions; revenue: `payments.created_at` from the first
  of last month.

The money is in minor units (Stars, kopecks, paise), per provider and currency,
never converted.
"""

from __future__ import annotations

import time
import weakref
from collections.abc import Awaitable, Iterable
from dataclasses import dataclass, field
from datetime import date, datetime, timedelta
from typing import TYPE_CHECKING, Any

from sqlalchemy import ColumnClause, String, and_, case, func, literal_column, or_, select
from sqlalchemy.ext.asyncio import AsyncSession

from core.clock import utcnow
from core.db.engine import Database
from core.db.models import ChatMessage, MessageStatus, Payment, Subscription, User
from core.i18n import t
from core.llm.catalog import ModelCatalog
from core.tiers import TIER_ORDER, TIERS, Tier

if TYPE_CHECKING:
    from core.services import Services

WINDOW_DAYS = 14
TOP_MODELS = 5
BAR_WIDTH = 8
# A day's answers no longer change this long after the day ended (the longest
# answer is minutes; a dead worker's rows are ended within a minute).
CLOSE_AFTER = timedelta(hours=1)

# Literals, not bound parameters: SQLite uses a partial index only when the query's
# WHERE names its condition literally.
_ASSISTANT: ColumnClause[str] = literal_column("'assistant'", String())
# The bare column, as the partial index `ix_subscriptions_current_tier` says it
# (SQLAlchemy writes a boolean column as `is_current = 1` on SQLite).
_CURRENT: ColumnClause[Any] = literal_column("subscriptions.is_current")
_ANSWERED = (MessageStatus.COMPLETE, MessageStatus.CANCELLED)
_FAILED = (MessageStatus.FAILED, MessageStatus.INTERRUPTED)
# Digits after the point per currency; the rest have two.
_EXPONENTS = {"XTR": 0, "JPY": 0, "KRW": 0, "VND": 0}
_MONEY_IN = ("payment", "renewal")


@dataclass(frozen=True)
class PeopleStats:
    total: int
    active_24h: int  # seen on any platform in the last 24 hours
    active_7d: int
    active_30d: int


@dataclass(frozen=True)
class DayStats:
    day: date  # a UTC day
    answers: int  # answers that ended complete, or stopped by the person
    failures: int  # failed or interrupted
    prompt_tokens: int
    completion_tokens: int

    @property
    def tokens(self) -> int:
        return self.prompt_tokens + self.completion_tokens


@dataclass(frozen=True)
class ModelStats:
    model_id: str
    name: str  # the catalog's name; the id for a model no longer listed
    answers: int
    tokens: int


@dataclass(frozen=True)
class FailureStats:
    kind: str  # the error code of a failed answer, or "interrupted"
    count: int


@dataclass(frozen=True)
class TierStats:
    tier: Tier
    name: str
    people: int  # with a current plan of this tier (free: everyone else)
    ending: int  # of them, plans that will not renew (cancelled)


@dataclass(frozen=True)
class RevenueStats:
    provider: str
    currency: str
    month: date  # the first day of the month
    payments: int  # payments and renewals
    gross: int  # minor units
    refunds: int  # minor units given back
    refund_count: int

    @property
    def net(self) -> int:
        return self.gross - self.refunds


@dataclass(frozen=True)
class QueryTime:
    """What one section of the screen cost the database."""

    statements: int
    total_ms: float
    slowest_ms: float


@dataclass(frozen=True)
class Stats:
    at: datetime
    people: PeopleStats
    days: list[DayStats]  # WINDOW_DAYS days, oldest first, today last (zeros included)
    models: list[ModelStats]  # the most used over the window, most first
    failures: list[FailureStats]  # over the window, most first
    tiers: list[TierStats]  # free, pro, enterprise
    revenue: list[RevenueStats]  # last month and this one, by provider and currency
    # Per section (people, answers, plans, revenue): its statements and their time.
    timings: dict[str, QueryTime] = field(default_factory=dict)

    @property
    def answers(self) -> int:
        return sum(day.answers for day in self.days)

    @property
    def tokens(self) -> int:
        return sum(day.tokens for day in self.days)


@dataclass(frozen=True)
class StatsScreen:
    stats: Stats
    text: str  # the whole screen, in the admin's language


# -- the queries ------------------------------------------------------------------


@dataclass(frozen=True)
class _Window:
    now: datetime

    @property
    def today(self) -> datetime:
        return self.now.replace(hour=0, minute=0, second=0, microsecond=0)

    @property
    def start(self) -> datetime:
        """The first moment of the oldest day shown."""
        return self.today - timedelta(days=WINDOW_DAYS - 1)

    def days(self) -> list[datetime]:
        """The first moment of each day shown, oldest first."""
        return [self.start + timedelta(days=n) for n in range(WINDOW_DAYS)]

    def closed(self, day: datetime) -> bool:
        return self.now >= day + timedelta(days=1) + CLOSE_AFTER

    @property
    def month(self) -> datetime:
        return self.today.replace(day=1)

    @property
    def last_month(self) -> datetime:
        return (self.month - timedelta(days=1)).replace(day=1)


@dataclass(frozen=True)
class _Group:
    """A day's answers of one status, model and error."""

    status: str
    model_id: str
    error_code: str | None
    count: int
    prompt_tokens: int
    completion_tokens: int


class _Timer:
    def __init__(self) -> None:
        self.times: dict[str, list[float]] = {}

    async def run(self, section: str, statement: Awaitable[Any]) -> Any:
        started = time.perf_counter()
        result = await statement
        self.times.setdefault(section, []).append((time.perf_counter() - started) * 1000)
        return result

    def result(self) -> dict[str, QueryTime]:
        return {
            name: QueryTime(len(times), sum(times), max(times))
            for name, times in self.times.items()
        }


async def _people(session: AsyncSession, w: _Window) -> PeopleStats:
    """`users.last_seen_at` is the latest time any of the person's accounts was seen."""
    d1, d7, d30 = (w.now - timedelta(days=n) for n in (1, 7, 30))

    def seen_since(since: datetime) -> Any:
        return func.coalesce(func.sum(case((User.last_seen_at >= since, 1), else_=0)), 0)

    row = (
        await session.execute(
            select(
                select(func.count()).select_from(User).scalar_subquery(),
                seen_since(d1),
                seen_since(d7),
                func.count(),
            ).where(User.last_seen_at >= d30)
        )
    ).one()
    return PeopleStats(*(int(value or 0) for value in row))


async def _day(session: AsyncSession, start: datetime) -> tuple[_Group, ...]:
    """One UTC day's answers, grouped by status, model and error."""
    m = ChatMessage
    rows = await session.execute(
        select(
            m.status,
            m.model_id,
            m.error_code,
            func.count(),
            func.coalesce(func.sum(m.prompt_tokens), 0),
            func.coalesce(func.sum(m.completion_tokens), 0),
        )
        .where(
            m.role == _ASSISTANT,
            m.created_at >= start,
            m.created_at < start + timedelta(days=1),
        )
        .group_by(m.status, m.model_id, m.error_code)
    )
    return tuple(
        _Group(
            str(status), str(model or ""), code, int(count), int(prompt or 0), int(completion or 0)
        )
        for status, model, code, count, prompt, completion in rows
    )


async def _tiers(session: AsyncSession) -> list[tuple[str, str, int]]:
    s = Subscription
    rows = await session.execute(
        select(s.tier, s.status, func.count()).where(_CURRENT).group_by(s.tier, s.status)
    )
    return [(str(tier), str(status), int(count)) for tier, status, count in rows]


async def _revenue(session: AsyncSession, w: _Window) -> list[RevenueStats]:
    p = Payment
    this_month = case((p.created_at >= w.month, 1), else_=0)
    rows = await session.execute(
        select(p.provider, p.currency, this_month, p.kind, func.count(), func.sum(p.amount_minor))
        .where(
            p.created_at >= w.last_month,
            # Money in: every payment and renewal recorded. Money back: refunds done
            # (an admin's refund still requested, pending or failed gave nothing back).
            or_(p.kind.in_(_MONEY_IN), and_(p.kind == "refund", p.status == "succeeded")),
        )
        .group_by(p.provider, p.currency, this_month, p.kind)
    )
    sums: dict[tuple[str, str, date], list[int]] = {}
    for provider, currency, current, kind, count, amount in rows:
        month = (w.month if current else w.last_month).date()
        entry = sums.setdefault((provider, currency, month), [0, 0, 0, 0])
        if kind == "refund":
            entry[2] += int(amount or 0)
            entry[3] += int(count)
        else:
            entry[0] += int(count)
            entry[1] += int(amount or 0)
    return [
        RevenueStats(provider, currency, month, *values)
        for (provider, currency, month), values in sorted(sums.items())
    ]


# Closed days' groups, per database (tests and the bench open several).
_CLOSED: weakref.WeakKeyDictionary[Database, dict[datetime, tuple[_Group, ...]]] = (
    weakref.WeakKeyDictionary()
)


def forget_closed_days(db: Database) -> None:
    """Query every day again next time (the bench measures cold screens with it)."""
    _CLOSED.pop(db, None)


async def collect_stats(
    db: Database, catalog: ModelCatalog, *, now: datetime | None = None
) -> Stats:
    """Every number of the stats screen, each statement timed."""
    w = _Window(now or utcnow())
    timer = _Timer()
    cache = _CLOSED.setdefault(db, {})
    for old in [day for day in cache if day < w.start]:
        del cache[old]
    groups: dict[datetime, tuple[_Group, ...]] = {}
    async with db.read() as session:
        people: PeopleStats = await timer.run("people", _people(session, w))
        for day in w.days():
            known = cache.get(day)
            if known is None:
                known = await timer.run("answers", _day(session, day))
                if w.closed(day):
                    cache[day] = known
            groups[day] = known
        plans = await timer.run("plans", _tiers(session))
        revenue = await timer.run("revenue", _revenue(session, w))
    return Stats(
        at=w.now,
        people=people,
        days=[_day_stats(day.date(), rows) for day, rows in groups.items()],
        models=_top_models(catalog, groups.values()),
        failures=_failures(groups.values()),
        tiers=_tier_stats(people.total, plans),
        revenue=revenue,
        timings=timer.result(),
    )


def _day_stats(day: date, groups: tuple[_Group, ...]) -> DayStats:
    return DayStats(
        day,
        sum(g.count for g in groups if g.status in _ANSWERED),
        sum(g.count for g in groups if g.status in _FAILED),
        sum(g.prompt_tokens for g in groups),
        sum(g.completion_tokens for g in groups),
    )


def _top_models(catalog: ModelCatalog, days: Iterable[tuple[_Group, ...]]) -> list[ModelStats]:
    answers: dict[str, int] = {}
    tokens: dict[str, int] = {}
    for group in (g for day in days for g in day if g.status in _ANSWERED):
        answers[group.model_id] = answers.get(group.model_id, 0) + group.count
        used = group.prompt_tokens + group.completion_tokens
        tokens[group.model_id] = tokens.get(group.model_id, 0) + used
    top = sorted(answers, key=lambda model_id: (-answers[model_id], model_id))[:TOP_MODELS]
    return [
        ModelStats(model_id, _model_name(catalog, model_id), answers[model_id], tokens[model_id])
        for model_id in top
    ]


def _failures(days: Iterable[tuple[_Group, ...]]) -> list[FailureStats]:
    kinds: dict[str, int] = {}
    for group in (g for day in days for g in day if g.status in _FAILED):
        if group.status == MessageStatus.INTERRUPTED:
            kind = "interrupted"
        else:
            kind = group.error_code or "unknown"
        kinds[kind] = kinds.get(kind, 0) + group.count
    return [FailureStats(k, n) for k, n in sorted(kinds.items(), key=lambda kv: (-kv[1], kv[0]))]


def _model_name(catalog: ModelCatalog, model_id: str) -> str:
    model = catalog.get(model_id)
    return model.name if model is not None else model_id


def _tier_stats(total: int, rows: list[tuple[str, str, int]]) -> list[TierStats]:
    people = dict.fromkeys(TIER_ORDER, 0)
    ending = dict.fromkeys(TIER_ORDER, 0)
    for tier_name, status, count in rows:
        try:
            tier = Tier(tier_name)
        except ValueError:
            continue
        people[tier] += count
        if status == "cancelled":
            ending[tier] += count
    paid = sum(count for tier, count in people.items() if tier is not Tier.FREE)
    people[Tier.FREE] = max(total - paid, 0)
    return [TierStats(tier, TIERS[tier].name, people[tier], ending[tier]) for tier in TIER_ORDER]


# -- the screen --------------------------------------------------------------------


def number(value: int) -> str:
    """12,345 and 1.2M: short enough for one screen."""
    if abs(value) >= 10_000_000:
        return f"{value / 1_000_000:.0f}M"
    if abs(value) >= 1_000_000:
        return f"{value / 1_000_000:.1f}M"
    return f"{value:,}"


def money(amount_minor: int, currency: str) -> str:
    """Minor units as the currency writes them: 1,490.00 RUB, 250 XTR."""
    exponent = _EXPONENTS.get(currency.upper(), 2)
    if exponent == 0:
        return f"{amount_minor:,} {currency}"
    return f"{amount_minor / 10**exponent:,.{exponent}f} {currency}"


def _bar(value: int, top: int) -> str:
    filled = 0 if top <= 0 else round(BAR_WIDTH * value / top)
    return "▰" * filled + "▱" * (BAR_WIDTH - filled)


def render_stats(stats: Stats, lang: str) -> str:
    """One screen (under Discord's 2000 characters for a usual catalog)."""
    p = stats.people
    lines = [
        t(lang, "admin.stats.header", at=stats.at.strftime("%Y-%m-%d %H:%M UTC")),
        t(
            lang,
            "admin.stats.people",
            total=number(p.total),
            d1=number(p.active_24h),
            d7=number(p.active_7d),
            d30=number(p.active_30d),
        ),
        "",
        t(
            lang,
            "admin.stats.answers",
            days=WINDOW_DAYS,
            answers=number(stats.answers),
            tokens=number(stats.tokens),
        ),
    ]
    top = max((day.answers for day in stats.days), default=0)
    for day in stats.days:
        lines.append(
            t(
                lang,
                "admin.stats.day",
                day=f"{day.day:%m-%d}",
                bar=_bar(day.answers, top),
                answers=number(day.answers),
                tokens=number(day.tokens),
            )
        )
    lines.append("")
    if stats.models:
        total = sum(model.answers for model in stats.models) or 1
        lines.append(t(lang, "admin.stats.models"))
        lines += [
            f"• {m.name}: {number(m.answers)} ({100 * m.answers // max(stats.answers, total)}%)"
            for m in stats.models
        ]
    failures = " · ".join(f"{f.kind} {number(f.count)}" for f in stats.failures)
    lines.append(
        t(lang, "admin.stats.failures", days=WINDOW_DAYS, failures=failures or t(lang, "none"))
    )
    lines.append("")
    plans = []
    for tier in stats.tiers:
        ending = t(lang, "admin.stats.ending", count=number(tier.ending)) if tier.ending else ""
        plans.append(f"{tier.name} {number(tier.people)}{ending}")
    lines.append(t(lang, "admin.stats.plans", plans=" · ".join(plans)))
    lines.append(t(lang, "admin.stats.revenue"))
    if not stats.revenue:
        lines.append(t(lang, "none"))
    by_key: dict[tuple[str, str], dict[date, RevenueStats]] = {}
    for item in stats.revenue:
        by_key.setdefault((item.provider, item.currency), {})[item.month] = item
    this_month = stats.at.date().replace(day=1)
    for (provider, currency), months in sorted(by_key.items()):
        current = months.get(this_month)
        previous = next((r for month, r in months.items() if month != this_month), None)
        lines.append(
            t(
                lang,
                "admin.stats.revenue_line",
                provider=provider,
                this=_money_cell(current, currency),
                last=_money_cell(previous, currency),
            )
        )
    return "\n".join(lines)


def _money_cell(item: RevenueStats | None, currency: str) -> str:
    if item is None:
        return money(0, currency)
    text = f"{money(item.net, currency)} ({item.payments})"
    if item.refunds:
        text += f" −{money(item.refunds, currency)}"
    return text


async def stats_screen(
    services: Services, lang: str, *, now: datetime | None = None
) -> StatsScreen:
    """The stats screen in the admin's language."""
    stats = await collect_stats(services.db, services.catalog, now=now)
    return StatsScreen(stats, render_stats(stats, lang))
