"""What every fake peer shares: an aiohttp server on 127.0.0.1 (a free port unless
one is given), started and stopped with `async with`."""

from __future__ import annotations

from types import TracebackType
from typing import Any, Self

from aiohttp import web


class LocalServer:
    def __init__(self, host: str = "127.0.0.1", port: int = 0, **runner_options: Any) -> None:
        self._host = host
        self._port = port
        # Short shutdown: a stalled handler must not hold up the end of a test.
        self._runner_options = {"access_log": None, "shutdown_timeout": 1.0, **runner_options}
        self._runner: web.AppRunner | None = None

    def routes(self, app: web.Application) -> None:
        raise NotImplementedError

    def application(self) -> web.Application:
        return web.Application()

    async def start(self) -> None:
        app = self.application()
        self.routes(app)
        self._runner = web.AppRunner(app, **self._runner_options)
        await self._runner.setup()
        site = web.TCPSite(self._runner, self._host, self._port)
        await site.start()
        self._port = self._runner.addresses[0][1]

    async def stop(self) -> None:
        if self._runner is not None:
            await self._runner.cleanup()
            self._runner = None

    async def __aenter__(self) -> Self:
        await self.start()
        return self

    async def __aexit__(
        self,
        exc_type: type[BaseException] | None,
        exc: BaseException | None,
        tb: TracebackType | None,
    ) -> None:
        await self.stop()

    @property
    def url(self) -> str:
        """Root URL, e.g. http://127.0.0.1:53412."""
        return f"http://{self._host}:{self._port}"
