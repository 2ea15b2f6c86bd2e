"""`oneai run` as an operator starts it: a real process polling the fake Bot API."""

from __future__ import annotations

from pathlib import Path

import aiohttp

from tests.fakes.llm_server import FakeLLM, Reply
from tests.fakes.telegram_server import FakeTelegram
from tests.support.bot_process import bot_process, bot_variables


async def test_oneai_run_answers_in_telegram_and_stops_cleanly(tmp_path: Path) -> None:
    async with FakeTelegram(per_chat_interval=0.5) as tg, FakeLLM(default=Reply(text=None)) as llm:
        tg.user(42, first_name="Op")
        variables = bot_variables(tg, llm, f"sqlite+aiosqlite:///{tmp_path / 'bot.db'}")
        async with bot_process(tmp_path, variables) as bot:
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
                http.get(f"http://127.0.0.1:{bot.port}/health") as response,
            ):
                assert response.status == 200
                assert (await response.json())["status"] == "ok"
            bot.terminate()
            assert await bot.wait() == 0, bot.output
        assert "Traceback" not in bot.output
