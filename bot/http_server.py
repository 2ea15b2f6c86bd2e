"""The listening side of the one HTTP server: aiohttp behind a guard that bounds how
long, and how many, connections a client can hold.

aiohttp closes idle keep-alive connections, but it waits for a request's headers and
body as long as the client likes: a client that sends one header line keeps a file
descriptor until the process runs out of them, and then long polling, webhooks and
/health all stop. The guard wraps the protocol factory (aiohttp's `Server`) that is
handed to `loop.create_server`, so it sees every connection, every chunk received and
every request the application handles, and closes a connection when

- its request headers are not complete `header_timeout` seconds after it connected,
  or after the first byte that followed a keep-alive pause;
- the body of its request is not complete `body_timeout` seconds after the headers;
- it has been idle between requests for `keepalive_timeout` seconds;
- `max_connections` are open and a new one arrives: the connection that has waited
  longest without a request in progress (a slow or idle client) makes room. Only when
  every connection is busy is the new one refused, so a webhook or a health probe
  gets through while slow clients fill the server.
"""

from __future__ import annotations

import asyncio
import logging
import sys
import time
from collections import Counter, OrderedDict
from collections.abc import Callable
from enum import Enum
from typing import cast

from aiohttp import web
from aiohttp.web_protocol import RequestHandler

from core.config import HttpSettings
from core.tasks import cancel_and_wait

log = logging.getLogger(__name__)

ACCEPT_ERROR = "socket.accept() out of system resource"


class Phase(Enum):
    HEADERS = "headers"  # waiting for a request's headers
    BUSY = "busy"  # a request is being handled (its body may still be arriving)
    IDLE = "idle"  # keep-alive: between two requests


class _Connection(asyncio.Protocol):
    """Stands between the transport and aiohttp's RequestHandler, which does all the
    HTTP work; this only reports to the guard what happens."""

    def __init__(self, guard: ConnectionGuard, handler: RequestHandler) -> None:
        self.guard = guard
        self.handler = handler
        self.transport: asyncio.Transport | None = None
        self.phase = Phase.HEADERS
        self.deadline = 0.0
        self.request: web.BaseRequest | None = None
        # Bytes of a next (pipelined) request arrived while this one was handled, so
        # its headers are due when this one ends. (Bytes that came in the same chunk
        # as this request are not told apart: that connection waits for
        # keepalive_timeout instead, evictable all along.)
        self.next_request_started = False
        self.admitted = False

    def connection_made(self, transport: asyncio.BaseTransport) -> None:
        self.transport = cast(asyncio.Transport, transport)
        self.admitted = self.guard._admit(self)
        if self.admitted:
            self.handler.connection_made(transport)
        else:
            self.transport.abort()

    def data_received(self, data: bytes) -> None:
        if not self.admitted:
            return
        if self.phase is Phase.IDLE:
            self.guard._wait_for_headers(self)
        elif self.request is not None and self.request.content.is_eof():
            self.next_request_started = True
        self.handler.data_received(data)

    def eof_received(self) -> bool | None:
        if self.admitted:
            self.handler.eof_received()
        return None  # as aiohttp's: the transport closes

    def connection_lost(self, exc: Exception | None) -> None:
        if self.admitted:
            self.guard._forget(self)
            self.handler.connection_lost(exc)

    def pause_writing(self) -> None:
        self.handler.pause_writing()

    def resume_writing(self) -> None:
        self.handler.resume_writing()

    def abort(self) -> None:
        # abort, not close: close() would wait to flush output a slow reader never takes.
        if self.transport is not None:
            self.transport.abort()


class ConnectionGuard:
    """Tracks the server's connections and closes the slow ones (see the module)."""

    def __init__(
        self,
        *,
        header_timeout: float,
        body_timeout: float,
        keepalive_timeout: float,
        max_connections: int,
    ) -> None:
        self.header_timeout = header_timeout
        self.body_timeout = body_timeout
        self.keepalive_timeout = keepalive_timeout
        self.max_connections = max_connections
        # Every admitted connection, by aiohttp's handler (what a request knows).
        self._open: dict[RequestHandler, _Connection] = {}
        # The admitted connections without a request in progress, longest waiting first.
        self._waiting: OrderedDict[_Connection, None] = OrderedDict()
        # Connections closed by the guard, by reason (shown in /metrics).
        self.closed: Counter[str] = Counter()
        self._reported: Counter[str] = Counter()
        self._reported_at = time.monotonic()
        self._sweeper: asyncio.Task[None] | None = None
        # Deadlines are checked this often: a fraction of the shortest timeout.
        self._tick = min(1.0, max(0.05, min(header_timeout, body_timeout) / 4))

    @classmethod
    def from_settings(cls, settings: HttpSettings) -> ConnectionGuard:
        return cls(
            header_timeout=settings.header_timeout,
            body_timeout=settings.body_timeout,
            keepalive_timeout=settings.keepalive_timeout,
            max_connections=connection_cap(settings.max_connections),
        )

    @property
    def open_connections(self) -> int:
        return len(self._open)

    def protocol_factory(self, server: web.Server) -> Callable[[], asyncio.Protocol]:
        """What `loop.create_server` needs: guarded protocols around `server`'s."""
        handle = server.request_handler

        async def tracked(request: web.BaseRequest) -> web.StreamResponse:
            connection = self._open.get(request.protocol)
            if connection is None:
                return await handle(request)
            self._begin(connection, request)
            try:
                return await handle(request)
            finally:
                self._end(connection)

        # Each RequestHandler copies this when it is made, so it is set before any is.
        server.request_handler = tracked
        return lambda: _Connection(self, server())

    def start(self) -> None:
        if self._sweeper is None:
            self._sweeper = asyncio.create_task(self._sweep(), name="http-guard")

    async def stop(self) -> None:
        await cancel_and_wait(self._sweeper)
        self._sweeper = None

    # -- what the connections report ---------------------------------------------------

    def _now(self) -> float:
        return asyncio.get_running_loop().time()

    def _admit(self, connection: _Connection) -> bool:
        if len(self._open) >= self.max_connections:
            victim = next(iter(self._waiting), None)
            if victim is None:
                self.closed["refused"] += 1
                return False
            self._close(victim, "evicted")
        self._open[connection.handler] = connection
        self._wait_for_headers(connection)
        return True

    def _wait_for_headers(self, connection: _Connection) -> None:
        # A keep-alive connection keeps its place in the eviction order: it has been
        # without a request in progress since its last one ended.
        connection.phase = Phase.HEADERS
        connection.deadline = self._now() + self.header_timeout
        if connection not in self._waiting:
            self._waiting[connection] = None

    def _begin(self, connection: _Connection, request: web.BaseRequest) -> None:
        connection.phase = Phase.BUSY
        connection.request = request
        connection.next_request_started = False
        connection.deadline = self._now() + self.body_timeout
        self._waiting.pop(connection, None)

    def _end(self, connection: _Connection) -> None:
        connection.request = None
        if connection.handler not in self._open:
            return
        self._waiting[connection] = None
        self._waiting.move_to_end(connection)
        if connection.next_request_started:
            connection.next_request_started = False
            self._wait_for_headers(connection)
        else:
            connection.phase = Phase.IDLE
            connection.deadline = self._now() + self.keepalive_timeout

    def _forget(self, connection: _Connection) -> None:
        self._open.pop(connection.handler, None)
        self._waiting.pop(connection, None)

    def _close(self, connection: _Connection, reason: str) -> None:
        # Forgotten now, not when the transport reports the loss a loop turn later,
        # so a burst of new connections each finds the room counted right.
        self._forget(connection)
        self.closed[reason] += 1
        if connection.request is not None:
            # The handler reading the body gets a clean HTTP error, not a reset.
            connection.request.content.set_exception(web.HTTPRequestTimeout())
        connection.abort()

    # -- deadlines -------------------------------------------------------------------

    async def _sweep(self) -> None:
        while True:
            await asyncio.sleep(self._tick)
            now = self._now()
            for connection in list(self._open.values()):
                if now < connection.deadline:
                    continue
                if connection.phase is Phase.HEADERS:
                    self._close(connection, "header_timeout")
                elif connection.phase is Phase.IDLE:
                    self._close(connection, "idle")
                elif connection.request is not None and not connection.request.content.is_eof():
                    self._close(connection, "body_timeout")
            self._report()

    def _report(self) -> None:
        """One line a minute at most about the slow clients the guard turned away."""
        if time.monotonic() - self._reported_at < 60:
            return
        news = self.closed - self._reported
        news.pop("idle", None)  # closing idle keep-alive connections is routine
        if news:
            log.warning(
                "HTTP: closed slow or surplus connections in the last minute: %s "
                "(%d open, at most %d)",
                ", ".join(f"{reason} {count}" for reason, count in sorted(news.items())),
                len(self._open),
                self.max_connections,
            )
        self._reported = self.closed.copy()
        self._reported_at = time.monotonic()


def file_limit() -> int | None:
    """The process's soft limit on open files, None when unlimited or unknown."""
    if sys.platform == "win32":
        return None
    import resource

    soft, _ = resource.getrlimit(resource.RLIMIT_NOFILE)
    return None if soft == resource.RLIM_INFINITY else soft


def connection_cap(configured: int) -> int:
    """`configured`, but at most a quarter of the file limit: the rest is for the
    bot's own sockets (long polling, the LLM, the database) and files."""
    limit = file_limit()
    if limit is None:
        return configured
    return max(1, min(configured, limit // 4))


class AcceptErrorFilter(logging.Filter):
    """At most one "socket.accept() out of system resource" line a minute.

    When the process is out of file descriptors, asyncio's accept loop logs every
    failed accept(), with a traceback, and retries many times a second: hundreds of
    megabytes a minute. The line that passes says how many were dropped before it."""

    def __init__(self, interval: float = 60.0) -> None:
        super().__init__()
        self.interval = interval
        self.suppressed = 0
        self._last: float | None = None

    def filter(self, record: logging.LogRecord) -> bool:
        if not str(record.msg).startswith(ACCEPT_ERROR):
            return True
        now = time.monotonic()
        if self._last is not None and now - self._last < self.interval:
            self.suppressed += 1
            return False
        if self.suppressed:
            record.msg = (
                f"{record.getMessage()}\n({self.suppressed} more like it in the last "
                f"{now - self._last if self._last is not None else 0:.0f} s were not logged)"
            )
            record.args = ()
        self._last = now
        self.suppressed = 0
        return True


class GuardedSite(web.BaseSite):
    """A TCP site whose connections go through a `ConnectionGuard`."""

    __slots__ = ("_filter", "_guard", "_host", "_port")

    def __init__(
        self, runner: web.BaseRunner, host: str, port: int, *, guard: ConnectionGuard
    ) -> None:
        super().__init__(runner)
        self._host = host
        self._port = port
        self._guard = guard
        self._filter = AcceptErrorFilter()

    @property
    def name(self) -> str:
        return f"http://{self._host}:{self._port}"

    async def start(self) -> None:
        await super().start()  # registers the site, so runner.cleanup() stops it
        server = self._runner.server
        assert server is not None
        self._server = await asyncio.get_running_loop().create_server(
            self._guard.protocol_factory(server), self._host, self._port, backlog=self._backlog
        )
        self._guard.start()
        logging.getLogger("asyncio").addFilter(self._filter)

    async def stop(self) -> None:
        await super().stop()
        await self._guard.stop()
        logging.getLogger("asyncio").removeFilter(self._filter)


GUARD_KEY = web.AppKey("http_guard", ConnectionGuard)


async def serve_http(runner: web.AppRunner, settings: HttpSettings) -> ConnectionGuard:
    """Set up `runner` and serve its app on settings.host:port through a guard;
    `runner.cleanup()` stops it all."""
    guard = ConnectionGuard.from_settings(settings)
    if guard.max_connections < settings.max_connections:
        log.info(
            "HTTP: at most %d connections (a quarter of the file limit %s)",
            guard.max_connections,
            file_limit(),
        )
    runner.app[GUARD_KEY] = guard  # /metrics shows its counts
    await runner.setup()
    await GuardedSite(runner, settings.host, settings.port, guard=guard).start()
    return guard
