"""Helpers for tests that start servers or the `oneai` command as a process."""

from __future__ import annotations

import os
import socket
from pathlib import Path

ROOT = Path(__file__).resolve().parents[2]

# Variables a developer's shell may carry that would point a child process at a
# real bot, LLM or database instead of the test's fakes.
_PROJECT_PREFIXES = ("TELEGRAM_", "DISCORD_", "LLM_", "DATABASE_", "REDIS_")


def free_port() -> int:
    with socket.socket() as probe:
        probe.bind(("127.0.0.1", 0))
        return int(probe.getsockname()[1])


def clean_env(**values: str) -> dict[str, str]:
    """This process's environment without the project's variables, plus `values`;
    the project root is importable."""
    env = {k: v for k, v in os.environ.items() if not k.startswith(_PROJECT_PREFIXES)}
    env["PYTHONPATH"] = str(ROOT)
    env.update(values)
    return env
