"""Benchmark: the Discord bot (discord.py under simcord + core services + streaming
driver) against a bare discord.py floor, on one event loop, in one run.

simcord simulates Discord's REST API and gateway in memory and drives the client
from `bot.discord.factory.build_client`; the bots stream from the fake LLM over
real HTTP on 127.0.0.1; OneAI stores on a fresh copy of a migrated SQLite file per
run. simcord's REST router is wrapped to time every call and, in part 2, to answer
some message posts and edits with 429. Printed:

1. first-token overhead: the fake LLM writing the first token -> the answer's
   first `POST /channels/{id}/messages` reaching simcord's router;
2. concurrent DM streams under a 429 storm, bot defaults: calls/s, 429s, edits per
   channel and their gaps, time until all are final, lost text, missing buttons;
3. part 1's answers/s against a floor (a bare client making an answer's calls:
   typing, the first token, one edit with the full text at the end; no database,
   quotas or pacing), and CPU-ms per answer of both; in rounds of the floor then
   OneAI, the ratio being the median of the rounds' ratios (a slow spell of a
   noisy machine falls on both arms of a round).

Clocks: in bot work simcord's clock is virtual, time.perf_counter() and
time.time() are real; latencies are taken with perf_counter on both sides and the
run prints what each clock saw in bot work. By default the bot runs in real time,
with --simcord-clock on simcord's (see bench/simcord_clock.py for why).

    python -m bench.discord [--users 50] [--messages 4] [--rounds 5] [--streams 10,200]
                            [--storm 0.3]

Not a test: figures vary with the machine; compare ratios, not absolutes. Every
client settles the garbage collector once built, as `oneai run` does
(core/heap.py), so no arm gains on another from the collector's settings.
"""

from __future__ import annotations

import argparse
import asyncio
import itertools
import json
import random
import re
import shutil
import statistics
import tempfile
import time
from collections import Counter, defaultdict
from collections.abc import AsyncIterator
from contextlib import asynccontextmanager
from dataclasses import dataclass
from pathlib import Path
from typing import Any, ClassVar

import discord
import simcord
from aiohttp import web
from simcord.backend import Backend
from simcord.env import Env
from simcord.http import router
from sqlalchemy import update

from bench.simcord_clock import patched, real_time, simcord_clock
from bench.telegram import Overheads, QuietLLM, Seen
from bot.discord.factory import build_client
from core import heap
from core.accounts import PlatformProfile
from core.config import DatabaseSettings, DiscordSettings, LimitSettings, LLMSettings, Settings
from core.db.migrate import upgrade_head_async
from core.db.models import UsageQuota
from core.llm.client import LLMClient
from core.services import Services
from core.tiers import Tier
from tests.fakes.llm_server import Reply, _last_user_text

FAST_CHUNKS = [f"word{i} " for i in range(20)]  # parts 1 and 3: the answer at once
SLOW_CHUNKS = [f"token{i} " for i in range(40)]  # part 2: 4 s answers that overlap
SLOW_CHUNK_DELAY = 0.1
MODEL = "openai/gpt-4o-mini"
WARM_MESSAGES = 3
IDLE_MESSAGES = 10  # one person alone: the pipeline's own latency
ANSWER_TIMEOUT = 60.0  # one answer in the conversations
STREAMS_TIMEOUT = 600.0  # every answer of a storm; also simcord's settle timeout
STILL = 0.5  # the REST log is quiet once it did not grow for this long
MESSAGE_CALL = re.compile(r"^/channels/(\d+)/messages(?:/\d+)?$")
STOP, REGENERATE = "oneai:s:", "oneai:r:"
DEFAULTS = DiscordSettings()


class MarkedLLM(QuietLLM):
    """bench.telegram's fake LLM (plain sleeps) noting, by prompt (unique in the
    run), when each generation's first token is written."""

    first_tokens: ClassVar[dict[str, float]] = {}

    async def _pause(self, request: web.Request, seconds: float) -> None:
        await super()._pause(request, seconds)
        if "bench_first" not in request:
            # No keep-alive comments are scripted: a request's first pause is the one
            # right before its first delta is written (synchronously).
            request["bench_first"] = True
            prompt = _last_user_text(await request.json())  # the body is cached
            self.first_tokens[prompt] = time.perf_counter()


# -- simcord, instrumented -------------------------------------------------------------


@dataclass(frozen=True)
class Call:
    """One REST call as it reached simcord's router."""

    at: float  # time.perf_counter()
    bot_clock: float  # time.monotonic() in bot work: what the bot's pacing reads
    wall: float  # time.time()
    method: str
    path: str
    channel: int | None  # set for a message post, edit or delete
    buttons: str  # the custom ids of its components
    refused: bool  # answered 429 by the storm


def custom_ids(payload: Any) -> str:
    """The custom ids of a payload's components, space-separated."""
    return " ".join(re.findall(r'"custom_id": "([^"]*)"', json.dumps(payload)))


class Rest:
    """Wraps `simcord.http.router.dispatch`: records every call, answers a share
    `storm` of message posts and edits with 429, and resolves each channel's wait
    for its answer (the first post with buttons, then the one with Regenerate)."""

    def __init__(self, storm: float) -> None:
        self.storm = storm
        self.random = random.Random(1)
        self.calls: list[Call] = []
        self._waiting: dict[int, asyncio.Future[Seen]] = {}
        self._posted: dict[int, float] = {}  # the answer's first post arrived

    def expect(self, channel: int) -> asyncio.Future[Seen]:
        """Call before the person writes: the next answer in `channel`."""
        future: asyncio.Future[Seen] = asyncio.get_running_loop().create_future()
        self._waiting[channel] = future
        self._posted.pop(channel, None)
        return future

    def dispatch(self, original: Any, backend: Backend, method: str, path: str, **kw: Any) -> Any:
        match = MESSAGE_CALL.match(path)
        channel = int(match[1]) if match else None
        edit = channel is not None and method in ("POST", "PATCH")
        refused = edit and self.random.random() < self.storm
        buttons = custom_ids(kw.get("json"))
        clocks = (time.perf_counter(), time.monotonic(), time.time())
        call = Call(*clocks, method, path, channel, buttons, refused)
        self.calls.append(call)
        if channel is not None and method == "POST" and (STOP in buttons or REGENERATE in buttons):
            self._posted.setdefault(channel, call.at)  # when it arrived, refused or not
        if refused:
            raise simcord.BackendError(429, 0, "You are being rate limited.")
        result = original(backend, method, path, **kw)
        if edit and channel in self._waiting and REGENERATE in buttons:
            future = self._waiting.pop(channel)
            posted = self._posted.pop(channel, call.at)
            future.set_result(Seen(posted, call.at, notice=False))
        return result

    async def quiet(self, idle: Any = None) -> None:
        """Until the log stopped growing for STILL seconds (and `idle()` holds)."""
        count, since = -1, time.perf_counter()
        while time.perf_counter() - since < STILL or (idle is not None and not idle()):
            if len(self.calls) != count:
                count, since = len(self.calls), time.perf_counter()
            await asyncio.sleep(0.05)


@dataclass(frozen=True)
class Person:
    user_id: int
    channel: int  # the DM channel


@dataclass
class Arm:
    """One simcord run of one bot: its REST log and its people."""

    env: Env
    rest: Rest

    def people(self, count: int, prefix: str) -> list[Person]:
        users = [self.env.create_user(f"{prefix}{i}") for i in range(count)]
        return [Person(user.id, user.dm_channel.id) for user in users]

    def send_dm(self, person: Person, text: str) -> None:  # without waiting for a settle
        self.env.backend.create_message(person.channel, person.user_id, text)


@asynccontextmanager
async def running(client: discord.Client, args: Any, storm: float = 0.0) -> AsyncIterator[Arm]:
    rest, original = Rest(storm), router.dispatch
    dispatch = lambda *a, **kw: rest.dispatch(original, *a, **kw)  # noqa: E731
    # The bot is an AutoShardedBot that learns its shard count from Discord: one here.
    sharded = isinstance(client, discord.AutoShardedClient) and client.shard_count is None
    shards = 1 if sharded else None
    heap.settle()  # as `oneai run` does once built, for every arm alike
    async with simcord.run(
        client, settle_timeout=STREAMS_TIMEOUT, check_errors=False, shard_count=shards
    ) as env:
        clock = simcord_clock(env) if args.simcord_clock else real_time(env)
        with clock, patched(router, "dispatch", dispatch):
            yield Arm(env, rest)


def floor_client(llm: LLMClient) -> discord.Client:
    """Typing, the first token with a Stop button, and one edit with the full text
    and a Regenerate button when the stream ends."""
    intents = discord.Intents.default()
    intents.message_content = True
    client = discord.Client(intents=intents)

    def view(custom_id: str) -> discord.ui.View:
        buttons = discord.ui.View(timeout=None)
        buttons.add_item(discord.ui.Button[discord.ui.View](label="·", custom_id=custom_id))
        return buttons

    @client.event
    async def on_message(message: discord.Message) -> None:
        if message.author.bot:
            return
        await message.channel.typing()
        text, sent = "", None
        async for chunk in llm.stream_chat(MODEL, [{"role": "user", "content": message.content}]):
            text += chunk.text
            if sent is None and text:
                sent = await message.channel.send(text, view=view(f"{STOP}floor"))
        if sent is not None:
            await sent.edit(content=text, view=view(f"{REGENERATE}floor"))

    return client


def oneai_services(url: str, llm: MarkedLLM, config: DiscordSettings) -> Services:
    """The services as production builds them (LLM client, pools), on `url`."""
    llm_settings = LLMSettings(base_url=llm.base_url, catalog_refresh_hours=0)
    db = DatabaseSettings(database_url=url)
    return Services.build(Settings(db=db, llm=llm_settings, limits=LimitSettings(), discord=config))


async def returning(services: Services, group: list[Person]) -> None:
    """Accounts as first contact makes them, with quota to spare for long runs, and
    one earlier exchange each: a returning person writes into a conversation they
    already have."""
    for person in group:
        await services.accounts.upsert(PlatformProfile("discord", str(person.user_id)))
    async with services.db.write() as session:
        for person in group:
            account = await services.accounts.by_identity("discord", str(person.user_id))
            assert account is not None
            await services.quotas.ensure_rows(session, account.id, Tier(account.tier))
        await session.execute(update(UsageQuota).values(quota_limit=10**9))
    for person in group:
        account = await services.accounts.by_identity("discord", str(person.user_id))
        assert account is not None
        if account.current_conversation_id is None:
            generation = await services.chat.send(account.id, "Hello")
            async for _delta in generation.stream():
                pass


# -- parts 1 and 3: people in conversation ---------------------------------------------


@dataclass
class Conversations:
    rate: float  # answers/s
    cpu_ms: float  # process time per answer
    overheads: Overheads  # N people
    alone: Overheads  # one person alone
    calls: Counter[str]  # REST calls per answer, by kind
    clocks: tuple[float, float, float]  # time.time, perf_counter, monotonic spans in bot work


async def converse(
    arm: Arm, group: list[Person], messages: int, marks: dict[str, float], pause: float
) -> Overheads:
    """Each person writes `messages` DMs, the next `pause` s after the previous
    answer is final."""
    overheads = Overheads()

    async def person(who: Person) -> None:
        for index in range(messages):
            prompt = f"Question {index} from {who.user_id}"
            answered = arm.rest.expect(who.channel)
            arm.send_dm(who, prompt)
            try:
                seen = await asyncio.wait_for(answered, ANSWER_TIMEOUT)
            except TimeoutError:
                raise RuntimeError(f"user {who.user_id}: no final answer to {prompt!r}") from None
            overheads.add(seen, marks[prompt])
            await asyncio.sleep(pause)

    await asyncio.gather(*(person(who) for who in group))
    return overheads


async def conversations(
    client: Any, llm: MarkedLLM, args: argparse.Namespace, services: Services | None = None
) -> Conversations:
    llm.default = Reply(chunks=FAST_CHUNKS)
    pause = 2 * args.edit_interval  # the chat's turn is free again when the next DM comes
    idle = client.answers.flow.idle if services is not None else None
    async with running(client, args) as arm:
        alone, group = arm.people(2, "alone"), arm.people(args.users, "person")
        if services is not None:
            await returning(services, alone + group)
        await converse(arm, alone[:1], WARM_MESSAGES, llm.first_tokens, pause)
        await arm.rest.quiet(idle)
        first = len(arm.rest.calls)
        cpu, started = time.process_time(), time.perf_counter()
        overheads = await converse(arm, group, args.messages, llm.first_tokens, pause)
        elapsed, cpu = time.perf_counter() - started, time.process_time() - cpu
        timed = arm.rest.calls[first:]
        await arm.rest.quiet(idle)
        by_one = await converse(arm, alone[1:], IDLE_MESSAGES, llm.first_tokens, pause)
        await arm.rest.quiet(idle)
        if arm.env.errors:
            print(f"   bot errors recorded by simcord: {arm.env.errors!r:.500}")
    done = args.users * args.messages
    kinds = Counter(c.method + " " + re.sub(r"/\d+", "/{id}", c.path) for c in timed)
    a, b = timed[0], timed[-1]
    calls = Counter({k: n / done for k, n in kinds.items()})
    clocks = (b.wall - a.wall, b.at - a.at, b.bot_clock - a.bot_clock)
    return Conversations(done / elapsed, cpu * 1000 / done, overheads, by_one, calls, clocks)


def merged(rounds: list[Conversations]) -> Conversations:
    """The rounds as one run: every latency sample, the mean of the per-answer counts,
    the median rate and CPU; the first round's clocks."""
    overheads, alone = Overheads(), Overheads()
    calls: Counter[str] = Counter()
    for figures in rounds:
        for into, part in ((overheads, figures.overheads), (alone, figures.alone)):
            into.plain += part.plain
            into.after_notice += part.after_notice
        calls.update({k: n / len(rounds) for k, n in figures.calls.items()})
    return Conversations(
        statistics.median(f.rate for f in rounds),
        statistics.median(f.cpu_ms for f in rounds),
        overheads,
        alone,
        calls,
        rounds[0].clocks,
    )


def report_overheads(args: argparse.Namespace, oneai: Conversations, floor: Conversations) -> None:
    wall, perf, mono = oneai.clocks
    clock = "simcord's own" if args.simcord_clock else "simcord's, reading the real clock"
    print(
        "\n1. First-token overhead: the fake LLM writes the first token -> the answer's first"
        "\n   POST reaches simcord's router (time.perf_counter on both sides); the LLM answers"
        f"\n   at once in {len(FAST_CHUNKS)} chunks; each person writes again "
        f"{2 * args.edit_interval:g} s after an answer is final\n"
        f"   clock check over OneAI's REST calls in part 3: time.time {wall:.3f} s, "
        f"perf_counter {perf:.3f} s,\n   time.monotonic in bot work {mono:.3f} s ({clock})"
    )
    for label, figures in (("OneAI", oneai), ("floor", floor)):
        for line in [
            *figures.alone.lines(f"{label}, one person alone", target=""),
            *figures.overheads.lines(f"{label}, {args.users} people", target=""),
        ]:
            print(f"   {line}")


def report_throughput(
    args: argparse.Namespace, rounds: list[tuple[Conversations, Conversations]]
) -> None:
    """Part 3: each round is the floor, then OneAI."""
    floor, oneai = merged([f for f, _ in rounds]), merged([o for _, o in rounds])
    ratio = statistics.median(o.rate / f.rate for f, o in rounds)
    cpu_ratio = statistics.median(f.cpu_ms / o.cpu_ms for f, o in rounds)
    print(
        f"\n3. Throughput: part 1's {args.users} people x {args.messages} DMs; OneAI with "
        f"DISCORD_EDIT_INTERVAL={args.edit_interval:g},\n   global budget lifted to 1e6/s; "
        "the floor without database, quotas or pacing;\n"
        f"   {len(rounds)} rounds, each the floor then OneAI (people and database of its own),"
        " so a slow\n   spell of the machine falls on both arms of a round:"
    )
    for index, (f, o) in enumerate(rounds, 1):
        print(
            f"   round {index}: floor {f.rate:6.1f} answers/s {f.cpu_ms:6.2f} CPU-ms;"
            f" OneAI {o.rate:6.1f} answers/s {o.cpu_ms:6.2f} CPU-ms;"
            f" ratio {o.rate / f.rate:6.1%} (CPU {f.cpu_ms / o.cpu_ms:6.1%})"
        )
    print(
        f"   floor         {floor.rate:8.1f} answers/s  {floor.cpu_ms:7.2f} CPU-ms/answer"
        "  (medians of the rounds)\n"
        f"   OneAI         {oneai.rate:8.1f} answers/s  {oneai.cpu_ms:7.2f} CPU-ms/answer\n"
        f"   OneAI/floor   {ratio:8.1%}      median of the rounds' ratios; target >= 60%\n"
        f"   CPU           the floor's is {cpu_ratio:.1%} of OneAI's, median of the rounds;"
        " process time / answers,\n                 the fakes' share included"
    )
    for label, figures in (("OneAI", oneai), ("floor", floor)):
        calls = ", ".join(f"{k} {n:.2f}" for k, n in sorted(figures.calls.items()))
        print(f"   {label} REST calls per answer: {calls}")


# -- part 2: concurrent streams under a 429 storm --------------------------------------


async def storm(llm: MarkedLLM, url: str, count: int, args: argparse.Namespace) -> None:
    llm.default = Reply(chunks=SLOW_CHUNKS, chunk_delay=SLOW_CHUNK_DELAY)
    expected = "".join(SLOW_CHUNKS).split()
    interval = DEFAULTS.edit_interval
    services = oneai_services(url, llm, DEFAULTS)
    try:
        client: Any = build_client(services)
        async with running(client, args, storm=args.storm) as arm:
            group = arm.people(count, "streamer")
            waits = {who.channel: arm.rest.expect(who.channel) for who in group}
            started = time.perf_counter()
            for who in group:
                arm.send_dm(who, f"Question from {who.user_id}")
            await asyncio.wait(waits.values(), timeout=STREAMS_TIMEOUT)
            await arm.rest.quiet(client.answers.flow.idle)
            calls, backend = list(arm.rest.calls), arm.env.backend
            bot = backend.bot_user.id
            mine = [
                [m for m in backend.messages[ch].values() if m.author_id == bot] for ch in waits
            ]
            errors = arm.env.errors
    finally:
        await services.close()
    ours = [c for c in calls if c.channel in waits]  # posts, edits, deletes of messages
    finals = [c for c in ours if not c.refused and REGENERATE in c.buttons]
    span = max(c.at for c in finals) - started
    by_channel: dict[int | None, list[Call]] = defaultdict(list)
    for call in ours:
        by_channel[call.channel].append(call)
    rates = []  # per channel: accepted edits / (last - first accepted call)
    for accepted in ([c for c in cs if not c.refused] for cs in by_channel.values()):
        if len(accepted) > 1:
            edits = sum(c.method == "PATCH" for c in accepted)
            rates.append(edits / (accepted[-1].at - accepted[0].at))
    pairs = [pair for cs in by_channel.values() for pair in itertools.pairwise(cs)]
    real, bots = ([b.at - a.at for a, b in pairs], [b.bot_clock - a.bot_clock for a, b in pairs])
    intact = buttoned = stale = lost = 0
    for answer in (sorted(messages, key=lambda m: int(m.id)) for messages in mine):
        words = "".join(m.content for m in answer).split()
        intact += words == expected
        lost += max(0, len("".join(expected)) - len("".join(words)))
        buttoned += bool(answer) and REGENERATE in custom_ids(answer[-1].components)
        stale += sum(STOP in custom_ids(m.components) for m in answer)
    refused, short = sum(c.refused for c in ours), interval - 0.001
    mean_rate, max_rate = (statistics.mean(rates), max(rates)) if rates else (0.0, 0.0)
    busiest = Counter(int(c.at - started) for c in calls).most_common(1)[0]
    accepted_edits = sum(c.method == "PATCH" and not c.refused for c in ours)
    print(
        f"\n2. {count} concurrent DM streams of {len(SLOW_CHUNKS)} chunks {SLOW_CHUNK_DELAY:g} s "
        f"apart; {args.storm:.0%} of message posts/edits answered 429\n   (simcord's 429 has no "
        f"retry_after: the bot waits 1 s); bot defaults: edit interval {interval:g} s, "
        f"global {DEFAULTS.global_edits_per_second:g}/s\n"
        f"   REST calls/s        {len(calls) / span:8.1f}  ({len(calls)} calls; {len(ours)} "
        f"posts/edits/deletes of messages, {refused} of them answered 429);\n"
        f"   busiest second {busiest[0]}: {busiest[1]} calls (Discord allows 50/s per bot)\n"
        f"   edits/s             {accepted_edits / span:8.1f}  (accepted, all channels)\n"
        f"   edits/s per channel {mean_rate:8.2f}  mean, max {max_rate:.2f} "
        f"(accepted edits / first to last accepted call); limit {1 / interval:g}\n"
        f"   one channel's message calls: smallest gap {min(real):.3f} s real, {min(bots):.3f} s "
        f"on the bot's clock;\n   gaps under {interval:g} s: {sum(g < short for g in real)} real, "
        f"{sum(g < short for g in bots)} on the bot's clock (of {len(real)})\n"
        f"   all answers final   {span:8.1f} s  after the first DM\n"
        f"   final {len(finals)}, intact {intact}, ending with Regenerate {buttoned}, of {count}; "
        f"lost characters {lost}; messages still showing Stop {stale}"
    )
    if errors:
        print(f"   bot errors recorded by simcord: {errors!r:.500}")


# -- the run ---------------------------------------------------------------------------


async def run(args: argparse.Namespace, workdir: Path) -> None:
    template = workdir / "template.db"
    await upgrade_head_async(f"sqlite+aiosqlite:///{template}")
    copies = itertools.count()

    def fresh_db() -> str:
        path = workdir / f"run{next(copies)}.db"
        shutil.copyfile(template, path)
        return f"sqlite+aiosqlite:///{path}"

    async with MarkedLLM(default=Reply(chunks=FAST_CHUNKS)) as llm:

        async def floor() -> Conversations:
            client = LLMClient.from_settings(LLMSettings(base_url=llm.base_url))
            try:
                return await conversations(floor_client(client), llm, args)
            finally:
                await client.aclose()

        async def oneai() -> Conversations:
            config = DiscordSettings(edit_interval=args.edit_interval, global_edits_per_second=1e6)
            services = oneai_services(fresh_db(), llm, config)
            try:
                return await conversations(build_client(services), llm, args, services)
            finally:
                await services.close()

        rounds = [(await floor(), await oneai()) for _ in range(args.rounds)]
        report_overheads(args, merged([o for _, o in rounds]), merged([f for f, _ in rounds]))
        for count in filter(None, map(int, args.streams.split(","))):
            await storm(llm, fresh_db(), count, args)
        report_throughput(args, rounds)


async def main() -> None:
    parser = argparse.ArgumentParser()
    parser.add_argument("--users", type=int, default=50)
    parser.add_argument("--messages", type=int, default=4)
    parser.add_argument(
        "--rounds", type=int, default=5, help="throughput rounds (the floor, then OneAI, each)"
    )
    parser.add_argument(
        "--streams", default="10,200", help="stream counts, one storm each (0: none)"
    )
    parser.add_argument("--storm", type=float, default=0.3, help="share of posts/edits -> 429")
    parser.add_argument("--edit-interval", type=float, default=0.05, help="parts 1 and 3")
    parser.add_argument("--simcord-clock", action="store_true", help="see the docstring")
    args = parser.parse_args()
    started = time.perf_counter()
    with tempfile.TemporaryDirectory() as workdir:
        await run(args, Path(workdir))
    print(f"\ntotal run time {time.perf_counter() - started:.0f} s")


if __name__ == "__main__":
    asyncio.run(main())
