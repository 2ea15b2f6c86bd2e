"""The connection guard in front of the HTTP server, over real sockets on 127.0.0.1:
slow clients are closed on time, and a full server makes room for a new request."""

from __future__ import annotations

import asyncio
import logging
import resource
import time
from collections.abc import AsyncIterator, Awaitable, Callable
from dataclasses import dataclass, field

import aiohttp
import pytest
from aiohttp import web

from bot.http_server import AcceptErrorFilter, ConnectionGuard, GuardedSite, connection_cap
from tests.support.process import free_port
from tests.support.raw_http import read_response, request_head

GET = request_head("GET", "/", {})


@dataclass
class Server:
    port: int
    guard: ConnectionGuard
    release: asyncio.Event = field(default_factory=asyncio.Event)
    started: int = 0  # requests that reached the handler
    errors: list[BaseException] = field(default_factory=list)

    async def connect(self, data: bytes = b"") -> Client:
        reader, writer = await asyncio.open_connection("127.0.0.1", self.port)
        if data:
            writer.write(data)
            await writer.drain()
        return Client(reader, writer)

    async def settled(self, open_connections: int) -> None:
        """Until the server has accepted (and counted) this many connections."""
        async with asyncio.timeout(5):
            while self.guard.open_connections != open_connections:  # noqa: ASYNC110
                await asyncio.sleep(0.01)


@dataclass
class Client:
    reader: asyncio.StreamReader
    writer: asyncio.StreamWriter

    async def closed_within(self, seconds: float) -> bool:
        """Whether the server closes this connection within `seconds`."""
        try:
            async with asyncio.timeout(seconds):
                while await self.reader.read(4096):
                    pass
        except TimeoutError:
            return False
        except ConnectionResetError:
            pass
        return True

    def close(self) -> None:
        self.writer.close()


StartServer = Callable[..., Awaitable[Server]]


@pytest.fixture
async def start_server() -> AsyncIterator[StartServer]:
    """A guarded aiohttp server: `GET /` answers at once, `GET /wait` when released,
    `POST /body` reads the body (after `?sleep=` seconds more, if given)."""
    runners: list[web.AppRunner] = []

    async def start(
        *,
        header_timeout: float = 30,
        body_timeout: float = 30,
        keepalive_timeout: float = 30,
        max_connections: int = 100,
    ) -> Server:
        guard = ConnectionGuard(
            header_timeout=header_timeout,
            body_timeout=body_timeout,
            keepalive_timeout=keepalive_timeout,
            max_connections=max_connections,
        )
        server = Server(free_port(), guard)

        async def index(request: web.Request) -> web.Response:
            server.started += 1
            return web.Response(text="ok")

        async def wait(request: web.Request) -> web.Response:
            server.started += 1
            await server.release.wait()
            return web.Response(text="released")

        async def body(request: web.Request) -> web.Response:
            server.started += 1
            try:
                data = await request.read()
            except BaseException as exc:
                server.errors.append(exc)
                raise
            await asyncio.sleep(float(request.query.get("sleep", 0)))
            return web.Response(text=str(len(data)))

        app = web.Application()
        app.router.add_get("/", index)
        app.router.add_get("/wait", wait)
        app.router.add_post("/body", body)
        runner = web.AppRunner(app, access_log=None, shutdown_timeout=1.0)
        await runner.setup()
        runners.append(runner)
        await GuardedSite(runner, "127.0.0.1", server.port, guard=guard).start()
        return server

    yield start
    for runner in runners:
        await runner.cleanup()


async def test_slow_headers_are_closed_after_the_header_timeout(
    start_server: StartServer, caplog: pytest.LogCaptureFixture
) -> None:
    server = await start_server(header_timeout=0.5)
    silent = await server.connect()
    one_line = await server.connect(b"GET / HTTP/1.1\r\n")
    dripping = await server.connect(b"GET / HTTP/1.1\r\n")

    async def drip() -> None:
        # A byte every 0.1 s: progress, but headers that never end.
        for _ in range(40):
            dripping.writer.write(b"X")
            await asyncio.sleep(0.1)

    dripper = asyncio.create_task(drip())
    started = time.monotonic()
    try:
        # A complete request meanwhile is served.
        async with (
            aiohttp.ClientSession() as http,
            http.get(f"http://127.0.0.1:{server.port}/") as r,
        ):
            assert (r.status, await r.text()) == (200, "ok")
        closed = await asyncio.gather(*(c.closed_within(3) for c in (silent, one_line, dripping)))
        elapsed = time.monotonic() - started
    finally:
        dripper.cancel()
        for client in (silent, one_line, dripping):
            client.close()
    assert closed == [True, True, True]
    assert 0.4 <= elapsed < 2.5, elapsed
    assert server.guard.closed["header_timeout"] == 3
    assert server.started == 1

    # Operators hear of it once a minute at most.
    with caplog.at_level(logging.WARNING, logger="bot.http_server"):
        server.guard._reported_at -= 60
        async with asyncio.timeout(3):
            while not caplog.records:  # noqa: ASYNC110
                await asyncio.sleep(0.05)
    (record,) = caplog.records
    assert "header_timeout 3" in record.getMessage()


async def test_at_the_cap_the_longest_waiting_connection_makes_room(
    start_server: StartServer,
) -> None:
    server = await start_server(max_connections=4)
    slow = []
    for count in range(1, 5):
        slow.append(await server.connect(b"GET / HTTP/1.1\r\n"))
        await server.settled(count)
    try:
        async with aiohttp.ClientSession() as http:
            # The server is full of slow clients: the oldest makes room.
            async with http.get(f"http://127.0.0.1:{server.port}/") as response:
                assert (response.status, await response.text()) == (200, "ok")
            assert await slow[0].closed_within(2)
            assert server.guard.closed["evicted"] == 1
            # The client's keep-alive connection has waited least: the next slow
            # client pushes out the next oldest slow one.
            slow.append(await server.connect(b"GET / HTTP/1.1\r\n"))
            assert await slow[1].closed_within(2)
            assert server.guard.closed["evicted"] == 2
            for client in slow[2:]:
                assert not await client.closed_within(0.2)
            # The finished request's connection is still there and serves another.
            async with http.get(f"http://127.0.0.1:{server.port}/") as response:
                assert response.status == 200
            assert server.guard.closed["evicted"] == 2
    finally:
        for client in slow:
            client.close()
    assert server.guard.open_connections <= 4


async def test_when_every_connection_is_busy_a_new_one_is_refused(
    start_server: StartServer,
) -> None:
    server = await start_server(max_connections=2)
    async with aiohttp.ClientSession() as http:

        async def fetch() -> str:
            async with http.get(f"http://127.0.0.1:{server.port}/wait") as response:
                return await response.text()

        busy = [asyncio.create_task(fetch()) for _ in range(2)]
        async with asyncio.timeout(5):
            while server.started < 2:  # noqa: ASYNC110
                await asyncio.sleep(0.01)
        extra = await server.connect(GET)
        try:
            assert await extra.closed_within(2)
        finally:
            extra.close()
        assert server.guard.closed == {"refused": 1}
        server.release.set()
        assert await asyncio.gather(*busy) == ["released", "released"]


async def test_a_stalled_body_is_cut_off_after_the_body_timeout(
    start_server: StartServer,
) -> None:
    server = await start_server(body_timeout=0.5)
    head = request_head("POST", "/body", {"Content-Length": "100"})
    stalled = await server.connect(head + b"0123456789")
    started = time.monotonic()
    try:
        assert await stalled.closed_within(3)
    finally:
        stalled.close()
    assert 0.4 <= time.monotonic() - started < 2.5
    assert server.guard.closed["body_timeout"] == 1
    # The handler's read ended with a clean HTTP error, not a hang or a reset.
    assert [type(e) for e in server.errors] == [web.HTTPRequestTimeout]

    # A handler that is slow after the whole body arrived is not cut off.
    async with aiohttp.ClientSession() as http:
        url = f"http://127.0.0.1:{server.port}/body?sleep=1.2"
        async with http.post(url, data=b"x" * 100) as response:
            assert (response.status, await response.text()) == (200, "100")
    assert server.guard.closed["body_timeout"] == 1


async def test_idle_keep_alive_connections_close_after_the_keepalive_timeout(
    start_server: StartServer,
) -> None:
    server = await start_server(header_timeout=0.3, keepalive_timeout=1.5)
    client = await server.connect(GET)
    try:
        assert (await read_response(client.reader)).status == 200
        # Idle longer than the header timeout: that one starts with the next byte.
        assert not await client.closed_within(0.7)
        client.writer.write(GET)
        assert (await read_response(client.reader)).status == 200
        idle_since = time.monotonic()
        assert await client.closed_within(3)
    finally:
        client.close()
    assert 1.2 <= time.monotonic() - idle_since < 3
    assert server.guard.closed == {"idle": 1}


async def test_a_pipelined_request_cut_short_gets_the_header_timeout(
    start_server: StartServer,
) -> None:
    server = await start_server(header_timeout=0.5, keepalive_timeout=30)
    client = await server.connect(request_head("GET", "/wait", {}))
    try:
        async with asyncio.timeout(5):
            while server.started < 1:  # noqa: ASYNC110
                await asyncio.sleep(0.01)
        client.writer.write(b"GET / HTTP/1.1\r\n")  # the next request, never finished
        await asyncio.sleep(0.1)
        server.release.set()
        assert (await read_response(client.reader)).status == 200
        ended = time.monotonic()
        assert await client.closed_within(3)
    finally:
        client.close()
    assert time.monotonic() - ended < 2
    assert server.guard.closed == {"header_timeout": 1}


async def test_the_cap_is_at_most_a_quarter_of_the_file_limit() -> None:
    soft, hard = resource.getrlimit(resource.RLIMIT_NOFILE)
    resource.setrlimit(resource.RLIMIT_NOFILE, (400, hard))
    try:
        assert connection_cap(256) == 100
        assert connection_cap(50) == 50
    finally:
        resource.setrlimit(resource.RLIMIT_NOFILE, (soft, hard))


def _accept_error(logger: logging.Logger) -> logging.LogRecord:
    return logger.makeRecord(
        "asyncio",
        logging.ERROR,
        __file__,
        1,
        "socket.accept() out of system resource\nsocket: <socket>",
        (),
        None,
    )


def test_accept_errors_are_logged_once_a_minute_with_a_count() -> None:
    logger = logging.getLogger("asyncio")
    flood = AcceptErrorFilter(interval=60)
    assert flood.filter(_accept_error(logger))
    assert not any(flood.filter(_accept_error(logger)) for _ in range(1000))
    other = logger.makeRecord("asyncio", logging.ERROR, __file__, 1, "other", (), None)
    assert flood.filter(other)

    flood.interval = 0  # a minute later
    record = _accept_error(logger)
    assert flood.filter(record)
    assert "1000 more like it" in record.getMessage()
    assert flood.suppressed == 0
