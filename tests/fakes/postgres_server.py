"""A PostgreSQL server that refuses every login, over real TCP.

The test server trusts every connection, so a wrong password can only be shown with a
server that asks for one. This one speaks just enough of the frontend/backend protocol
(v3) for a real client to get there: it declines SSL and GSS encryption, asks for a
cleartext password, and answers whatever arrives with a FATAL error, by default the
one PostgreSQL sends for a wrong password:

    async with RefusingPostgres() as pg:
        url = f"postgresql+asyncpg://ann:secret@127.0.0.1:{pg.port}/oneai"
        ...
        assert pg.passwords == ["secret"]
"""

from __future__ import annotations

import asyncio
import contextlib
import struct
from types import TracebackType
from typing import Self

_SSL_REQUEST = 80877103
_GSS_REQUEST = 80877104
_PROTOCOL_3 = 196608
_CLEARTEXT_PASSWORD = 3


def _message(kind: bytes, body: bytes) -> bytes:
    return kind + struct.pack("!I", len(body) + 4) + body


def error_response(sqlstate: str, text: str) -> bytes:
    fields = [b"S" + b"FATAL", b"V" + b"FATAL", b"C" + sqlstate.encode(), b"M" + text.encode()]
    return _message(b"E", b"".join(field + b"\0" for field in fields) + b"\0")


class RefusingPostgres:
    def __init__(
        self,
        *,
        sqlstate: str = "28P01",
        message: str = 'password authentication failed for user "{user}"',
    ) -> None:
        self.sqlstate = sqlstate
        self.message = message
        self.port = 0
        self.users: list[str] = []  # who tried to log in
        self.passwords: list[str] = []  # what they sent
        self._server: asyncio.Server | None = None

    async def __aenter__(self) -> Self:
        self._server = await asyncio.start_server(self._serve, "127.0.0.1", 0)
        self.port = self._server.sockets[0].getsockname()[1]
        return self

    async def __aexit__(
        self,
        exc_type: type[BaseException] | None,
        exc: BaseException | None,
        tb: TracebackType | None,
    ) -> None:
        if self._server is not None:
            self._server.close()
            await self._server.wait_closed()

    async def _serve(self, reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        with contextlib.suppress(asyncio.IncompleteReadError, ConnectionError):
            while True:
                (length,) = struct.unpack("!I", await reader.readexactly(4))
                body = await reader.readexactly(length - 4)
                (code,) = struct.unpack("!I", body[:4])
                if code in (_SSL_REQUEST, _GSS_REQUEST):
                    writer.write(b"N")  # no encryption: go on in plain text
                    continue
                if code != _PROTOCOL_3:
                    return
                break
            parts = body[4:].split(b"\0")
            params = dict(zip(parts[0::2], parts[1::2], strict=False))
            user = params.get(b"user", b"").decode()
            self.users.append(user)
            writer.write(_message(b"R", struct.pack("!I", _CLEARTEXT_PASSWORD)))
            await writer.drain()
            kind = await reader.readexactly(1)
            (length,) = struct.unpack("!I", await reader.readexactly(4))
            password = await reader.readexactly(length - 4)
            if kind == b"p":
                self.passwords.append(password.rstrip(b"\0").decode())
            writer.write(error_response(self.sqlstate, self.message.format(user=user)))
            await writer.drain()
        writer.close()
        with contextlib.suppress(ConnectionError):
            await writer.wait_closed()
