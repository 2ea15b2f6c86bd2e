"""What every fake peer shares: an aiohttp server on 127.0.0.1 (a free port unless
one is given), started and stopped with `async with`; and, for the fake payment
APIs, a log of the calls they received and an HTTP basic-auth check."""

from __future__ import annotations

import base64
import json
import time
from dataclasses import dataclass, field
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


@dataclass
class RecordedCall:
    method: str
    path: str
    headers: dict[str, str]  # lower-case names
    body: dict[str, Any]  # {} when absent or not a JSON object
    valid: bool  # the body was absent or a JSON object
    received_at: float = field(default_factory=time.monotonic)

    @property
    def idempotence_key(self) -> str | None:
        return self.headers.get("idempotence-key")


class RecordingServer(LocalServer):
    """A fake API that keeps every call it received, in order, in `calls`."""

    def __init__(self, host: str = "127.0.0.1", port: int = 0, **runner_options: Any) -> None:
        super().__init__(host, port, **runner_options)
        self.calls: list[RecordedCall] = []

    def calls_to(self, method: str, path: str) -> list[RecordedCall]:
        return [c for c in self.calls if c.method == method and c.path == path]

    async def _record(self, request: web.Request) -> RecordedCall:
        raw = await request.read()
        body: Any = {}
        if raw:
            try:
                body = json.loads(raw)
            except ValueError:
                body = None
        call = RecordedCall(
            method=request.method,
            path=request.path,
            headers={k.lower(): v for k, v in request.headers.items()},
            body=body if isinstance(body, dict) else {},
            valid=isinstance(body, dict),
        )
        self.calls.append(call)
        return call

    @staticmethod
    def _basic_auth(call: RecordedCall, user: str | None, secret: str | None) -> bool:
        """True when `user` is None (auth not checked) or the call carries
        `Authorization: Basic user:secret`."""
        if user is None:
            return True
        token = base64.b64encode(f"{user}:{secret or ''}".encode()).decode()
        return call.headers.get("authorization") == f"Basic {token}"
