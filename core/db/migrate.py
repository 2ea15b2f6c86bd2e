"""Run alembic migrations from code (`oneai migrate`, `oneai run` on start-up)."""

from __future__ import annotations

import asyncio
from pathlib import Path

from alembic import command
from alembic.config import Config

import migrations

MIGRATIONS_DIR = Path(migrations.__file__).parent


def alembic_config(url: str) -> Config:
    cfg = Config()
    cfg.set_main_option("script_location", str(MIGRATIONS_DIR))
    cfg.set_main_option("sqlalchemy.url", url.replace("%", "%%"))
    return cfg


def upgrade_head(url: str) -> None:
    command.upgrade(alembic_config(url), "head")


async def upgrade_head_async(url: str) -> None:
    # alembic's env.py runs its own event loop; keep it off ours.
    await asyncio.to_thread(upgrade_head, url)
