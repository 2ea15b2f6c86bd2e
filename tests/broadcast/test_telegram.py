"""Broadcasts through the real aiogram Bot against the fake Bot API over HTTP: 300
people, a 429 storm, 20 who blocked the bot, the sender killed halfway and a new
one resuming; a photo with a caption; a process SIGKILLed mid-broadcast."""

from __future__ import annotations

import asyncio
import sys
import time
from collections import Counter
from collections.abc import AsyncIterator

import pytest
from aiogram import Bot
from aiogram.client.session.aiohttp import AiohttpSession
from aiogram.client.telegram import TelegramAPIServer
from aiohttp import web
from sqlalchemy import select

from bot.telegram.broadcast import TelegramBroadcastSender, attach
from core.accounts import AccountService
from core.broadcast import BroadcastEngine, Photo, ProgressRef, RecipientState, Status
from core.db.engine import Database
from core.db.models import BroadcastRecipient, Identity
from tests.broadcast.conftest import add_people
from tests.fakes.telegram_server import Call, FakeTelegram, _png
from tests.support.process import ROOT, clean_env
from tests.support.wait import until

ADMIN = 1
LIMIT = 25  # messages a second, in any one second
TEXT = (
    "**Big news**: _OneAI_ can now draw — try `/image a red fox`.\n\n"
    "Read more in [the docs](https://example.com/docs)."
)


class FarTelegram(FakeTelegram):
    """The fake Bot API, answering each call `latency` seconds after it handled it,
    as Telegram's answer takes its time to come back over the network: a call is
    on the wire for a while after it took effect."""

    latency = 0.03

    async def _on_api(self, request: web.Request) -> web.Response:
        response = await super()._on_api(request)
        await asyncio.sleep(self.latency)
        return response


@pytest.fixture
async def tg() -> AsyncIterator[FarTelegram]:
    # Telegram's own flood control for bulk sends (about 30 a second) stays on; one
    # message per person, so no per-chat limit comes into play.
    async with FarTelegram(per_chat_interval=None, global_per_second=30) as fake:
        fake.user(ADMIN, first_name="Admin")
        yield fake


def _bot(tg: FakeTelegram) -> Bot:
    return Bot(tg.token, session=AiohttpSession(api=TelegramAPIServer.from_base(tg.url)))


def _engine(db: Database, bot: Bot, worker_id: str) -> BroadcastEngine:
    engine = BroadcastEngine(db, AccountService(db), worker_id=worker_id, progress_interval=1.0)
    attach(engine, bot)
    return engine


def _busiest_second(calls: list[Call]) -> int:
    times = sorted(call.time for call in calls)
    return max((sum(1 for u in times if t <= u < t + 1.0) for t in times), default=0)


def _sends(tg: FakeTelegram, method: str = "sendMessage") -> list[Call]:
    """Broadcast calls: to anyone but the admin (whose chat shows the progress)."""
    return [c for c in tg.calls_of(method) if c.chat_id != ADMIN]


def _admin_sees(tg: FakeTelegram, prefix: str) -> bool:
    message = tg.last_message(ADMIN)
    return message is not None and (message.text or "").startswith(prefix)


async def _kill(broadcast_id: int) -> None:
    """Every task the engine runs for the broadcast is cancelled at once."""
    prefix = f"broadcast-{broadcast_id}-"
    tasks = [t for t in asyncio.all_tasks() if t.get_name().startswith(prefix) and not t.done()]
    for task in tasks:
        task.cancel()
    await asyncio.gather(*tasks, return_exceptions=True)


async def test_300_people_a_429_storm_20_blocked_killed_halfway_and_resumed(
    db: Database, tg: FakeTelegram
) -> None:
    people = await add_people(db, 300, first_id=20_001)
    chats = [int(p.accounts["telegram"]) for p in people]
    for chat in chats:
        tg.user(chat)
    blocked = set(chats[7::15])  # 20 people spread over the list
    assert len(blocked) == 20
    for chat in blocked:
        tg.block(chat, notify=False)

    first_bot = _bot(tg)
    first = _engine(db, first_bot, "process-1")
    draft = await first.create_draft(ADMIN, TEXT)
    preview = await first.preview(draft.id)
    assert preview.ready and preview.audience.total == 300
    shown = await first_bot.send_message(ADMIN, "📣 Starting…")
    where = ProgressRef("telegram", str(ADMIN), str(shown.message_id))
    await first.start(draft.id, report_to=where)

    # A storm of 429s a fifth of the way in; the process dies halfway.
    await until(lambda: len(_sends(tg)) >= 60, within=30)
    tg.flood_storm("sendMessage", 4, retry_after=1)
    await until(lambda: len([c for c in _sends(tg) if c.ok]) >= 150, within=60)
    await _kill(draft.id)
    await first_bot.session.close()
    delivered_before = len([c for c in _sends(tg) if c.ok])
    assert delivered_before < 280

    # A new process on the same database: another storm greets it.
    tg.flood_storm("sendMessage", 2, retry_after=2)
    second_db = Database(db.url)
    second_bot = _bot(tg)
    second = _engine(second_db, second_bot, "process-2")
    try:
        assert await second.open(take_over=True) == [draft.id]
        await second.wait(draft.id)
        progress = await second.progress(draft.id)
        await until(lambda: _admin_sees(tg, "✅"))
    finally:
        await second.close()
        await second_bot.session.close()
        await second_db.dispose()

    # Every person who did not block the bot has the message exactly once.
    per_chat = {chat: len(tg.messages(chat, from_bot=True)) for chat in chats}
    duplicates = sum(1 for n in per_chat.values() if n > 1)
    assert duplicates == 0
    assert all(per_chat[c] == 1 for c in chats if c not in blocked)
    assert all(per_chat[c] == 0 for c in blocked)
    assert (progress.status, progress.total, progress.sent) == (Status.DONE, 300, 280)
    assert (progress.blocked, progress.failed, progress.unconfirmed) == (20, 0, 0)

    # Rendered like answers: entities, no Markdown left in the text.
    message = tg.messages(chats[0], from_bot=True)[0]
    assert message.text is not None and message.text.startswith("Big news: OneAI can now draw")
    kinds = {e["type"] for e in message.entities}
    assert {"bold", "italic", "code", "text_link"} <= kinds

    # Never more than 25 messages in any one second, 429s included.
    sends = _sends(tg)
    delivered = [c for c in sends if c.ok]
    assert _busiest_second(delivered) <= LIMIT
    assert _busiest_second(sends) <= LIMIT
    # Every 429 obeyed: nothing went out during its retry_after (a call already on
    # the wire when the 429 was answered may arrive just after it).
    floods = [f for f in tg.floods if f.method == "sendMessage"]
    assert {f.reason for f in floods} == {"storm"}  # Telegram's own limit never hit
    assert len(floods) == 6 == progress.floods
    for flood in floods:
        during = [c for c in sends if flood.time + 0.1 < c.time < flood.time + flood.retry_after]
        assert during == [], (flood, during)

    # The 20 are marked: nothing is written to them any more.
    async with db.read() as session:
        marked = set(
            (
                await session.scalars(
                    select(Identity.platform_user_id).where(Identity.is_blocked.is_(True))
                )
            ).all()
        )
    assert marked == {str(c) for c in blocked}
    # The progress message was edited with the end, after the restart.
    final = tg.last_message(ADMIN)
    assert final is not None and final.message_id == shown.message_id
    assert final.text == "✅ Done: 300/300 · sent 280 · blocked 20"

    span = max(c.time for c in delivered) - min(c.time for c in delivered)
    print(
        f"\nbroadcast figures: {len(delivered)} delivered in {span:.1f} s"
        f" ({len(delivered) / span:.1f} messages/s overall),"
        f" busiest second {_busiest_second(delivered)} delivered / {_busiest_second(sends)} calls,"
        f" 429s {len(floods)}, {len(tg.calls_of('sendMessage', ok=False))} refused calls,"
        f" duplicates {duplicates}, killed after {delivered_before}"
    )


async def test_a_photo_with_a_markdown_caption(db: Database, tg: FakeTelegram) -> None:
    people = await add_people(db, 5, first_id=30_001)
    for person in people:
        tg.user(int(person.accounts["telegram"]))
    file_id = tg.register_file(_png(4, 3), mime_type="image/png", folder="photos")
    bot = _bot(tg)
    engine = _engine(db, bot, "process-1")
    try:
        long = await engine.create_draft(ADMIN, "x" * 1100, photo=Photo(file_id, "telegram"))
        preview = await engine.preview(long.id)
        assert not preview.ready and "caption" in preview.problems["telegram"]
        assert preview.describe() == (
            "To: everyone, 5 people (Telegram 5)\nWith a photo.\n"
            "⚠️ Telegram: too long for a photo caption (1024 characters on Telegram)"
        )
        draft = await engine.create_draft(
            ADMIN, "**New**: pictures", photo=Photo(file_id, "telegram")
        )
        await engine.send_sample(draft.id, "telegram", str(ADMIN))  # the admin's preview
        await engine.start(draft.id)
        await engine.wait(draft.id)
    finally:
        await engine.close()
        await bot.session.close()
    for chat in [ADMIN] + [int(p.accounts["telegram"]) for p in people]:
        (message,) = tg.messages(chat, from_bot=True)
        assert message.kind == "photo" and message.caption == "New: pictures"
        assert message.caption_entities[0]["type"] == "bold"
    assert (await engine.progress(draft.id)).sent == 5  # the admin's sample not counted


async def test_a_sender_killed_with_sigkill_never_sends_twice(
    db: Database, tg: FarTelegram
) -> None:
    """A real crash: the process dies at any instant. Whoever resumes treats the
    people it was sending to at that instant as unconfirmed: nobody gets it twice,
    and at most one person per call in flight may miss it."""
    tg.latency = 0.05  # instance attribute: a call is on the wire for 50 ms
    people = await add_people(db, 80, first_id=40_001)
    chats = [int(p.accounts["telegram"]) for p in people]
    for chat in chats:
        tg.user(chat)
    bot = _bot(tg)
    engine = _engine(db, bot, "process-2")
    draft = await engine.create_draft(ADMIN, "hello")
    child = await asyncio.create_subprocess_exec(
        sys.executable,
        "-m",
        "tests.broadcast.child",
        db.url,
        tg.url,
        tg.token,
        str(draft.id),
        cwd=ROOT,
        env=clean_env(),
        stdout=asyncio.subprocess.PIPE,
        stderr=asyncio.subprocess.STDOUT,
    )
    try:
        await until(lambda: len([c for c in _sends(tg) if c.ok]) >= 30, within=30)
        child.kill()
        await child.wait()
        at_kill = len([c for c in _sends(tg) if c.ok])
        assert await engine.open(take_over=True) == [draft.id]
        await engine.wait(draft.id)
        progress = await engine.progress(draft.id)
    finally:
        if child.returncode is None:
            child.kill()
            await child.wait()
        await engine.close()
        await bot.session.close()

    per_chat = Counter({chat: len(tg.messages(chat, from_bot=True)) for chat in chats})
    assert max(per_chat.values()) == 1  # nobody twice
    async with db.read() as session:
        states = dict(
            (
                await session.execute(
                    select(BroadcastRecipient.platform_user_id, BroadcastRecipient.state).where(
                        BroadcastRecipient.broadcast_id == draft.id
                    )
                )
            ).all()
        )
    unconfirmed = [int(a) for a, s in states.items() if s == RecipientState.UNCONFIRMED]
    assert len(unconfirmed) <= TelegramBroadcastSender(bot).limits.concurrency
    assert all(per_chat[int(a)] == 1 for a, s in states.items() if s == RecipientState.SENT)
    assert progress.status is Status.DONE
    assert progress.sent + progress.unconfirmed == 80
    missed = [chat for chat in unconfirmed if per_chat[chat] == 0]
    print(
        f"\nSIGKILL after {at_kill} delivered: {len(unconfirmed)} unconfirmed,"
        f" {len(missed)} of them never got it; 0 duplicates"
    )


async def test_cancel_stops_the_calls_within_a_second(db: Database, tg: FakeTelegram) -> None:
    people = await add_people(db, 100, first_id=50_001)
    for person in people:
        tg.user(int(person.accounts["telegram"]))
    bot = _bot(tg)
    engine = _engine(db, bot, "process-1")
    try:
        draft = await engine.create_draft(ADMIN, "hello")
        await engine.start(draft.id)
        await until(lambda: len(_sends(tg)) >= 20, within=10)
        asked = time.monotonic()
        progress = await engine.cancel(draft.id)
        took = time.monotonic() - asked
        calls = len(_sends(tg))
        await asyncio.sleep(1.0)
    finally:
        await engine.close()
        await bot.session.close()
    assert took < 1.0
    assert len(_sends(tg)) == calls  # nothing after cancel returned
    assert progress.status is Status.CANCELLED
    # Calls on the wire when it was pressed were recorded: the counts match the chats.
    delivered = sum(len(tg.messages(int(p.accounts["telegram"]), from_bot=True)) for p in people)
    assert progress.sent == delivered and progress.pending == 100 - delivered
    assert progress.unconfirmed == 0
