"""`oneai run` as a real process, for tests that kill it, stop it or run two."""

from __future__ import annotations

import asyncio
import contextlib
import signal
import sys
from collections.abc import AsyncIterator, Callable, Mapping
from pathlib import Path

from tests.fakes.llm_server import FakeLLM
from tests.fakes.telegram_server import FakeTelegram
from tests.support.process import clean_env, free_port

KEPT_OUTPUT = 1024 * 1024  # bytes of output kept to read (a flood must not fill memory)


class BotProcess:
    """A running `oneai run`; its output is drained as it comes: every byte is
    counted, the first megabyte kept."""

    def __init__(self, process: asyncio.subprocess.Process, port: int) -> None:
        self.process = process
        self.port = port
        self.size = 0
        self._output = bytearray()
        assert process.stdout is not None
        self._reader = asyncio.create_task(self._read(process.stdout))

    async def _read(self, stream: asyncio.StreamReader) -> None:
        while chunk := await stream.read(65536):
            self.size += len(chunk)
            if len(self._output) < KEPT_OUTPUT:
                self._output += chunk[: KEPT_OUTPUT - len(self._output)]

    @property
    def output(self) -> str:
        return self._output.decode(errors="replace")

    @property
    def pid(self) -> int:
        return self.process.pid

    def kill(self) -> None:
        """SIGKILL: no cleanup of any kind, as an OOM kill or a crash."""
        self.process.kill()

    def terminate(self) -> None:
        self.process.send_signal(signal.SIGTERM)

    async def wait(self, timeout: float = 30) -> int:  # noqa: ASYNC109 -- a process, not a call
        code = await asyncio.wait_for(self.process.wait(), timeout)
        with contextlib.suppress(TimeoutError):
            await asyncio.wait_for(self._reader, 5)
        return code


def bot_variables(tg: FakeTelegram, llm: FakeLLM, database_url: str) -> dict[str, str]:
    """What `oneai run` needs to serve `tg`'s bot with `llm` on `database_url`."""
    return {
        "TELEGRAM_BOT_TOKEN": tg.token,
        "TELEGRAM_API_URL": tg.url,
        "LLM_BASE_URL": llm.base_url,
        "DATABASE_URL": database_url,
    }


@contextlib.asynccontextmanager
async def bot_process(
    cwd: Path, variables: Mapping[str, str], *, preexec_fn: Callable[[], object] | None = None
) -> AsyncIterator[BotProcess]:
    """Start `python -m bot run` in `cwd` with the project's variables cleared and
    `variables` set (`preexec_fn` runs in the child first, e.g. to set a limit);
    it is killed at the end if still running."""
    port = int(variables.get("HTTP_PORT", "0")) or free_port()
    env = clean_env(MODEL_CATALOG_REFRESH_HOURS="0", **{**variables, "HTTP_PORT": str(port)})
    process = await asyncio.create_subprocess_exec(
        sys.executable,
        "-m",
        "bot",
        "run",
        cwd=cwd,
        env=env,
        stdout=asyncio.subprocess.PIPE,
        stderr=asyncio.subprocess.STDOUT,
        preexec_fn=preexec_fn,
    )
    running = BotProcess(process, port)
    try:
        yield running
    finally:
        if process.returncode is None:
            process.kill()
            await process.wait()
