"""What `oneai run` does not use is not imported: the YooKassa SDK without a shop,
discord.py without a Discord token, the tokenizer's vocabulary before a count."""

from __future__ import annotations

import subprocess
import sys

from tests.support.process import clean_env

SCRIPT = """
import sys, tempfile
import bot.cli, bot.runner
from core.services import Services
from core.config import DatabaseSettings, Settings
url = "sqlite+aiosqlite:///" + tempfile.mkdtemp() + "/x.db"
services = Services.build(Settings(db=DatabaseSettings(database_url=url)))
from payments.service import Payments
Payments.build(services)
assert not services.chat.planner.estimator.loaded
print(sorted(m for m in ("yookassa", "discord", "bpe_openai") if m in sys.modules))
"""


def test_unused_sdks_stay_unimported() -> None:
    out = subprocess.run(
        [sys.executable, "-c", SCRIPT],
        env=clean_env(),
        capture_output=True,
        text=True,
        timeout=120,
    )
    assert out.returncode == 0, out.stderr
    assert out.stdout.strip() == "[]"
