"""Broadcasts by Discord DM through the real discord.py client under simcord: one
DM per person, closed DMs (50007) counted blocked and marked, a 429 waited out,
a photo URL as an embed; a person linked to Telegram gets it once, where they
wrote last."""

from __future__ import annotations

from collections.abc import AsyncIterator
from datetime import timedelta

import discord
import pytest
from simcord.builders import UserHandle
from simcord.env import Env
from sqlalchemy import select

from bot.discord.broadcast import DiscordBroadcastSender
from core.accounts import AccountService
from core.broadcast import BroadcastEngine, Photo, Status
from core.clock import utcnow
from core.db.engine import Database
from core.db.models import Identity
from tests.broadcast.conftest import RecordingSender, add_person


def _dms(env: Env, person: UserHandle) -> list[discord.Message]:
    """What the bot sent `person` by DM."""
    bot_user = env.bot.user
    assert bot_user is not None
    return [m for m in person.dm_channel.history() if m.author.id == bot_user.id]


@pytest.fixture
async def env() -> AsyncIterator[Env]:
    client = discord.Client(intents=discord.Intents.default())
    simulated = Env(client, settle_timeout=30)
    await simulated.start()
    try:
        yield simulated
    finally:
        await simulated.shutdown()


async def test_dms_once_each_closed_dms_blocked_a_429_waited_out(db: Database, env: Env) -> None:
    now = utcnow()
    people = [env.create_user(f"person{n}") for n in range(6)]
    closed = people[1]
    robot = env.create_user("robot", bot=True)  # Discord refuses DMs to bots: 50007
    for person in [*people, robot]:
        await add_person(db, {"discord": (str(person.id), now - timedelta(hours=2))})
    # Linked: wrote on Discord last, so the DM goes there and Telegram stays quiet.
    linked = env.create_user("linked")
    await add_person(
        db,
        {
            "telegram": ("777", now - timedelta(days=3)),
            "discord": (str(linked.id), now - timedelta(minutes=5)),
        },
    )
    env.inject_error(
        "POST",
        f"/channels/{closed.dm_channel.id}/messages",
        status=403,
        code=50007,
        message="Cannot send messages to this user",
        times=None,
    )
    env.inject_error("POST", "/channels/*/messages", status=429, message="slow down", times=1)

    engine = BroadcastEngine(
        db, AccountService(db), worker_id="discord-1", progress_interval=0.2, tick=0.05
    )
    telegram = RecordingSender("telegram")
    engine.add_sender(telegram)
    engine.add_sender(DiscordBroadcastSender(env.bot))
    try:
        draft = await engine.create_draft(
            None, "**Hello** from OneAI", photo=Photo("https://example.com/fox.png")
        )
        await engine.start(draft.id)
        await engine.wait(draft.id)
        progress = await engine.progress(draft.id)
    finally:
        await engine.close()

    assert (progress.status, progress.sent, progress.blocked) == (Status.DONE, 6, 2)
    assert progress.floods == 1 and progress.failed == 0
    assert telegram.sent == []
    for person in [*people, linked]:
        dms = _dms(env, person)
        if person is closed:
            assert dms == []
            continue
        assert len(dms) == 1, person.name
        (dm,) = dms
        assert dm.content == "**Hello** from OneAI"  # Discord shows Markdown itself
        assert dm.embeds and dm.embeds[0].image.url == "https://example.com/fox.png"
    async with db.read() as session:
        marked = set(
            (
                await session.scalars(
                    select(Identity.platform_user_id).where(Identity.is_blocked.is_(True))
                )
            ).all()
        )
    assert marked == {str(closed.id), str(robot.id)}


async def test_a_telegram_photo_reaches_discord_as_a_file(db: Database, env: Env) -> None:
    person = env.create_user("pat")
    await add_person(db, {"discord": (str(person.id), utcnow())})
    loads: list[str] = []

    async def photo_bytes(photo: Photo) -> bytes:
        loads.append(photo.ref)
        return b"\x89PNG fake"

    engine = BroadcastEngine(db, AccountService(db), worker_id="discord-1", tick=0.05)
    without = DiscordBroadcastSender(env.bot)
    engine.add_sender(without)
    draft = await engine.create_draft(None, "look", photo=Photo("AgACfile", "telegram"))
    assert "discord" in (await engine.preview(draft.id)).problems
    engine.add_sender(DiscordBroadcastSender(env.bot, photo_bytes=photo_bytes))
    try:
        assert (await engine.preview(draft.id)).ready
        await engine.start(draft.id)
        await engine.wait(draft.id)
    finally:
        await engine.close()
    (dm,) = _dms(env, person)
    assert dm.content == "look" and [a.filename for a in dm.attachments] == ["photo.jpg"]
    assert loads == ["AgACfile"]
