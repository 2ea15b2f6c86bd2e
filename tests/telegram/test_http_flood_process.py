"""`oneai run` with an operator's file limit of 1,024 while 1,100 clients hold
half-sent requests open on its HTTP port: the bot keeps answering, `/health` keeps
answering, and the log stays small."""

from __future__ import annotations

import asyncio
import re
import resource
import time
from pathlib import Path

import aiohttp
import pytest

from tests.fakes.llm_server import FakeLLM, Reply
from tests.fakes.telegram_server import FakeTelegram
from tests.support.bot_process import bot_process, bot_variables

CHILD_FILE_LIMIT = 1024
ATTACKERS = 1100
OWN_FILE_LIMIT = 20_000
OUTPUT_LIMIT = 200_000  # bytes the process may write during the whole test
KEPT_OUTPUT = 20_000  # bytes of output kept for the failure message


def _child_file_limit() -> None:
    resource.setrlimit(resource.RLIMIT_NOFILE, (CHILD_FILE_LIMIT, CHILD_FILE_LIMIT))


def _raise_own_file_limit() -> None:
    soft, hard = resource.getrlimit(resource.RLIMIT_NOFILE)
    wanted = OWN_FILE_LIMIT if hard == resource.RLIM_INFINITY else min(OWN_FILE_LIMIT, hard)
    if wanted < ATTACKERS + 500:
        pytest.skip(f"this test needs {ATTACKERS + 500} open files, the hard limit is {hard}")
    if soft != resource.RLIM_INFINITY and soft < wanted:
        resource.setrlimit(resource.RLIMIT_NOFILE, (wanted, hard))


def _open_files(pid: int) -> int | None:
    fds = Path(f"/proc/{pid}/fd")
    return len(list(fds.iterdir())) if fds.is_dir() else None


async def _half_open(port: int) -> asyncio.StreamWriter | None:
    """A client that sends the first line of a request and then nothing."""
    try:
        async with asyncio.timeout(10):
            _, writer = await asyncio.open_connection("127.0.0.1", port)
            writer.write(b"GET /health HTTP/1.1\r\n")
            await writer.drain()
            return writer
    except (OSError, TimeoutError):
        return None


async def _open_attack(port: int) -> list[asyncio.StreamWriter]:
    gate = asyncio.Semaphore(100)

    async def one() -> asyncio.StreamWriter | None:
        async with gate:
            return await _half_open(port)

    opened = await asyncio.gather(*(one() for _ in range(ATTACKERS)))
    return [w for w in opened if w is not None]


async def test_half_open_flood_leaves_the_bot_and_health_answering(tmp_path: Path) -> None:
    _raise_own_file_limit()
    async with FakeTelegram(per_chat_interval=0.5) as tg, FakeLLM(default=Reply(text=None)) as llm:
        tg.user(42, first_name="Op")
        variables = {
            **bot_variables(tg, llm, f"sqlite+aiosqlite:///{tmp_path / 'bot.db'}"),
            # The half-open clients stay for the whole test: what is measured is
            # the connection cap, not the header timeout (tests/test_http_guard.py).
            "HTTP_HEADER_TIMEOUT": "120",
        }
        started = time.monotonic()
        attack: list[asyncio.StreamWriter] = []
        async with bot_process(tmp_path, variables, preexec_fn=_child_file_limit) as bot:
            try:
                await tg.wait_for_call("setMyCommands", timeout=30)
                await tg.wait_for(lambda: tg.waiting_pollers > 0, timeout=30)

                attack = await _open_attack(bot.port)
                # The flood got through to the server: far more than it can hold.
                assert len(attack) >= CHILD_FILE_LIMIT, len(attack)
                held_files = _open_files(bot.pid)
                if held_files is not None:  # Linux: the bot stays well under its limit
                    assert held_files < CHILD_FILE_LIMIT // 2, held_files

                tg.send_text(42, "Hello under load")
                await tg.wait_for(
                    lambda: any(
                        m.text == "Echo: Hello under load" and m.buttons
                        for m in tg.messages(42, from_bot=True)
                    ),
                    timeout=20,
                )
                timeout = aiohttp.ClientTimeout(total=10)
                async with aiohttp.ClientSession(timeout=timeout) as http:
                    async with http.get(f"http://127.0.0.1:{bot.port}/health") as response:
                        assert response.status == 200
                        assert await response.json() == {"status": "ok"}
                    async with http.get(f"http://127.0.0.1:{bot.port}/metrics") as response:
                        assert response.status == 200
                        metrics = await response.text()
                # The server still holds the half-open clients it has room for.
                held = re.search(r"^oneai_http_connections_open (\d+)$", metrics, re.MULTILINE)
                assert held is not None, metrics
                assert int(held.group(1)) >= 200
            finally:
                bot.terminate()
                code = await bot.wait()
                for writer in attack:
                    writer.close()
        elapsed = time.monotonic() - started
        text = bot.output
        assert code == 0, text
        assert bot.size < OUTPUT_LIMIT, (bot.size, text[:KEPT_OUTPUT])
        assert text.count("Too many open files") <= 1, text[:KEPT_OUTPUT]
        assert "Traceback" not in text
        print(f"flood test: {elapsed:.1f}s, process wrote {bot.size} bytes")
