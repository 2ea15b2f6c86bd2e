"""Several `oneai run` processes serving one Telegram bot in webhook mode, driven the
way Telegram and people drive them: a load balancer spreads the fake Bot API's
updates over the processes' webhooks, and simulated people each write their next
message once the previous one is answered. Shared by the scale-out test and its
benchmark.
"""

from __future__ import annotations

import asyncio
import contextlib
import itertools
import random
import time
import uuid
from collections import Counter
from collections.abc import AsyncIterator, Awaitable, Callable, Sequence
from dataclasses import dataclass, field
from pathlib import Path

import aiohttp
from sqlalchemy import func, select, text
from sqlalchemy.engine import make_url

from core.db.engine import Database, null_pool_engine
from core.db.migrate import upgrade_head_async
from core.db.models import Base, ChatMessage, Identity
from core.db.models.conversations import MessageStatus
from core.quotas import QuotaService
from core.tiers import QuotaKey, Tier
from tests.fakes.llm_server import FakeLLM, Reply
from tests.fakes.telegram_server import FakeTelegram, StoredMessage
from tests.support.bot_process import BotProcess, bot_process, bot_variables

WEBHOOK_URL = "https://bot.example.test"
WEBHOOK_SECRET = "scale-out-secret"
CUT = "⚠️ This answer was cut off by a restart. Press 🔄 to try again."
EDIT_INTERVAL = 0.5
# Telegram's own per-chat limit, at the bot's edit interval as in the other
# process tests: a bot that keeps to its interval never sees a "chat" 429.
PER_CHAT_INTERVAL = 0.5
GLOBAL_PER_SECOND = 30  # Telegram's global budget for sends and edits
MAX_CONNECTIONS = 40  # webhook POSTs in flight at once, as setWebhook's max_connections
REDELIVERY_PAUSE = 0.5  # Telegram retries a failed webhook POST after a short pause
SILENCE_LIMIT = 60.0  # what a person waits for a first word before writing again
WORDS = ("alpha", "bravo", "charlie", "delta", "echo", "foxtrot", "golf", "hotel")


def random_token() -> str:
    """A bot of its own: with Redis, what one run's bot remembered (update ids it
    took, answers it streamed) must not meet another's."""
    return f"{random.randint(10**8, 10**9 - 1)}:AAFakeTelegramTokenForTests_0123456789"


def chunked_echo(seconds: float, words: int) -> Reply:
    """The LLM echoes the prompt ("Echo: <prompt>") word by word over about `seconds`,
    so an answer streams in several edits."""
    return Reply(text=None, chunk_delay=seconds / (words + 1))


def hook(bot: BotProcess) -> str:
    return f"http://127.0.0.1:{bot.port}/telegram/webhook"


def variables(tg: FakeTelegram, llm: FakeLLM, database_url: str, redis_url: str) -> dict[str, str]:
    return {
        **bot_variables(tg, llm, database_url),
        "TELEGRAM_EDIT_INTERVAL": str(EDIT_INTERVAL),
        "TELEGRAM_WEBHOOK_URL": WEBHOOK_URL,
        "TELEGRAM_WEBHOOK_SECRET": WEBHOOK_SECRET,
        "REDIS_URL": redis_url,
    }


async def healthy(bot: BotProcess, within: float = 30, path: str = "/health") -> None:
    """Until the process answers `path`: /health (its HTTP server and webhook route
    are up) or /readyz (also connected: the webhook is set)."""

    async def ok() -> bool:
        try:
            async with (
                aiohttp.ClientSession() as http,
                http.get(f"http://127.0.0.1:{bot.port}{path}") as response,
            ):
                return response.status == 200
        except aiohttp.ClientError:
            return False

    async with asyncio.timeout(within):
        while not await ok():
            assert bot.process.returncode is None, bot.output
            await asyncio.sleep(0.1)


@contextlib.asynccontextmanager
async def bot_processes(
    cwd: Path, count: int, env: dict[str, str]
) -> AsyncIterator[list[BotProcess]]:
    """`count` processes with the same variables, each up and answering /health."""
    async with contextlib.AsyncExitStack() as stack:
        bots = [await stack.enter_async_context(bot_process(cwd, env)) for _ in range(count)]
        await asyncio.gather(*(healthy(bot) for bot in bots))
        yield bots


# -- the load balancer -------------------------------------------------------------


@dataclass
class Balancer:
    """Takes the fake's pending updates as people produce them and POSTs each to the
    live webhooks in turn, up to MAX_CONNECTIONS at once. A POST that fails
    (refused, reset, timed out, not 2xx) goes again to the next live process after
    REDELIVERY_PAUSE, as Telegram retries a webhook until it is confirmed."""

    tg: FakeTelegram
    urls: list[str]
    delivered: int = 0
    failed_posts: int = 0
    _live: list[str] = field(default_factory=list)
    _taken: set[int] = field(default_factory=set)
    _turn: itertools.count[int] = field(default_factory=itertools.count)
    _tasks: set[asyncio.Task[None]] = field(default_factory=set)

    def __post_init__(self) -> None:
        self._live = list(self.urls)
        self._slots = asyncio.Semaphore(MAX_CONNECTIONS)

    def drop(self, url: str) -> None:
        """The process behind `url` is gone: nothing more is sent there."""
        self._live.remove(url)

    def _next(self, not_this: str | None = None) -> str:
        live = [u for u in self._live if u != not_this] or self._live
        return live[next(self._turn) % len(live)]

    async def run(self) -> None:
        try:
            while True:
                fresh = [u for u in self.tg.pending_updates if u["update_id"] not in self._taken]
                for update in fresh:
                    self._taken.add(update["update_id"])
                    task = asyncio.create_task(self._deliver(update))
                    self._tasks.add(task)
                    task.add_done_callback(self._tasks.discard)
                with contextlib.suppress(TimeoutError):
                    await self.tg.wait_for(
                        lambda: any(
                            u["update_id"] not in self._taken for u in self.tg.pending_updates
                        ),
                        1,
                    )
        finally:
            for task in list(self._tasks):
                task.cancel()
            await asyncio.gather(*self._tasks, return_exceptions=True)

    async def _deliver(self, update: dict[str, object]) -> None:
        url = self._next()
        while True:
            async with self._slots:
                try:
                    result = await self.tg.deliver_webhook(
                        url, update, secret_token=WEBHOOK_SECRET, timeout=10
                    )
                    if 200 <= result.status < 300:
                        self.delivered += 1
                        return
                except (aiohttp.ClientError, OSError, TimeoutError):
                    pass
            self.failed_posts += 1
            await asyncio.sleep(REDELIVERY_PAUSE)
            url = self._next(not_this=url)


# -- people --------------------------------------------------------------------------


@dataclass
class Prompt:
    """One message a person sent (a resend of the same words is another Prompt)."""

    chat: int
    text: str
    message_id: int
    sent_at: float
    first_word: float | None = None  # seconds until the bot's first message after it
    outcome: str = "waiting"  # "answered", "cut", "silent" (nothing for SILENCE_LIMIT s)
    done_at: float | None = None


@dataclass
class Person:
    chat: int
    prompts: list[Prompt] = field(default_factory=list)
    answered: int = 0


def bot_messages(tg: FakeTelegram, chat: int) -> list[StoredMessage]:
    return [m for m in tg.messages(chat, from_bot=True) if not m.deleted]


def _has_regenerate(message: StoredMessage) -> bool:
    return any(str(b.get("callback_data", "")).startswith("a:r:") for b in message.buttons)


def _is_cut_note(message: StoredMessage) -> bool:
    return (message.text or "").endswith(CUT)


def complete_answers(tg: FakeTelegram, chat: int) -> Counter[str]:
    """Final answers shown in the chat, by the prompt they echo. An answer that was
    cut keeps 🔄 and may hold every word, but a cut note replies to it (or ends it):
    it is not counted."""
    messages = bot_messages(tg, chat)
    cut_targets = {m.reply_to for m in messages if _is_cut_note(m) and m.reply_to is not None}
    found: Counter[str] = Counter()
    for message in messages:
        text = message.text or ""
        if (
            text.startswith("Echo: ")
            and _has_regenerate(message)
            and not _is_cut_note(message)
            and message.message_id not in cut_targets
        ):
            found[text.removeprefix("Echo: ")] += 1
    return found


def _progress(tg: FakeTelegram, prompt: Prompt) -> str | None:
    """'answered' or 'cut' once the bot has said so after `prompt`; notes the first word."""
    after = [m for m in bot_messages(tg, prompt.chat) if m.message_id > prompt.message_id]
    if after and prompt.first_word is None:
        prompt.first_word = time.monotonic() - prompt.sent_at
    for message in after:
        if _is_cut_note(message):
            return "cut"
    for message in after:
        if message.text == f"Echo: {prompt.text}" and _has_regenerate(message):
            return "answered"
    return None


async def _outcome(tg: FakeTelegram, prompt: Prompt, within: float) -> str:
    deadline = prompt.sent_at + within
    while True:
        with contextlib.suppress(TimeoutError):
            return await tg.wait_for(lambda: _progress(tg, prompt), 1)
        if prompt.first_word is None and time.monotonic() - prompt.sent_at > SILENCE_LIMIT:
            return "silent"
        if time.monotonic() > deadline:
            return "stuck"


async def person(
    tg: FakeTelegram,
    who: Person,
    messages: int,
    *,
    pause: float = 0.0,
    answer_within: float = 120,
    on_answer: Callable[[], object] | None = None,
) -> None:
    """`who` writes `messages` messages, each once the previous one is answered. A cut
    answer (its note says so) or SILENCE_LIMIT s without a word makes them send the
    same words again, as a person would; an answer that never ends stops them."""
    await asyncio.sleep(pause)
    for index in range(messages):
        words = " ".join(WORDS[(who.chat + index + i) % len(WORDS)] for i in range(6))
        text = f"p{who.chat} m{index} {words}"
        while True:
            message_id = tg.send_text(who.chat, text)
            prompt = Prompt(who.chat, text, message_id, time.monotonic())
            who.prompts.append(prompt)
            prompt.outcome = await _outcome(tg, prompt, answer_within)
            prompt.done_at = time.monotonic()
            if prompt.outcome == "answered":
                who.answered += 1
                if on_answer is not None:
                    on_answer()
                break
            if prompt.outcome == "stuck":
                return


# -- watching the database -----------------------------------------------------------


@dataclass
class StreamingSampler:
    """Samples, every `every` s, the answers streaming per conversation (rows of
    chat_messages with status streaming), keeping the most seen at once."""

    db: Database
    every: float = 0.1
    most: int = 0
    samples: int = 0
    last_total: int = 0  # answers streaming at the last sample
    conversations_over_one: set[object] = field(default_factory=set)

    async def run(self) -> None:
        query = (
            select(ChatMessage.conversation_id, func.count())
            .where(ChatMessage.status == MessageStatus.STREAMING)
            .group_by(ChatMessage.conversation_id)
        )
        while True:
            async with self.db.read() as session:
                rows = (await session.execute(query)).all()
            self.samples += 1
            self.last_total = sum(int(count) for _, count in rows)
            for conversation, count in rows:
                self.most = max(self.most, int(count))
                if count > 1:
                    self.conversations_over_one.add(conversation)
            await asyncio.sleep(self.every)


async def used_small(db: Database, chat: int) -> int:
    """The small-message units `chat`'s person has used this period."""
    async with db.read() as session:
        user_id = await session.scalar(
            select(Identity.user_id).where(
                Identity.platform == "telegram", Identity.platform_user_id == str(chat)
            )
        )
    if user_id is None:
        return 0
    report = {s.key: s for s in await QuotaService(db).report(user_id, Tier.FREE)}
    return report[QuotaKey.SMALL].used


async def rows_about(db: Database, chat: int, texts: set[str]) -> list[str]:
    """`chat`'s person's chat_messages rows (role, status, quota unit, text) that hold
    one of `texts` or an answer echoing one (or its start): what the database says
    of prompts the chat does not show answered."""
    async with db.read() as session:
        rows = (
            await session.execute(
                select(
                    ChatMessage.role,
                    ChatMessage.status,
                    ChatMessage.quota_key,
                    ChatMessage.content,
                )
                .join(Identity, Identity.user_id == ChatMessage.user_id)
                .where(Identity.platform == "telegram", Identity.platform_user_id == str(chat))
                .order_by(ChatMessage.sequence_number, ChatMessage.revision_number)
            )
        ).all()
    return [
        f"{role} {status} unit={quota} {content[:60]!r}"
        for role, status, quota, content in rows
        if any(t.startswith(content.removeprefix("Echo: ")) for t in texts)
    ]


# -- one run -------------------------------------------------------------------------


@dataclass
class Run:
    """What a load run saw."""

    people: list[Person]
    seconds: float
    balancer: Balancer
    sampler: StreamingSampler
    floods: Counter[str]
    busiest_second: int
    set_webhooks: int

    @property
    def prompts(self) -> list[Prompt]:
        return [p for who in self.people for p in who.prompts]

    @property
    def answers(self) -> int:
        return sum(who.answered for who in self.people)

    @property
    def answers_per_second(self) -> float:
        return self.answers / self.seconds if self.seconds else 0.0

    def outcomes(self) -> Counter[str]:
        return Counter(p.outcome for p in self.prompts)

    def duplicates(self, tg: FakeTelegram) -> int:
        """Final answers beyond one per prompt text, over every chat."""
        return sum(
            count - 1
            for who in self.people
            for count in complete_answers(tg, who.chat).values()
            if count > 1
        )

    def longest_silence(self) -> float:
        """The longest any prompt waited for the bot's first word (waiting ones count
        until now)."""
        now = time.monotonic()
        return max(
            (
                p.first_word if p.first_word is not None else (p.done_at or now) - p.sent_at
                for p in self.prompts
            ),
            default=0.0,
        )


async def drive(
    tg: FakeTelegram,
    db: Database,
    urls: Sequence[str],
    *,
    people: int,
    messages: int,
    first_chat: int = 10_000,
    during: Callable[[Balancer, list[Person]], Awaitable[None]] | None = None,
    answer_within: float = 120,
) -> Run:
    """`people` people write `messages` messages each, through a Balancer over `urls`;
    `during` runs alongside (e.g. kills a process) and is awaited before returning."""
    crowd = [Person(first_chat + i) for i in range(people)]
    for who in crowd:
        tg.user(who.chat, first_name=f"P{who.chat}", language_code="en")
    balancer = Balancer(tg, list(urls))
    sampler = StreamingSampler(db)
    background = [asyncio.create_task(balancer.run()), asyncio.create_task(sampler.run())]
    started = time.monotonic()
    try:
        # People arrive over the first second, not in one instant.
        writers = [
            person(tg, who, messages, pause=i / people, answer_within=answer_within)
            for i, who in enumerate(crowd)
        ]
        extra = [during(balancer, crowd)] if during is not None else []
        await asyncio.gather(*writers, *extra)
        seconds = time.monotonic() - started
    finally:
        for task in background:
            task.cancel()
        await asyncio.gather(*background, return_exceptions=True)
    return Run(
        people=crowd,
        seconds=seconds,
        balancer=balancer,
        sampler=sampler,
        floods=Counter(f.reason for f in tg.floods),
        busiest_second=tg.busiest_second(),
        set_webhooks=len(tg.calls_of("setWebhook", ok=True)),
    )


# -- a database for a standalone run -------------------------------------------------


async def _admin(base_url: str, sql: str) -> None:
    engine = null_pool_engine(base_url)
    try:
        async with engine.connect() as conn:
            await conn.execution_options(isolation_level="AUTOCOMMIT")
            await conn.execute(text(sql))
    finally:
        await engine.dispose()


@contextlib.asynccontextmanager
async def fresh_postgres(base_url: str) -> AsyncIterator[str]:
    """A migrated PostgreSQL database of its own, created next to `base_url`'s and
    dropped after: a run outside pytest touches nothing it did not make."""
    name = f"oneai_bench_{uuid.uuid4().hex[:10]}"
    await _admin(base_url, f'CREATE DATABASE "{name}"')
    url = make_url(base_url).set(database=name).render_as_string(hide_password=False)
    try:
        await upgrade_head_async(url)
        yield url
    finally:
        await _admin(base_url, f'DROP DATABASE IF EXISTS "{name}" WITH (FORCE)')


async def empty(db: Database) -> None:
    """Every table emptied, as a test's `db` fixture starts."""
    tables = ", ".join(t.name for t in Base.metadata.sorted_tables)
    async with db.engine.begin() as conn:
        await conn.execute(text(f"TRUNCATE {tables} RESTART IDENTITY CASCADE"))
