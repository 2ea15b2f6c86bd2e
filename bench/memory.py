"""Benchmark: the memory of `oneai run` with Telegram, against what its libraries
alone take, measured in one run.

`oneai run` is started as a real process (SQLite, no Redis) against the fake Bot
API and the fake LLM on 127.0.0.1. Printed, from /proc/PID/status (VmRSS):

1. the baselines: a bare interpreter, and one that imported aiogram (the Bot API
   types are built at import) and nothing else;
2. `oneai run` idle: ready and polling, before anyone wrote;
3. after answering a few people (the code paths of an answer are warm);
4. whether the tokenizer's vocabulary was loaded (a conversation near its
   model's window needs it; these do not).

    python -m bench.memory

Not a test: figures vary with the machine and the libraries' versions.
"""

from __future__ import annotations

import asyncio
import subprocess
import sys
import tempfile
from pathlib import Path

from core.db.migrate import upgrade_head_async
from tests.fakes.llm_server import FakeLLM, Reply
from tests.fakes.telegram_server import FakeTelegram
from tests.support.bot_process import bot_process, bot_variables
from tests.support.process import clean_env

IDLE_SETTLE = 3.0  # seconds after the first poll before idle is read
PEOPLE = 20
TARGET_IDLE_MIB = 150


def rss_kib(pid: int) -> int:
    for line in Path(f"/proc/{pid}/status").read_text().splitlines():
        if line.startswith("VmRSS:"):
            return int(line.split()[1])
    raise RuntimeError(f"no VmRSS for {pid}")


def baseline_kib(code: str) -> int:
    """The RSS of an interpreter that ran `code` and then waits."""
    script = f"{code}\nimport sys\nprint('ready', flush=True)\nsys.stdin.read()"
    with subprocess.Popen(
        [sys.executable, "-c", script],
        stdin=subprocess.PIPE,
        stdout=subprocess.PIPE,
        env=clean_env(),
        text=True,
    ) as child:
        assert child.stdout is not None and child.stdin is not None
        child.stdout.readline()
        size = rss_kib(child.pid)
        child.stdin.close()
        child.wait()
    return size


def mib(kib: int) -> str:
    return f"{kib / 1024:7.1f} MiB"


async def measure() -> None:
    bare = baseline_kib("")
    aiogram = baseline_kib("import aiogram, aiogram.types")
    with tempfile.TemporaryDirectory() as workdir:
        url = f"sqlite+aiosqlite:///{Path(workdir) / 'bench.db'}"
        await upgrade_head_async(url)
        async with (
            FakeLLM(default=Reply(chunks=["Hello ", "there, ", "friend."])) as llm,
            FakeTelegram(per_chat_interval=None, global_per_second=None) as tg,
        ):
            people = [5000 + i for i in range(PEOPLE)]
            for person in people:
                tg.user(person, first_name=f"P{person}", language_code="en")
            async with bot_process(Path(workdir), bot_variables(tg, llm, url)) as bot:
                await tg.wait_for(
                    lambda: tg.waiting_pollers > 0 or bool(tg.calls_of("getUpdates")), 60
                )
                await asyncio.sleep(IDLE_SETTLE)
                idle = rss_kib(bot.pid)
                for person in people:
                    tg.send_text(person, "hello")
                await tg.wait_for(
                    lambda: all(
                        any(m.buttons for m in tg.messages(p, from_bot=True)) for p in people
                    ),
                    60,
                )
                await asyncio.sleep(1.0)
                answered = rss_kib(bot.pid)
                bot.terminate()
                await bot.wait()
    print("1. Baselines (same run)")
    print(f"   bare interpreter          {mib(bare)}")
    print(f"   import aiogram            {mib(aiogram)}  (+{(aiogram - bare) / 1024:.1f} MiB)")
    print("2. oneai run, Telegram polling, SQLite")
    verdict = "met" if idle / 1024 <= TARGET_IDLE_MIB else "not met"
    print(
        f"   idle                      {mib(idle)}  target <= {TARGET_IDLE_MIB} MiB ({verdict}); "
        f"{idle / aiogram:.2f}x aiogram alone"
    )
    grown = (answered - idle) / 1024
    print(f"   after {PEOPLE} answers          {mib(answered)}  (+{grown:.1f} MiB)")


if __name__ == "__main__":
    asyncio.run(measure())
