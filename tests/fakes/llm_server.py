"""A fake OpenAI-compatible (OpenRouter-flavoured) LLM server, over real HTTP.

Tests script what each request gets, then assert on what the server saw:

    async with FakeLLM() as llm:
        llm.script(Reply.error(429, retry_after=0.2), Reply(text="Hi there"))
        client = LLMClient(llm.base_url)
        ...
        assert llm.requests_count == 2
        assert llm.requests[0].body["stream_options"] == {"include_usage": True}

Replies are consumed one per chat request; once the script is empty every
request gets `FakeLLM.default`. A `Reply` with `text=None` echoes the last
user message ("Echo: ..."), so multi-turn tests can check what was sent.

Stream faults (`truncate_after`, `disconnect_after`, ...) count *delta*
chunks: reasoning deltas first, then content deltas. A fault "after N" fires
once N deltas have been sent, before the next one (or before the finish
chunk when N equals the number of deltas).

For manual runs (e.g. a terminal chat) start it on its own:

    python -m tests.fakes.llm_server --port 8001
"""

from __future__ import annotations

import argparse
import asyncio
import contextlib
import copy
import itertools
import json
import math
import re
import time
from collections import deque
from collections.abc import Callable
from dataclasses import dataclass, field
from typing import Any

from aiohttp import BodyPartReader, web

from tests.fakes.base import LocalServer

DEFAULT_TEXT = "Hello! How can I help?"
# What OpenAI's /audio/transcriptions takes, by the uploaded file's extension.
STT_FORMATS = frozenset({"flac", "m4a", "mp3", "mp4", "mpeg", "mpga", "oga", "ogg", "wav", "webm"})

# A few models in OpenRouter's /models format; prices are strings, per token.
DEFAULT_MODELS: list[dict[str, Any]] = [
    {
        "id": "openai/gpt-4o-mini",
        "name": "OpenAI: GPT-4o-mini",
        "context_length": 128000,
        "pricing": {"prompt": "0.00000015", "completion": "0.0000006"},
        "architecture": {"input_modalities": ["text", "image"], "output_modalities": ["text"]},
        "top_provider": {"max_completion_tokens": 16384},
    },
    {
        "id": "anthropic/claude-3.5-haiku",
        "name": "Anthropic: Claude 3.5 Haiku",
        "context_length": 200000,
        "pricing": {"prompt": "0.0000008", "completion": "0.000004"},
        "architecture": {"input_modalities": ["text", "image"], "output_modalities": ["text"]},
        "top_provider": {"max_completion_tokens": 8192},
    },
    {
        "id": "deepseek/deepseek-r1",
        "name": "DeepSeek: R1",
        "context_length": 163840,
        "pricing": {"prompt": "0.0000004", "completion": "0.000002"},
        "architecture": {"input_modalities": ["text"], "output_modalities": ["text"]},
        "top_provider": {"max_completion_tokens": 32768},
    },
    {
        "id": "meta-llama/llama-3.3-70b-instruct:free",
        "name": "Meta: Llama 3.3 70B Instruct (free)",
        "context_length": 131072,
        "pricing": {"prompt": "0", "completion": "0"},
        "architecture": {"input_modalities": ["text"], "output_modalities": ["text"]},
        "top_provider": {"max_completion_tokens": 4096},
    },
]


def openai_models(*ids: str, owned_by: str = "library") -> list[dict[str, Any]]:
    """`ids` in OpenAI's /models format, as OpenAI, Ollama or LM Studio list them: no
    names, prices or context sizes. Set `FakeLLM.models` to it for a generic server."""
    return [
        {"id": model_id, "object": "model", "created": 1700000000, "owned_by": owned_by}
        for model_id in ids
    ]


# Default error wording per status, close to OpenRouter's.
_ERROR_MESSAGES = {
    400: "Bad request",
    401: "No auth credentials found",
    402: "Insufficient credits. Add more using https://openrouter.ai/credits",
    403: "Forbidden",
    404: "No endpoints found for this model.",
    408: "Request timed out",
    429: "Rate limit exceeded: too many requests",
    500: "Internal server error",
    502: "Provider returned error",
    503: "Service temporarily unavailable",
}

_PIECE_RE = re.compile(r"\s*\S+\s*")
_POLL_SECONDS = 0.01
# The wait_* helpers give up after this long, so a broken test fails instead of hanging;
# wrap them in a shorter `asyncio.timeout` when needed.
WAIT_LIMIT = 5.0


def url_citation(url: str, title: str = "", content: str = "") -> dict[str, Any]:
    """One web-search source in OpenRouter's annotation shape."""
    return {
        "type": "url_citation",
        "url_citation": {
            "url": url,
            "title": title,
            "content": content,
            "start_index": 0,
            "end_index": 0,
        },
    }


@dataclass
class Reply:
    """What the fake answers to one chat request."""

    text: str | None = DEFAULT_TEXT  # None: echo the last user message
    chunks: list[str] | None = None  # explicit content deltas (overrides splitting `text`)
    chunk_delay: float = 0.0  # pause between deltas
    first_token_delay: float = 0.0  # pause before the first delta (after any comments)
    reasoning: list[str] = field(default_factory=list)  # reasoning deltas, sent before content
    reasoning_key: str = "reasoning"  # DeepSeek-style servers say "reasoning_content"
    comments: int = 0  # ": OPENROUTER PROCESSING" keep-alives before the first delta
    comment_interval: float = 0.0  # pause after each comment
    status: int = 200  # anything else answers a JSON error instead of a stream
    error_body: dict[str, Any] | None = None  # default: OpenRouter-style {"error": {...}}
    headers: dict[str, str] = field(default_factory=dict)  # extra headers, e.g. Retry-After
    error_in_stream_after: int | None = None  # send `stream_error` as a data chunk, then end
    stream_error: dict[str, Any] = field(
        default_factory=lambda: {
            "code": "server_error",
            "message": "Provider disconnected unexpectedly",
        }
    )
    truncate_after: int | None = None  # end the response cleanly, no finish_reason/[DONE]
    disconnect_after: int | None = None  # drop the TCP connection mid-body
    malformed_after: int | None = None  # send a data line that is not JSON, then carry on
    stall_after: int | None = None  # go silent for `stall_seconds`, then carry on
    stall_seconds: float = 0.0
    usage: dict[str, Any] | None = None  # default: computed from the request and deltas
    finish_reason: str = "stop"
    send_done: bool = True  # end with `data: [DONE]`
    # Seconds between `data: [DONE]` and the body's end (a proxy that holds the stream).
    hold_after_done: float = 0.0
    images: list[str] = field(default_factory=list)  # image URLs of a non-streamed answer
    # Web-search sources (`url_citation(...)`), streamed in a delta of their own after
    # the content, as OpenRouter's web plugin sends them; in `message` when not streamed.
    annotations: list[dict[str, Any]] = field(default_factory=list)

    @classmethod
    def error(
        cls,
        status: int,
        message: str | None = None,
        *,
        code: str | int | None = None,
        retry_after: float | str | None = None,
    ) -> Reply:
        """An HTTP error answer in OpenRouter's shape."""
        body: dict[str, Any] = {
            "error": {
                "code": status if code is None else code,
                "message": message or _ERROR_MESSAGES.get(status, f"HTTP {status}"),
                "metadata": {},
            }
        }
        headers = {"Retry-After": str(retry_after)} if retry_after is not None else {}
        return cls(status=status, error_body=body, headers=headers)


@dataclass
class Transcription:
    """What the fake answers to one `POST /audio/transcriptions`."""

    text: str = "What is the capital of France?"
    status: int = 200  # anything else answers an OpenAI-style JSON error
    delay: float = 0.0  # pause before answering (a client timeout below it "times out")


@dataclass
class RecordedTranscription:
    headers: dict[str, str]  # lower-case names
    model: str | None
    filename: str | None
    content_type: str | None
    data: bytes
    fields: dict[str, str]
    status: int = 0  # what it was answered


@dataclass
class RecordedRequest:
    """One chat request the fake received, and how answering it went."""

    method: str
    path: str
    headers: dict[str, str]  # lower-case names
    body: dict[str, Any]
    reply: Reply
    received_at: float = field(default_factory=time.monotonic)
    chunks_sent: int = 0  # delta chunks written
    finished: bool = False  # the handler is done, whatever the outcome
    client_disconnected: bool = False  # the client went away before the answer ended
    peer: Any = None  # the client's (host, port): one per TCP connection
    _done: asyncio.Event = field(default_factory=asyncio.Event, init=False, repr=False)

    async def wait_finished(self) -> RecordedRequest:
        """Wait until the server is done with this request (answered or abandoned)."""
        async with asyncio.timeout(WAIT_LIMIT):
            await self._done.wait()
        return self


class _ClientGone(Exception):
    """The client closed the connection (or the server is stopping) mid-answer."""


class FakeLLM(LocalServer):
    """The server. Use `async with FakeLLM() as llm:` or `start()` / `stop()`."""

    def __init__(
        self,
        *,
        host: str = "127.0.0.1",
        port: int = 0,
        default: Reply | None = None,
        models: list[dict[str, Any]] | None = None,
    ) -> None:
        super().__init__(host, port)
        self.default = default if default is not None else Reply()
        self.models = models if models is not None else copy.deepcopy(DEFAULT_MODELS)
        self.models_status = 200  # set to e.g. 500 to make GET /models fail
        self.models_requests = 0
        # When set, GET /models answers 401 without `Authorization: Bearer <this>` (OpenAI).
        self.models_key: str | None = None
        self.requests: list[RecordedRequest] = []
        self._script: deque[Reply] = deque()
        self._stopping = False
        self._ids = itertools.count(1)
        self._arrived = asyncio.Event()
        # Speech to text, OpenAI's shape. With `stt_key` set, a request without
        # `Authorization: Bearer <stt_key>` gets 401.
        self.stt_key: str | None = None
        self.stt_models: set[str] = {"whisper-1"}
        self.transcription_default = Transcription()
        self.transcriptions: list[RecordedTranscription] = []
        self._stt_script: deque[Transcription] = deque()

    # -- lifecycle --------------------------------------------------------------

    def routes(self, app: web.Application) -> None:
        app.router.add_post("/v1/chat/completions", self._chat)
        app.router.add_get("/v1/models", self._models)
        app.router.add_post("/v1/audio/transcriptions", self._transcribe)

    async def start(self) -> None:
        await super().start()
        self._stopping = False

    async def stop(self) -> None:
        self._stopping = True
        await super().stop()

    # -- scripting and inspection ----------------------------------------------

    @property
    def base_url(self) -> str:
        """What an OpenAI-compatible client takes as base URL."""
        return f"{self.url}/v1"

    @property
    def requests_count(self) -> int:
        return len(self.requests)

    def script(self, *replies: Reply) -> None:
        """Queue replies for the next chat requests, one each, in order."""
        self._script.extend(replies)

    def script_transcriptions(self, *replies: Transcription) -> None:
        """Queue answers for the next transcription requests, one each, in order."""
        self._stt_script.extend(replies)

    def reset(self) -> None:
        """Forget queued replies and recorded requests."""
        self._script.clear()
        self.requests.clear()
        self.models_requests = 0

    async def wait_for_requests(self, count: int) -> list[RecordedRequest]:
        """Wait until at least `count` chat requests arrived."""
        async with asyncio.timeout(WAIT_LIMIT):
            while len(self.requests) < count:
                self._arrived.clear()
                await self._arrived.wait()
        return self.requests

    # -- handlers ---------------------------------------------------------------

    async def _models(self, request: web.Request) -> web.Response:
        self.models_requests += 1
        if self.models_key is not None and (
            request.headers.get("Authorization") != f"Bearer {self.models_key}"
        ):
            error = Reply.error(401)
            return web.json_response(error.error_body, status=401)
        if self.models_status != 200:
            error = Reply.error(self.models_status)
            return web.json_response(error.error_body, status=self.models_status)
        return web.json_response({"object": "list", "data": self.models})

    async def _transcribe(self, request: web.Request) -> web.Response:
        """OpenAI's POST /audio/transcriptions: multipart with `file` and `model`."""

        def error(status: int, message: str, kind: str = "invalid_request_error") -> web.Response:
            body = {"error": {"message": message, "type": kind, "param": None, "code": None}}
            return web.json_response(body, status=status)

        record = RecordedTranscription(
            headers={k.lower(): v for k, v in request.headers.items()},
            model=None,
            filename=None,
            content_type=None,
            data=b"",
            fields={},
        )
        self.transcriptions.append(record)
        response = await self._transcription(request, record, error)
        record.status = response.status
        return response

    async def _transcription(
        self,
        request: web.Request,
        record: RecordedTranscription,
        error: Callable[..., web.Response],
    ) -> web.Response:
        if self.stt_key is not None and (
            request.headers.get("Authorization") != f"Bearer {self.stt_key}"
        ):
            return error(401, "Incorrect API key provided.")
        if request.content_type != "multipart/form-data":
            return error(400, "Content-Type must be multipart/form-data")
        reader = await request.multipart()
        while (part := await reader.next()) is not None:
            if not isinstance(part, BodyPartReader):
                continue
            if part.name == "file":
                record.filename = part.filename
                record.content_type = part.headers.get("Content-Type")
                record.data = bytes(await part.read())
            elif part.name:
                record.fields[part.name] = await part.text()
        record.model = record.fields.get("model")
        if not record.data or not record.filename:
            return error(400, "Could not parse multipart form: no file")
        extension = record.filename.rsplit(".", 1)[-1].lower() if "." in record.filename else ""
        if extension not in STT_FORMATS:
            formats = ", ".join(f"'{f}'" for f in sorted(STT_FORMATS))
            return error(400, f"Invalid file format. Supported formats: [{formats}]")
        if record.model is None:
            return error(400, "you must provide a model parameter")
        if record.model not in self.stt_models:
            return error(400, f"invalid model ID {record.model!r}")
        reply = self._stt_script.popleft() if self._stt_script else self.transcription_default
        if reply.delay:
            await asyncio.sleep(reply.delay)
        if reply.status != 200:
            return error(
                reply.status, "The server had an error processing your request.", "server_error"
            )
        return web.json_response({"text": reply.text})

    async def _chat(self, request: web.Request) -> web.StreamResponse:
        try:
            body: Any = await request.json()
        except ValueError:
            return web.json_response(
                {"error": {"code": 400, "message": "Body is not JSON"}}, status=400
            )
        if not isinstance(body, dict):
            body = {}
        reply = self._script.popleft() if self._script else self.default
        record = RecordedRequest(
            method=request.method,
            path=request.path,
            headers={k.lower(): v for k, v in request.headers.items()},
            body=body,
            reply=reply,
            peer=request.transport.get_extra_info("peername") if request.transport else None,
        )
        self.requests.append(record)
        self._arrived.set()
        try:
            if reply.status != 200:
                error_body = reply.error_body or Reply.error(reply.status).error_body
                return web.json_response(error_body, status=reply.status, headers=reply.headers)
            if not body.get("stream"):
                return web.json_response(self._completion(body, reply), headers=reply.headers)
            return await self._stream(request, record)
        finally:
            record.finished = True
            record._done.set()

    async def _stream(self, request: web.Request, record: RecordedRequest) -> web.StreamResponse:
        reply = record.reply
        response = web.StreamResponse(
            headers={"Content-Type": "text/event-stream", "Cache-Control": "no-cache"}
        )
        response.headers.update(reply.headers)
        await response.prepare(request)
        deltas: list[dict[str, Any]] = [{reply.reasoning_key: r} for r in reply.reasoning]
        deltas += [{"content": c} for c in _content_chunks(reply, record.body)]
        if reply.annotations:
            deltas.append({"content": "", "annotations": reply.annotations})
        chunk_id = f"gen-fake-{next(self._ids)}"
        model = str(record.body.get("model", "fake/model"))

        def event(data: dict[str, Any]) -> bytes:
            return f"data: {json.dumps(data)}\n\n".encode()

        def chunk(choices: list[dict[str, Any]], **extra: Any) -> bytes:
            data = {"id": chunk_id, "object": "chat.completion.chunk", "created": int(time.time())}
            return event(
                {**data, "model": model, "provider": "FakeLLM", "choices": choices, **extra}
            )

        try:
            for _ in range(reply.comments):
                await response.write(b": OPENROUTER PROCESSING\n\n")
                await self._pause(request, reply.comment_interval)
            await self._pause(request, reply.first_token_delay)
            for index in range(len(deltas) + 1):
                if index == reply.error_in_stream_after:
                    choice = {"index": 0, "delta": {"content": ""}, "finish_reason": "error"}
                    await response.write(chunk([choice], error=reply.stream_error))
                    return response
                if index == reply.truncate_after:
                    return response  # aiohttp ends the body cleanly
                if index == reply.disconnect_after:
                    _drop_connection(request)
                    return response
                if index == reply.malformed_after:
                    await response.write(b'data: {"choices": [{"delta": {"content": "brok\n\n')
                if index == reply.stall_after:
                    await self._pause(request, reply.stall_seconds)
                if index == len(deltas):
                    break
                if index > 0:
                    await self._pause(request, reply.chunk_delay)
                delta = {"role": "assistant", **deltas[index]}
                choice = {"index": 0, "delta": delta, "finish_reason": None}
                await response.write(chunk([choice]))
                record.chunks_sent += 1
            finish = {"index": 0, "delta": {}, "finish_reason": reply.finish_reason}
            await response.write(chunk([finish]))
            if (record.body.get("stream_options") or {}).get("include_usage"):
                await response.write(chunk([], usage=self._usage(record.body, reply, len(deltas))))
            if reply.send_done:
                await response.write(b"data: [DONE]\n\n")
                await self._pause(request, reply.hold_after_done)
        except (_ClientGone, ConnectionError):
            record.client_disconnected = True
        return response

    # -- pieces -----------------------------------------------------------------

    async def _pause(self, request: web.Request, seconds: float) -> None:
        """Sleep, noticing promptly when the client leaves or the server stops."""
        loop = asyncio.get_running_loop()
        end = loop.time() + seconds
        while True:
            transport = request.transport
            if self._stopping or transport is None or transport.is_closing():
                raise _ClientGone
            remaining = end - loop.time()
            if remaining <= 0:
                return
            await asyncio.sleep(min(remaining, _POLL_SECONDS))

    def _completion(self, body: dict[str, Any], reply: Reply) -> dict[str, Any]:
        """A non-streamed chat.completion, for callers that do not stream."""
        pieces = _content_chunks(reply, body)
        message: dict[str, Any] = {"role": "assistant", "content": "".join(pieces)}
        if reply.reasoning:
            message["reasoning"] = "".join(reply.reasoning)
        if reply.annotations:
            message["annotations"] = reply.annotations
        if reply.images:
            message["images"] = [
                {"type": "image_url", "image_url": {"url": url}} for url in reply.images
            ]
        return {
            "id": f"gen-fake-{next(self._ids)}",
            "object": "chat.completion",
            "created": int(time.time()),
            "model": body.get("model", "fake/model"),
            "choices": [{"index": 0, "message": message, "finish_reason": reply.finish_reason}],
            "usage": self._usage(body, reply, len(pieces) + len(reply.reasoning)),
        }

    def _usage(self, body: dict[str, Any], reply: Reply, completion_tokens: int) -> dict[str, Any]:
        if reply.usage is not None:
            return reply.usage
        prompt_tokens = max(1, math.ceil(len(json.dumps(body.get("messages", []))) / 4))
        model = body.get("model")
        # OpenAI-format lists (openai_models) have no prices: no cost then.
        pricing = next((m.get("pricing") for m in self.models if m["id"] == model), None)
        cost = 0.0
        if pricing is not None:
            cost = prompt_tokens * float(pricing["prompt"])
            cost += completion_tokens * float(pricing["completion"])
        return {
            "prompt_tokens": prompt_tokens,
            "completion_tokens": completion_tokens,
            "total_tokens": prompt_tokens + completion_tokens,
            "cost": cost,
        }


def _content_chunks(reply: Reply, body: dict[str, Any]) -> list[str]:
    if reply.chunks is not None:
        return list(reply.chunks)
    text = reply.text if reply.text is not None else f"Echo: {_last_user_text(body)}"
    pieces = _PIECE_RE.findall(text)
    return pieces if "".join(pieces) == text else [text]


def _last_user_text(body: dict[str, Any]) -> str:
    for message in reversed(body.get("messages") or []):
        if isinstance(message, dict) and message.get("role") == "user":
            content = message.get("content")
            if isinstance(content, list):  # multimodal parts: keep the text ones
                return " ".join(
                    str(p.get("text", "")) for p in content if isinstance(p, dict)
                ).strip()
            return str(content)
    return ""


def _drop_connection(request: web.Request) -> None:
    """Close the socket mid-body: the client sees an incomplete chunked response."""
    if request.transport is not None:
        request.transport.close()


async def _serve(host: str, port: int, reply: Reply) -> None:
    async with FakeLLM(host=host, port=port, default=reply) as llm:
        print(f"Fake LLM listening; base URL: {llm.base_url}", flush=True)
        await asyncio.Event().wait()  # until Ctrl-C


def main() -> None:
    parser = argparse.ArgumentParser(description="Run the fake OpenAI-compatible LLM server.")
    parser.add_argument("--host", default="127.0.0.1")
    parser.add_argument("--port", type=int, default=8001)
    parser.add_argument("--text", default=None, help="fixed answer (default: echo the user)")
    parser.add_argument("--chunk-delay", type=float, default=0.05, help="seconds between deltas")
    parser.add_argument("--first-token-delay", type=float, default=0.3)
    parser.add_argument("--reasoning", action="store_true", help="send a few reasoning deltas")
    args = parser.parse_args()
    reply = Reply(
        text=args.text,
        chunk_delay=args.chunk_delay,
        first_token_delay=args.first_token_delay,
        reasoning=["Let me think", " about this."] if args.reasoning else [],
    )
    with contextlib.suppress(KeyboardInterrupt):
        asyncio.run(_serve(args.host, args.port, reply))


if __name__ == "__main__":
    main()
