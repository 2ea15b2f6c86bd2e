"""`oneai run` as an operator starts it: a real process polling the fake Bot API."""

from __future__ import annotations

import asyncio
import signal
import sys
from pathlib import Path

import aiohttp

from tests.fakes.llm_server import FakeLLM, Reply
from tests.fakes.telegram_server import FakeTelegram
from tests.support.process import clean_env, free_port


async def test_oneai_run_answers_in_telegram_and_stops_cleanly(tmp_path: Path) -> None:
    port = free_port()
    async with FakeTelegram(per_chat_interval=0.5) as tg, FakeLLM(default=Reply(text=None)) as llm:
        tg.user(42, first_name="Op")
        env = clean_env(
            TELEGRAM_BOT_TOKEN=tg.token,
            TELEGRAM_API_URL=tg.url,
            LLM_BASE_URL=llm.base_url,
            DATABASE_URL=f"sqlite+aiosqlite:///{tmp_path / 'bot.db'}",
            HTTP_PORT=str(port),
            MODEL_CATALOG_REFRESH_HOURS="0",
        )
        process = await asyncio.create_subprocess_exec(
            sys.executable,
            "-m",
            "bot",
            "run",
            cwd=tmp_path,
            env=env,
            stdout=asyncio.subprocess.PIPE,
            stderr=asyncio.subprocess.STDOUT,
        )
        try:
            await tg.wait_for_call("setMyCommands", timeout=30)
            await tg.wait_for(lambda: tg.waiting_pollers > 0, timeout=30)
            assert {c["command"] for c in tg.my_commands(language_code="ru")} >= {"new", "model"}
            tg.send_text(42, "Hello from a real process")
            await tg.wait_for(
                lambda: any(
                    m.text == "Echo: Hello from a real process" and m.buttons
                    for m in tg.messages(42, from_bot=True)
                ),
                timeout=30,
            )
            async with (
                aiohttp.ClientSession() as http,
                http.get(f"http://127.0.0.1:{port}/health") as response,
            ):
                assert response.status == 200
                assert (await response.json())["status"] == "ok"
        finally:
            process.send_signal(signal.SIGTERM)
            output, _ = await asyncio.wait_for(process.communicate(), 30)
        assert process.returncode == 0, output.decode()
        assert b"Traceback" not in output
