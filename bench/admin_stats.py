"""Benchmark: the admin stats screen's queries on a big service, on SQLite and on
PostgreSQL.

Seeds a fresh database through the real migrations with `--people` people (with
their Telegram accounts, some linked to Discord too), `--messages` chat messages
(conversations of eight, spread over `--days` days; every other row an answer with
its model, tokens and status, 2 % failed, 1 % interrupted), the current plans of 6 %
of them with their plan history, and a year of payments, renewals and refunds
(`--days 14` puts every message into the screen's 14 days: the worst case). Then
builds the screen (`core.admin.stats.collect_stats`) `--runs` times cold (every
day queried, as the first screen of a process) and `--runs` times warm (closed
days remembered, today queried), and prints per section its statements, the
slowest single statement of all runs (the 200 ms budget is per statement) and the
section's median time per screen.

Rows go in by bulk: `executemany` on a plain sqlite3 connection (foreign keys off,
as for any bulk load), `COPY` through asyncpg on PostgreSQL (triggers off with
`session_replication_role = replica`, then `VACUUM ANALYZE`, which autovacuum would
run after a load like this; SQLite gets no ANALYZE, as a fresh embedded database).
The PostgreSQL database is created for the run and dropped after it (`--keep` keeps
both databases).

    python -m bench.admin_stats [--people 100000 --messages 1000000]
        [--pg-url postgresql+asyncpg://postgres@127.0.0.1:5432/test] [--only sqlite|postgresql]
        [--days 90] [--runs 5] [--explain] [--keep]

Not a test: figures vary with the machine. The budget is 200 ms per query.
"""

from __future__ import annotations

import argparse
import asyncio
import os
import random
import shutil
import sqlite3
import statistics
import tempfile
import time
import uuid
from collections.abc import Awaitable, Callable, Iterator, Sequence
from dataclasses import dataclass
from datetime import datetime, timedelta
from pathlib import Path
from typing import Any

from sqlalchemy import text
from sqlalchemy.engine import make_url

from core.admin.stats import (
    Stats,
    _day,
    _people,
    _revenue,
    _tiers,
    _Window,
    collect_stats,
    forget_closed_days,
    render_stats,
)
from core.clock import utcnow
from core.db.engine import Database, null_pool_engine
from core.db.migrate import upgrade_head
from core.llm.catalog import ModelCatalog

BUDGET_MS = 200.0
SECTIONS = ("people", "answers", "plans", "revenue")
MESSAGES_PER_CONVERSATION = 8
DEFAULT_PG_URL = "postgresql+asyncpg://postgres@127.0.0.1:5432/test"

MODELS = [
    ("openai/gpt-4o-mini", 30),
    ("openai/gpt-4.1-mini", 15),
    ("google/gemini-2.0-flash-001", 12),
    ("anthropic/claude-3.5-haiku", 10),
    ("deepseek/deepseek-chat", 8),
    ("meta-llama/llama-3.3-70b-instruct", 6),
    ("mistralai/mistral-small-3.1-24b-instruct", 5),
    ("openai/gpt-4o", 5),
    ("anthropic/claude-sonnet-4", 4),
    ("google/gemini-2.5-pro", 3),
    ("deepseek/deepseek-r1", 2),
]
ERRORS = ["timeout", "rate_limited", "model_unavailable", "generation_failed", "not_saved"]
CONTENT = "A question of about a hundred characters, as people usually write them to a bot. " * 1


# -- the data ---------------------------------------------------------------------


@dataclass
class Tables:
    """Rows per table in column order, values as Python objects."""

    columns: dict[str, list[str]]
    rows: dict[str, list[tuple[Any, ...]]]


def generate(people: int, messages: int, days: int, now: datetime, seed: int = 7) -> Tables:
    rng = random.Random(seed)
    columns: dict[str, list[str]] = {}
    rows: dict[str, list[tuple[Any, ...]]] = {}

    def ago(max_days: float) -> datetime:
        return now - timedelta(seconds=rng.random() * max_days * 86400)

    # People: joined over a year; their accounts were last seen with a mean of 40
    # days ago (2.5 % in a day, 16 % in a week, half in a month).
    columns["users"] = [
        "id", "display_name", "language", "tier", "tier_status", "is_banned", "preferences",
        "last_seen_at", "created_at", "updated_at",
    ]  # fmt: skip
    columns["identities"] = [
        "id", "user_id", "platform", "platform_user_id", "username", "chat_id", "is_blocked",
        "created_at", "last_seen_at",
    ]  # fmt: skip
    users: list[list[Any]] = []
    identities: list[tuple[Any, ...]] = []
    for user_id in range(1, people + 1):
        joined = ago(365)
        seen = max(joined, now - timedelta(days=rng.expovariate(1 / 40)))
        users.append([user_id, f"Person {user_id}", rng.choice(("en", "ru")), "free", "active",
                      False, "{}", joined, joined, joined])  # fmt: skip
        tg = str(100_000_000 + user_id)
        identities.append((len(identities) + 1, user_id, "telegram", tg, f"user{user_id}", tg,
                           False, joined, seen))  # fmt: skip
        if rng.random() < 0.05:
            dc = str(900_000_000_000 + user_id)
            dc_seen = max(joined, ago(60))
            identities.append((len(identities) + 1, user_id, "discord", dc, f"dc_user{user_id}",
                               None, False, joined, dc_seen))  # fmt: skip
            seen = max(seen, dc_seen)
        users[-1][7] = seen  # a person was last seen when any of their accounts was

    # Plans: 5 % pro, 1 % enterprise now, with a past plan each; a year of payments.
    columns["subscriptions"] = [
        "id", "user_id", "tier", "status", "is_current", "payment_provider",
        "provider_subscription_id", "current_period_start", "current_period_end",
        "cancel_at_period_end", "metadata", "created_at", "updated_at",
    ]  # fmt: skip
    columns["payments"] = [
        "id", "user_id", "provider", "provider_charge_id", "kind", "status", "tier",
        "amount_minor", "currency", "subscription_id", "payload", "created_at",
    ]  # fmt: skip
    subscriptions: list[tuple[Any, ...]] = []
    payments: list[tuple[Any, ...]] = []
    providers = [("telegram_stars", "XTR", 250), ("yookassa", "RUB", 49_000),
                 ("razorpay", "INR", 49_900), ("discord", "USD", 0)]  # fmt: skip
    for user in rng.sample(users, people * 6 // 100):
        tier = "enterprise" if rng.random() < 1 / 6 else "pro"
        provider, currency, price = rng.choice(providers)
        if tier == "enterprise":
            provider, currency, price = "grant", "XTR", 0
        start = ago(30)
        cancelled = rng.random() < 0.1
        sub_id = len(subscriptions) + 1
        subscriptions.append((sub_id, user[0], tier, "cancelled" if cancelled else "active", True,
                              provider, None, start, start + timedelta(days=30), cancelled, "{}",
                              start, start))  # fmt: skip
        subscriptions.append((sub_id + 1, user[0], "pro", "expired", False, provider, None,
                              start - timedelta(days=90), start - timedelta(days=60), False,
                              "{}", start - timedelta(days=90), start))  # fmt: skip
        user[3] = tier
        if price:
            for month in range(rng.randint(1, 12)):
                paid = start - timedelta(days=30 * month)
                kind = "renewal" if month else "payment"
                payments.append((len(payments) + 1, user[0], provider, f"ch_{len(payments)}",
                                 kind, "succeeded", "pro", price, currency, sub_id, "{}",
                                 paid))  # fmt: skip
                if rng.random() < 0.02:
                    payments.append((len(payments) + 1, user[0], provider,
                                     f"refund:ch_{len(payments)}", "refund", "succeeded", "pro",
                                     price, currency, sub_id, "{}",
                                     paid + timedelta(hours=2)))  # fmt: skip
    rows["users"] = [tuple(user) for user in users]
    rows["identities"] = identities
    rows["subscriptions"] = subscriptions
    rows["payments"] = payments

    # Conversations of eight messages, spread over `days` days.
    columns["conversations"] = [
        "id", "user_id", "title", "model_id", "platform", "last_message_at", "message_count",
        "metadata", "created_at", "updated_at",
    ]  # fmt: skip
    columns["chat_messages"] = [
        "id", "conversation_id", "user_id", "role", "content", "model_id", "sequence_number",
        "parent_message_id", "original_message_id", "revision_number", "is_latest",
        "activated_at", "status", "error_code", "prompt_tokens", "completion_tokens",
        "quota_key", "platform_message_ids", "metadata", "created_at", "finished_at",
    ]  # fmt: skip
    model_ids = [model for model, _ in MODELS]
    weights = [weight for _, weight in MODELS]
    conversations: list[tuple[Any, ...]] = []
    chat: list[tuple[Any, ...]] = []
    for _ in range(max(1, messages // MESSAGES_PER_CONVERSATION)):
        conversation_id = uuid.uuid4()
        user_id = rng.randint(1, people)
        model = rng.choices(model_ids, weights)[0]
        at = ago(days)
        parent = None
        for seq in range(1, MESSAGES_PER_CONVERSATION + 1):
            row_id = uuid.uuid4()
            at += timedelta(seconds=rng.randint(5, 300))
            if seq % 2:
                chat.append((row_id, conversation_id, user_id, "user", CONTENT, model, seq,
                             parent, row_id, 0, True, at, "complete", None, None, None, None,
                             "{}", "{}", at, None))  # fmt: skip
            else:
                roll = rng.random()
                status, error = "complete", None
                if roll < 0.02:
                    status, error = "failed", rng.choice(ERRORS)
                elif roll < 0.03:
                    status, error = "interrupted", "interrupted"
                elif roll < 0.04:
                    status = "cancelled"
                chat.append((row_id, conversation_id, user_id, "assistant", CONTENT * 4, model,
                             seq, parent, row_id, 0, True, at, status, error,
                             rng.randint(50, 4000), rng.randint(20, 1500), "small_messages",
                             "{}", "{}", at, at + timedelta(seconds=8)))  # fmt: skip
            parent = row_id
        conversations.append((conversation_id, user_id, CONTENT[:40], model, "telegram", at,
                              MESSAGES_PER_CONVERSATION, "{}", at, at))  # fmt: skip
    rows["conversations"] = conversations
    rows["chat_messages"] = chat
    return Tables(columns, rows)


ORDER = ("users", "identities", "subscriptions", "payments", "conversations", "chat_messages")


# -- loading ----------------------------------------------------------------------


def _sqlite_value(value: Any) -> Any:
    """As SQLAlchemy stores it on SQLite: naive UTC ISO text, UUID hex, 0/1."""
    if isinstance(value, datetime):
        return value.replace(tzinfo=None).isoformat(" ", "microseconds")
    if isinstance(value, uuid.UUID):
        return value.hex
    if isinstance(value, bool):
        return int(value)
    return value


def load_sqlite(path: Path, tables: Tables) -> None:
    with sqlite3.connect(path) as conn:
        conn.execute("PRAGMA foreign_keys=OFF")
        conn.execute("PRAGMA synchronous=OFF")
        for table in ORDER:
            names = tables.columns[table]
            sql = f"INSERT INTO {table} ({', '.join(names)}) VALUES ({', '.join('?' * len(names))})"
            conn.executemany(sql, ([_sqlite_value(v) for v in row] for row in tables.rows[table]))
        conn.commit()


def _dsn(url: str) -> str:
    return make_url(url).set(drivername="postgresql").render_as_string(hide_password=False)


async def load_postgres(url: str, tables: Tables) -> None:
    import asyncpg  # type: ignore[import-untyped]

    conn = await asyncpg.connect(_dsn(url))
    try:
        await conn.execute("SET session_replication_role = replica")
        for table in ORDER:
            await conn.copy_records_to_table(
                table, records=tables.rows[table], columns=tables.columns[table]
            )
        for table in ("users", "identities", "subscriptions", "payments"):
            await conn.execute(
                f"SELECT setval(pg_get_serial_sequence('{table}', 'id'), "
                f"(SELECT max(id) FROM {table}))"
            )
        await conn.execute("VACUUM ANALYZE")
    finally:
        await conn.close()


async def _pg_admin(url: str, sql: str) -> None:
    engine = null_pool_engine(url)
    try:
        async with engine.connect() as conn:
            await conn.execution_options(isolation_level="AUTOCOMMIT")
            await conn.execute(text(sql))
    finally:
        await engine.dispose()


# -- measuring --------------------------------------------------------------------


def _statements(now: datetime) -> dict[str, Callable[[Any], Awaitable[Any]]]:
    """One statement of each kind the screen runs (for their plans)."""
    window = _Window(now)
    return {
        "people": lambda session: _people(session, window),
        "answers (one day)": lambda session: _day(session, window.today),
        "plans": lambda session: _tiers(session),
        "revenue": lambda session: _revenue(session, window),
    }


class _Recorder:
    """Stands in for a session: keeps the SQL it is given, returns nothing."""

    def __init__(self, dialect: Any) -> None:
        self.dialect = dialect
        self.sql: list[str] = []

    async def execute(self, statement: Any, *_args: Any) -> Any:
        compiled = statement.compile(dialect=self.dialect, compile_kwargs={"literal_binds": True})
        self.sql.append(str(compiled))
        return _Empty()


class _Empty:
    def __iter__(self) -> Iterator[Any]:
        return iter(())

    def one(self) -> tuple[int, ...]:
        return (0, 0, 0, 0)


async def explain(db: Database) -> None:
    """Each statement's plan, as the database will run it."""
    postgres = db.engine.dialect.name == "postgresql"
    prefix = "EXPLAIN" if postgres else "EXPLAIN QUERY PLAN"
    for name, statement in _statements(utcnow()).items():
        recorder = _Recorder(db.engine.dialect)
        await statement(recorder)
        async with db.read() as session:
            for sql in recorder.sql:
                plan = (await session.execute(text(f"{prefix} {sql}"))).all()
                print(f"  {name}:")
                for line in plan:
                    print(f"    {line[-1]}")


def _report(title: str, runs: list[Stats]) -> None:
    print(f"  {title}")
    print(f"    {'section':<10} {'statements':>10} {'slowest ms':>11} {'section ms':>11}")
    for name in SECTIONS:
        times = [stats.timings[name] for stats in runs if name in stats.timings]
        if not times:
            print(f"    {name:<10} {0:>10}")
            continue
        slowest = max(time.slowest_ms for time in times)
        mark = "ok" if slowest < BUDGET_MS else "OVER 200 ms"
        print(
            f"    {name:<10} {times[0].statements:>10} {slowest:>11.1f} "
            f"{statistics.median(time.total_ms for time in times):>11.1f}  {mark}"
        )
    total = statistics.median(sum(t.total_ms for t in stats.timings.values()) for stats in runs)
    print(f"    {'screen':<10} {'':>10} {'':>11} {total:>11.1f}")


async def measure(label: str, url: str, catalog: ModelCatalog, runs: int, show: bool) -> Stats:
    db = Database(url)
    try:
        async with db.read() as session:  # connect first: not a query's time
            await session.execute(text("SELECT 1"))
        if show:
            print(f"{label}: query plans")
            await explain(db)
        cold = []
        for _ in range(runs):
            forget_closed_days(db)
            cold.append(await collect_stats(db, catalog))
        warm = [await collect_stats(db, catalog) for _ in range(runs)]
    finally:
        await db.dispose()
    print(f"\n{label}: {runs} screens each (slowest statement of all; median per screen)")
    _report("cold: every day queried (the first screen a process shows)", cold)
    _report("warm: closed days remembered, today queried", warm)
    return warm[-1]


def timed(label: str, action: Callable[[], Any]) -> Any:
    started = time.perf_counter()
    result = action()
    print(f"{label}: {time.perf_counter() - started:.1f} s")
    return result


async def main(argv: Sequence[str] | None = None) -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--people", type=int, default=100_000)
    parser.add_argument("--messages", type=int, default=1_000_000)
    parser.add_argument("--days", type=int, default=90, help="the messages span this many days")
    parser.add_argument("--runs", type=int, default=5)
    parser.add_argument("--pg-url", default=DEFAULT_PG_URL, help="a PostgreSQL server to use")
    parser.add_argument("--only", choices=("sqlite", "postgresql"))
    parser.add_argument("--explain", action="store_true", help="print each query's plan")
    parser.add_argument("--keep", action="store_true", help="keep the databases")
    args = parser.parse_args(argv)

    now = utcnow()
    print("load average at start: {:.2f} {:.2f} {:.2f}".format(*os.getloadavg()))
    tables = timed(
        f"generating {args.people:,} people and {args.messages:,} messages",
        lambda: generate(args.people, args.messages, args.days, now),
    )
    counts = ", ".join(f"{name} {len(tables.rows[name]):,}" for name in ORDER)
    print(f"rows: {counts}")
    catalog = ModelCatalog.load("openai/gpt-4o-mini")
    last: Stats | None = None

    if args.only in (None, "sqlite"):
        directory = Path(tempfile.mkdtemp(prefix="oneai-bench-"))
        path = directory / "stats.db"
        url = f"sqlite+aiosqlite:///{path}"
        await asyncio.to_thread(upgrade_head, url)
        timed("SQLite: loading", lambda: load_sqlite(path, tables))
        print(f"SQLite file: {path.stat().st_size / 1e6:.0f} MB")
        last = await measure("SQLite", url, catalog, args.runs, args.explain)
        if not args.keep:
            await asyncio.to_thread(shutil.rmtree, directory)

    if args.only in (None, "postgresql"):
        name = f"oneai_bench_{uuid.uuid4().hex[:8]}"
        await _pg_admin(args.pg_url, f'CREATE DATABASE "{name}"')
        url = make_url(args.pg_url).set(database=name).render_as_string(hide_password=False)
        try:
            await asyncio.to_thread(upgrade_head, url)
            started = time.perf_counter()
            await load_postgres(url, tables)
            print(f"PostgreSQL: loading (COPY, VACUUM ANALYZE): "
                  f"{time.perf_counter() - started:.1f} s")  # fmt: skip
            last = await measure("PostgreSQL", url, catalog, args.runs, args.explain)
        finally:
            if not args.keep:
                await _pg_admin(args.pg_url, f'DROP DATABASE IF EXISTS "{name}" WITH (FORCE)')

    print("load average at end: {:.2f} {:.2f} {:.2f}".format(*os.getloadavg()))
    if last is not None:
        print("\nThe screen:\n" + render_stats(last, "en"))


if __name__ == "__main__":
    asyncio.run(main())
