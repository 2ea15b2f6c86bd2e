"""Benchmark: LLM answers over TLS on a kept connection against a new connection
for each answer, in one run.

The fake LLM (tests/fakes/llm_server.py) serves HTTPS on 127.0.0.1 with a
self-signed certificate made here by the `openssl` command. Both arms use the
production LLMClient; they differ only in the pool: `kept` keeps idle connections
(as many as the client does), `new` keeps none, so every answer pays a TCP and TLS
handshake, which is what happened while a stream's body was closed before its end.
Printed per arm: the time from the request to the first token, CPU per answer
(client and server share the process, so both ends of each handshake count) and
the connections the server saw.

    python -m bench.llm_connections [--answers 200] [--rounds 3]

Not a test: figures vary with the machine; compare the ratios. On 127.0.0.1 the
round trip is near zero; over a network each new connection also waits about two
round trips (TCP, then TLS 1.3) before the request can be sent.
"""

from __future__ import annotations

import argparse
import asyncio
import ssl
import statistics
import subprocess
import tempfile
import time
from dataclasses import dataclass
from pathlib import Path

import httpx
from aiohttp import web

from bench.telegram import percentile
from core.llm.client import _KEEP_IDLE, LLMClient
from tests.fakes.llm_server import FakeLLM, Reply

MODEL = "openai/gpt-4o-mini"
PROMPT = [{"role": "user", "content": "Hello"}]
CHUNKS = [f"word{i} " for i in range(20)]


@dataclass(frozen=True)
class Arm:
    first_token_ms: list[float]
    cpu_ms: float  # per answer
    connections: int


def make_certificate(directory: Path) -> tuple[Path, Path]:
    cert, key = directory / "cert.pem", directory / "key.pem"
    subprocess.run(
        [
            "openssl", "req", "-x509", "-newkey", "ec", "-pkeyopt", "ec_paramgen_curve:P-256",
            "-keyout", str(key), "-out", str(cert), "-days", "1", "-nodes",
            "-subj", "/CN=127.0.0.1", "-addext", "subjectAltName=IP:127.0.0.1",
        ],
        check=True,
        capture_output=True,
    )  # fmt: skip
    return cert, key


async def answers(
    fake: FakeLLM, url: str, verify: ssl.SSLContext, keep_idle: int, count: int
) -> Arm:
    limits = httpx.Limits(max_connections=None, max_keepalive_connections=keep_idle)
    fake.requests.clear()
    async with httpx.AsyncClient(verify=verify, limits=limits) as http:
        client = LLMClient(url, http=http)
        firsts: list[float] = []
        cpu = time.process_time()
        for _ in range(count):
            started = time.perf_counter()
            first: float | None = None
            async for chunk in client.stream_chat(MODEL, PROMPT):
                if first is None and chunk.text:
                    first = time.perf_counter() - started
            assert first is not None
            firsts.append(first * 1000)
        cpu = time.process_time() - cpu
    return Arm(firsts, 1000 * cpu / count, len({request.peer for request in fake.requests}))


def summary(arm: Arm) -> str:
    firsts = arm.first_token_ms
    return (
        f"first token median {statistics.median(firsts):6.2f} ms, "
        f"p95 {percentile(firsts, 0.95):6.2f} ms; "
        f"CPU {arm.cpu_ms:5.2f} ms/answer; {arm.connections} connection(s)"
    )


async def main() -> None:
    parser = argparse.ArgumentParser()
    parser.add_argument("--answers", type=int, default=200)
    parser.add_argument("--rounds", type=int, default=3)
    args = parser.parse_args()

    with tempfile.TemporaryDirectory() as workdir:
        cert, key = make_certificate(Path(workdir))
        fake = FakeLLM(default=Reply(chunks=CHUNKS))
        app = fake.application()
        fake.routes(app)
        runner = web.AppRunner(app, access_log=None)
        await runner.setup()
        server_tls = ssl.create_default_context(ssl.Purpose.CLIENT_AUTH)
        server_tls.load_cert_chain(cert, key)
        site = web.TCPSite(runner, "127.0.0.1", 0, ssl_context=server_tls)
        await site.start()
        port = runner.addresses[0][1]
        url = f"https://127.0.0.1:{port}/v1"
        verify = ssl.create_default_context(cafile=str(cert))
        try:
            await answers(fake, url, verify, _KEEP_IDLE, 20)  # warm-up
            print(f"{args.answers} answers in a row over TLS on 127.0.0.1, {args.rounds} rounds")
            for index in range(args.rounds):
                kept = await answers(fake, url, verify, _KEEP_IDLE, args.answers)
                new = await answers(fake, url, verify, 0, args.answers)
                ratio = statistics.median(kept.first_token_ms) / statistics.median(
                    new.first_token_ms
                )
                print(f"round {index + 1}")
                print(f"   kept connection  {summary(kept)}")
                print(f"   new connection   {summary(new)}")
                print(
                    f"   kept/new         first token x{ratio:.2f}, "
                    f"CPU x{kept.cpu_ms / new.cpu_ms:.2f}"
                )
        finally:
            await runner.cleanup()


if __name__ == "__main__":
    asyncio.run(main())
