"""Benchmark: what reading a conversation's active path with the user's lock costs,
by how the path comes, in one run.

Three arms run on the same conversation, at several path lengths: the lock query
alone (the user, the count of streaming answers and the conversation; the
baseline), the lock query with the path as one JSON value (what `TurnPlanner`
runs, core/conversations/path.py), and the same lock with the path joined as one
row per message, loaded as ORM objects (how it was read before). The arms take
turns, call by call, so a slow spell of the machine falls on all three. Printed:
microseconds of CPU per call, and what the path adds over the lock alone.

    python -m bench.lock_path [--calls 400] [--lengths 2,10,20,40] [--database-url URL]

Not a test: figures vary with the machine; compare the ratios.
"""

from __future__ import annotations

import argparse
import asyncio
import tempfile
import time
from collections.abc import Awaitable, Callable
from pathlib import Path
from typing import Any

from sqlalchemy import Select, and_
from sqlalchemy.orm import load_only

from core.config import DatabaseSettings, LimitSettings, LLMSettings, Settings
from core.conversations.path import _COLUMNS
from core.conversations.turns import _LOCK, _LOCK_WITH_PATH
from core.db.migrate import upgrade_head_async
from core.db.models import ChatMessage, Conversation
from core.services import Services
from tests.fakes.llm_server import FakeLLM, Reply
from tests.support.chat import new_user

Arm = Callable[[], Awaitable[None]]

# The path joined as rows, as the lock query read it before the JSON value.
_JOINED = (
    _LOCK.add_columns(ChatMessage)
    .outerjoin(
        ChatMessage,
        and_(ChatMessage.conversation_id == Conversation.id, ChatMessage.is_latest.is_(True)),
    )
    .order_by(ChatMessage.sequence_number)
    # The columns the JSON value holds, and the one the join needs.
    .options(load_only(ChatMessage.conversation_id, *_COLUMNS))
)


async def conversation_of(services: Services, messages: int) -> int:
    """A person whose current conversation's path has `messages` rows."""
    user_id = await new_user(services)
    for index in range(messages // 2):
        generation = await services.chat.send(user_id, f"Question {index}: " + "words " * 20)
        await generation.run()
    return user_id


async def measure(services: Services, user_id: int, calls: int) -> dict[str, float]:
    """CPU µs per call of each arm, the arms taking turns."""

    def arm(
        query: Select[Any], read: Callable[[list[Any]], object]
    ) -> Callable[[], Awaitable[None]]:
        async def one() -> None:
            async with services.db.read() as session:
                rows = (await session.execute(query, {"user_id": user_id})).all()
                read(rows)

        return one

    arms = {
        "lock alone": arm(_LOCK, lambda rows: rows[0]),
        "path as JSON": arm(_LOCK_WITH_PATH, lambda rows: rows[0][3]),
        "path joined": arm(_JOINED, lambda rows: [r[3] for r in rows]),
    }
    spent = dict.fromkeys(arms, 0.0)
    for one in arms.values():
        await one()  # compiled and cached outside the timing
    for _ in range(calls):
        for name, one in arms.items():
            started = time.process_time()
            await one()
            spent[name] += time.process_time() - started
    return {name: seconds / calls * 1e6 for name, seconds in spent.items()}


async def run(url: str, lengths: list[int], calls: int) -> None:
    async with FakeLLM(default=Reply(chunks=["An answer ", "of a few ", "words."])) as llm:
        settings = Settings(
            db=DatabaseSettings(database_url=url),
            llm=LLMSettings(base_url=llm.base_url, catalog_refresh_hours=0),
            limits=LimitSettings(max_messages_per_conversation=max(lengths) + 10),
        )
        services = Services.build(settings)
        try:
            print(f"Lock query, {calls} calls per arm and path length, CPU µs per call:")
            print(
                f"   {'path rows':>9} {'lock alone':>11} {'as JSON':>9} {'joined':>9}"
                f" {'JSON adds':>10} {'join adds':>10}"
            )
            for length in lengths:
                user_id = await conversation_of(services, length)
                figures = await measure(services, user_id, calls)
                alone = figures["lock alone"]
                as_json, joined = figures["path as JSON"], figures["path joined"]
                print(
                    f"   {length:>9} {alone:>11.0f} {as_json:>9.0f} {joined:>9.0f}"
                    f" {as_json - alone:>10.0f} {joined - alone:>10.0f}"
                )
        finally:
            await services.close()


async def main() -> None:
    parser = argparse.ArgumentParser()
    parser.add_argument("--calls", type=int, default=400)
    parser.add_argument(
        "--lengths", type=lambda value: [int(n) for n in value.split(",")], default=[2, 10, 20, 40]
    )
    parser.add_argument(
        "--database-url", help="migrated to the head first; default: a new SQLite file"
    )
    args = parser.parse_args()
    if args.database_url:
        await upgrade_head_async(args.database_url)
        await run(args.database_url, args.lengths, args.calls)
        return
    with tempfile.TemporaryDirectory() as workdir:
        url = f"sqlite+aiosqlite:///{Path(workdir) / 'bench.db'}"
        await upgrade_head_async(url)
        await run(url, args.lengths, args.calls)


if __name__ == "__main__":
    asyncio.run(main())
