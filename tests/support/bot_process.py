"""`oneai run` as a real process, for tests that kill it, stop it or run two."""

from __future__ import annotations

import asyncio
import contextlib
import signal
import sys
from collections.abc import AsyncIterator
from pathlib import Path

from tests.support.process import clean_env, free_port


class BotProcess:
    """A running `oneai run`; its output is collected as it comes."""

    def __init__(self, process: asyncio.subprocess.Process, port: int) -> None:
        self.process = process
        self.port = port
        self._output = bytearray()
        assert process.stdout is not None
        self._reader = asyncio.create_task(self._read(process.stdout))

    async def _read(self, stream: asyncio.StreamReader) -> None:
        while chunk := await stream.read(65536):
            self._output += chunk

    @property
    def output(self) -> str:
        return self._output.decode(errors="replace")

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


@contextlib.asynccontextmanager
async def bot_process(cwd: Path, **variables: str) -> AsyncIterator[BotProcess]:
    """Start `python -m bot run` in `cwd` with the project's variables cleared and
    `variables` set; it is killed at the end if still running."""
    port = int(variables.pop("HTTP_PORT", "0")) or free_port()
    env = clean_env(
        HTTP_PORT=str(port),
        MODEL_CATALOG_REFRESH_HOURS="0",
        PAYMENTS_SCHEDULER_ENABLED="false",
        **variables,
    )
    process = await asyncio.create_subprocess_exec(
        sys.executable,
        "-m",
        "bot",
        "run",
        cwd=cwd,
        env=env,
        stdout=asyncio.subprocess.PIPE,
        stderr=asyncio.subprocess.STDOUT,
    )
    running = BotProcess(process, port)
    try:
        yield running
    finally:
        if process.returncode is None:
            process.kill()
            await process.wait()
