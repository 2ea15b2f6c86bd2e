"""Benchmark: the core chat pipeline against the bare LLM client, in one run.

Both arms stream the same 20-chunk answers from the same local fake LLM over HTTP with
the same concurrency. The baseline only streams; the pipeline also checks the user,
reserves the quota unit, writes the prompt and answer rows, builds the context and
settles the row. Printed: messages/s of each and their ratio, SQL statements per
message, and the time from the LLM client's first chunk to the pipeline's first delta.

    python -m bench.core_pipeline [--messages 400] [--concurrency 20]
    BENCH_DATABASE_URL=postgresql+asyncpg://postgres@127.0.0.1/test python -m bench.core_pipeline

Not a test: figures vary with the machine; compare the ratio, not the absolutes.
"""

from __future__ import annotations

import argparse
import asyncio
import os
import statistics
import tempfile
import time
import uuid
from collections.abc import AsyncGenerator
from pathlib import Path
from typing import Any

from sqlalchemy import event, text, update

from core.accounts import PlatformProfile
from core.config import DatabaseSettings, LimitSettings, LLMSettings, Settings
from core.db.engine import Database
from core.db.migrate import upgrade_head_async
from core.db.models import UsageQuota
from core.llm.client import LLMClient, StreamChunk
from core.services import Services
from core.tiers import Tier
from tests.fakes.llm_server import FakeLLM, Reply

CHUNKS = [f"word{i} " for i in range(20)]


async def _gather_limited(concurrency: int, jobs: list[object]) -> None:
    semaphore = asyncio.Semaphore(concurrency)

    async def run(job: object) -> None:
        async with semaphore:
            await job  # type: ignore[misc]

    await asyncio.gather(*(run(job) for job in jobs))


async def baseline(llm: LLMClient, messages: int, concurrency: int) -> float:
    async def one() -> None:
        async for _ in llm.stream_chat("openai/gpt-4o-mini", [{"role": "user", "content": "hi"}]):
            pass

    started = time.perf_counter()
    await _gather_limited(concurrency, [one() for _ in range(messages)])
    return messages / (time.perf_counter() - started)


async def pipeline(
    services: Services, messages: int, concurrency: int
) -> tuple[float, float, list[float]]:
    users = [
        (await services.accounts.upsert(PlatformProfile("bench", uuid.uuid4().hex))).id
        for _ in range(concurrency)
    ]
    # The free plan's quota would end the run early: give the bench users room.
    async with services.db.write() as session:
        for user_id in users:
            await services.quotas.ensure_rows(session, user_id, Tier.FREE)
        await session.execute(update(UsageQuota).values(quota_limit=10**9))
    statements = 0

    def _count(*_args: object) -> None:
        nonlocal statements
        statements += 1

    overheads: list[float] = []
    original = services.llm.stream_chat

    async def timed_stream(*args: Any, **kwargs: Any) -> AsyncGenerator[StreamChunk, None]:
        """The client's stream, noting when its first text chunk came out."""
        first = True
        async for chunk in original(*args, **kwargs):
            if first and chunk.text:
                first = False
                marks.append(time.perf_counter())
            yield chunk

    marks: list[float] = []
    services.llm.stream_chat = timed_stream  # type: ignore[method-assign]

    async def user_loop(user_id: int, count: int) -> None:
        for _ in range(count):
            gen = await services.chat.send(user_id, "Tell me something short")
            first = True
            async for _delta in gen.stream():
                if first:
                    first = False
                    overheads.append(time.perf_counter() - marks[-1])

    per_user = messages // concurrency
    event.listen(services.db.engine.sync_engine, "before_cursor_execute", _count)
    started = time.perf_counter()
    await asyncio.gather(*(user_loop(u, per_user) for u in users))
    elapsed = time.perf_counter() - started
    event.remove(services.db.engine.sync_engine, "before_cursor_execute", _count)
    services.llm.stream_chat = original  # type: ignore[method-assign]
    done = per_user * concurrency
    return done / elapsed, statements / done, overheads


async def main() -> None:
    parser = argparse.ArgumentParser()
    parser.add_argument("--messages", type=int, default=400)
    parser.add_argument("--concurrency", type=int, default=20)
    args = parser.parse_args()

    url = os.environ.get("BENCH_DATABASE_URL")
    workdir = Path(tempfile.mkdtemp())
    if url is None:
        url = f"sqlite+aiosqlite:///{workdir / 'bench.db'}"
    elif url.startswith("postgresql"):
        db = Database(url)
        async with db.engine.begin() as conn:
            await conn.execute(text("DROP SCHEMA public CASCADE"))
            await conn.execute(text("CREATE SCHEMA public"))
        await db.dispose()
    await upgrade_head_async(url)

    async with FakeLLM(default=Reply(chunks=CHUNKS)) as fake:
        settings = Settings(
            db=DatabaseSettings(database_url=url),
            llm=LLMSettings(base_url=fake.base_url, catalog_refresh_hours=0),
            limits=LimitSettings(max_concurrent_generations=4),
        )
        llm = LLMClient(fake.base_url, max_retries=0)
        services = Services.build(settings, llm=llm)
        await baseline(llm, 40, args.concurrency)  # warm up connections
        base = await baseline(llm, args.messages, args.concurrency)
        rate, queries, overheads = await pipeline(services, args.messages, args.concurrency)
        base_again = await baseline(llm, args.messages, args.concurrency)
        await services.close()

    backend = "PostgreSQL" if url.startswith("postgresql") else "SQLite"
    reference = (base + base_again) / 2
    print(f"database: {backend}; {args.messages} messages, concurrency {args.concurrency}")
    print(f"bare LLM client:   {reference:8.1f} msg/s (before {base:.1f}, after {base_again:.1f})")
    print(f"core pipeline:     {rate:8.1f} msg/s")
    print(f"ratio:             {rate / reference:8.1%} of the bare client")
    print(f"SQL statements:    {queries:8.1f} per message (BEGIN/COMMIT included)")
    overheads.sort()
    print(
        "first-delta overhead: median "
        f"{statistics.median(overheads) * 1000:.2f} ms, "
        f"p95 {overheads[int(len(overheads) * 0.95) - 1] * 1000:.2f} ms"
    )


if __name__ == "__main__":
    asyncio.run(main())
