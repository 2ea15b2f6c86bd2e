"""Benchmark: one Telegram bot served by one `oneai run` process, then by two behind
a load balancer, on PostgreSQL and Redis, in one run.

The same load each time: people (50 by default) write messages (5 each), the next
once the previous answer is final; the fake LLM echoes each prompt in a few chunks
over `--answer-seconds`; the fake Bot API applies Telegram's limits (one send or edit
per chat per 0.5 s, 30 per second in all) and the processes edit every 0.5 s. The
updates reach the processes' webhooks through the load balancer of
tests/support/scale_out.py (up to 40 POSTs at once). One process runs before and
after the two, so drift on the machine shows. Printed for each run: answers/s, 429s
by reason, the busiest second of sends and edits, duplicate answers; then the ratio
two/one.

    TEST_DATABASE_URL=postgresql+asyncpg://postgres@127.0.0.1:5432/test \\
    TEST_REDIS_URL=redis://127.0.0.1:6379/15 \\
    python -m bench.scale_out [--people 50] [--messages 5] [--answer-seconds 1.0] [--budget N]

A database of its own is created next to TEST_DATABASE_URL's and dropped at the end;
the Redis database is shared, each run's bot under a token of its own.

Not a test: figures vary with the machine; compare the ratio, not the absolutes.
With Telegram's global limit of 30 sends and edits per second, more processes can
only help while that budget is not what binds; `--budget 400` raises the bot's
budget (and the fake's limit with it) to show what the processes themselves do.
"""

from __future__ import annotations

import argparse
import asyncio
import os
import sys
import tempfile
from pathlib import Path

from core.db.engine import Database
from tests.fakes.llm_server import FakeLLM
from tests.fakes.telegram_server import FakeTelegram
from tests.support.scale_out import (
    GLOBAL_PER_SECOND,
    PER_CHAT_INTERVAL,
    Run,
    bot_processes,
    chunked_echo,
    drive,
    empty,
    fresh_postgres,
    hook,
    random_token,
    variables,
)

ANSWER_PIECES = 8  # "Echo:", the person and message numbers, six words


async def one_run(
    database_url: str, redis_url: str, processes: int, args: argparse.Namespace
) -> tuple[Run, int]:
    """The load against `processes` processes; the run and its duplicate answers."""
    db = Database(database_url)
    try:
        await empty(db)
        async with (
            FakeTelegram(
                random_token(),
                per_chat_interval=PER_CHAT_INTERVAL,
                global_per_second=platform_limit(args),
            ) as tg,
            FakeLLM(default=chunked_echo(args.answer_seconds, ANSWER_PIECES)) as llm,
        ):
            env = variables(tg, llm, database_url, redis_url)
            if args.budget is not None:
                env["TELEGRAM_GLOBAL_EDITS_PER_SECOND"] = str(args.budget)
            with tempfile.TemporaryDirectory() as cwd:
                async with bot_processes(Path(cwd), processes, env) as bots:
                    await tg.wait_for(lambda: tg.webhook_url, 30)
                    run = await drive(
                        tg,
                        db,
                        [hook(b) for b in bots],
                        people=args.people,
                        messages=args.messages,
                    )
                    for bot in bots:
                        bot.terminate()
                    for bot in bots:
                        await bot.wait()
            return run, run.duplicates(tg)
    finally:
        await db.dispose()


def platform_limit(args: argparse.Namespace) -> float:
    """The fake's global limit: Telegram's, or, for a raised `--budget`, as far above
    the bot's budget as Telegram's 30 is above the default 25."""
    return GLOBAL_PER_SECOND if args.budget is None else args.budget * GLOBAL_PER_SECOND / 25


def line(title: str, run: Run, duplicates: int) -> str:
    floods = ", ".join(f"{k} {v}" for k, v in sorted(run.floods.items())) or "none"
    return (
        f"{title:<22} {run.answers_per_second:6.2f} answers/s ({run.answers} in"
        f" {run.seconds:.1f} s); 429s: {floods}; busiest second {run.busiest_second};"
        f" duplicates {duplicates}; setWebhook ok {run.set_webhooks}"
    )


async def main() -> None:
    parser = argparse.ArgumentParser()
    parser.add_argument("--people", type=int, default=50)
    parser.add_argument("--messages", type=int, default=5)
    parser.add_argument("--answer-seconds", type=float, default=1.0)
    # A bot allowed more than Telegram's 30/s (paid broadcasts, or another platform's
    # limits): shows what the processes themselves can do once the budget is not binding.
    parser.add_argument("--budget", type=float, default=None)
    args = parser.parse_args()

    base = os.environ.get("TEST_DATABASE_URL", "")
    redis_url = os.environ.get("TEST_REDIS_URL", "")
    if not base.startswith("postgresql") or not redis_url:
        sys.exit("set TEST_DATABASE_URL (PostgreSQL) and TEST_REDIS_URL: see the docstring")

    async with fresh_postgres(base) as url:
        one, one_duplicates = await one_run(url, redis_url, 1, args)
        two, two_duplicates = await one_run(url, redis_url, 2, args)
        again, again_duplicates = await one_run(url, redis_url, 1, args)

    reference = (one.answers_per_second + again.answers_per_second) / 2
    print(
        f"{args.people} people x {args.messages} messages, answers over"
        f" {args.answer_seconds} s; Telegram limits: {platform_limit(args):g}/s in all,"
        f" one per chat per {PER_CHAT_INTERVAL} s"
    )
    print(line("one process (before)", one, one_duplicates))
    print(line("two processes", two, two_duplicates))
    print(line("one process (after)", again, again_duplicates))
    print(f"ratio two/one:         {two.answers_per_second / reference:6.2f}")


if __name__ == "__main__":
    asyncio.run(main())
