"""What `oneai run` does not use is not imported: the payment SDKs (and requests)
without their accounts, discord.py without a Discord token, the Redis client
without REDIS_URL, alembic for a database already at the newest revision, the
tokenizer's vocabulary before a count."""

from __future__ import annotations

import asyncio
import sqlite3
import subprocess
import sys
from pathlib import Path

from alembic import command

from core.db.migrate import alembic_config, current_revision, prepare_database, upgrade_head
from migrations import HEAD
from tests.support.process import clean_env

SCRIPT = """
import asyncio, sys
import bot.cli, bot.runner, bot.http, bot.telegram.factory, bot.telegram.runner
from core.services import Services
from core.config import DatabaseSettings, Settings
from core.db.migrate import prepare_database
from core.shared_limits import build_limits
url = sys.argv[1]
asyncio.run(prepare_database(url))
services = Services.build(Settings(db=DatabaseSettings(database_url=url)))
from payments.service import Payments
Payments.build(services)
build_limits(None, "oneai:tg:1:", 25.0)
assert not services.chat.planner.estimator.loaded
unused = ("yookassa", "razorpay", "requests", "discord", "redis", "alembic", "bpe_openai")
print(sorted(m for m in unused if m in sys.modules))
"""


def test_unused_sdks_stay_unimported(tmp_path: Path) -> None:
    url = f"sqlite+aiosqlite:///{tmp_path / 'head.db'}"
    upgrade_head(url)
    out = subprocess.run(
        [sys.executable, "-c", SCRIPT, url],
        env=clean_env(),
        capture_output=True,
        text=True,
        timeout=120,
    )
    assert out.returncode == 0, out.stderr
    assert out.stdout.strip() == "[]"


async def test_a_database_behind_the_newest_revision_is_still_upgraded(tmp_path: Path) -> None:
    """The start-up check without alembic must not skip a needed upgrade."""
    url = f"sqlite+aiosqlite:///{tmp_path / 'old.db'}"
    # alembic's env.py runs an event loop of its own.
    await asyncio.to_thread(command.upgrade, alembic_config(url), "0013")
    assert await current_revision(url) == "0013"
    await prepare_database(url)
    assert await current_revision(url) == HEAD
    with sqlite3.connect(tmp_path / "old.db") as conn:
        names = {row[0] for row in conn.execute("SELECT name FROM sqlite_master")}
    assert "ix_chat_messages_user_streaming" in names
