"""Who a broadcast goes to: everyone, a plan, the recently active; never banned
people or accounts that blocked the bot; a person on two platforms once, on the
one they used last."""

from __future__ import annotations

from datetime import timedelta

import pytest

from core.broadcast import Audience, BroadcastEngine, BroadcastError, Status
from core.clock import utcnow
from core.db.engine import Database
from tests.broadcast.conftest import Person, RecordingSender, add_person, make_engine


def _senders(engine: BroadcastEngine, *platforms: str) -> dict[str, RecordingSender]:
    senders = {platform: RecordingSender(platform) for platform in platforms}
    for sender in senders.values():
        engine.add_sender(sender)
    return senders


async def _reached(
    engine: BroadcastEngine, senders: dict[str, RecordingSender], audience: Audience
) -> dict[str, set[str]]:
    """Send a broadcast to `audience`; platform -> the accounts that got it."""
    draft = await engine.create_draft(None, "hello", audience=audience)
    await engine.start(draft.id)
    await engine.wait(draft.id)
    assert (await engine.progress(draft.id)).status is Status.DONE
    reached: dict[str, set[str]] = {}
    for platform, sender in senders.items():
        reached[platform] = {a for a, content, _ in sender.sent if content.broadcast_id == draft.id}
    return reached


@pytest.fixture
async def town(db: Database) -> dict[str, Person]:
    now = utcnow()
    return {
        "free": await add_person(db, {"telegram": ("1", now - timedelta(days=2))}),
        "pro": await add_person(db, {"telegram": ("2", now - timedelta(days=40))}, tier="pro"),
        "enterprise": await add_person(
            db, {"discord": ("903", now - timedelta(days=5))}, tier="enterprise"
        ),
        "banned": await add_person(db, {"telegram": ("4", now)}, banned=True),
        "blocked": await add_person(db, {"telegram": ("5", now)}, blocked=["telegram"]),
        # Linked: Discord used an hour ago, Telegram yesterday -> Discord.
        "linked": await add_person(
            db,
            {
                "telegram": ("6", now - timedelta(days=1)),
                "discord": ("906", now - timedelta(hours=1)),
            },
            tier="pro",
        ),
        # Linked, but the last-used account blocked the bot -> the other one.
        "linked_blocked": await add_person(
            db,
            {
                "telegram": ("7", now - timedelta(days=60)),
                "discord": ("907", now - timedelta(hours=1)),
            },
            blocked=["discord"],
        ),
        "quiet": await add_person(db, {"telegram": ("8", now - timedelta(days=31))}),
    }


async def test_everyone(engine: BroadcastEngine, town: dict[str, Person]) -> None:
    senders = _senders(engine, "telegram", "discord")
    reached = await _reached(engine, senders, Audience.everyone())
    assert reached == {"telegram": {"1", "2", "7", "8"}, "discord": {"903", "906"}}


async def test_a_tier(engine: BroadcastEngine, town: dict[str, Person]) -> None:
    senders = _senders(engine, "telegram", "discord")
    assert await _reached(engine, senders, Audience.on_tier("pro")) == {
        "telegram": {"2"},
        "discord": {"906"},
    }


async def test_the_active_in_the_last_30_days(
    engine: BroadcastEngine, town: dict[str, Person]
) -> None:
    senders = _senders(engine, "telegram", "discord")
    # "linked_blocked" wrote on Discord an hour ago: active, reached on Telegram.
    assert await _reached(engine, senders, Audience.active()) == {
        "telegram": {"1", "7"},
        "discord": {"903", "906"},
    }


async def test_a_platform_without_a_sender_is_left_out(
    engine: BroadcastEngine, town: dict[str, Person]
) -> None:
    senders = _senders(engine, "telegram")
    # Without Discord the linked person gets it on Telegram; Discord-only people not.
    assert await _reached(engine, senders, Audience.everyone()) == {
        "telegram": {"1", "2", "6", "7", "8"}
    }


async def test_preview_counts_people_once(engine: BroadcastEngine, town: dict[str, Person]) -> None:
    _senders(engine, "telegram", "discord")
    draft = await engine.create_draft(None, "hi", audience=Audience.on_tier("pro"))
    preview = await engine.preview(draft.id)
    assert preview.audience.total == 2
    assert preview.audience.by_platform == {"telegram": 1, "discord": 1}
    assert preview.ready
    assert preview.describe() == "To: pro plan, 2 people (Discord 1 · Telegram 1)"
    changed = await engine.edit_draft(draft.id, audience=Audience.active(10))
    assert changed.audience == Audience.active(10)
    assert (await engine.preview(draft.id)).audience.total == 4


async def test_an_empty_audience_does_not_start(db: Database, town: dict[str, Person]) -> None:
    engine = make_engine(db)
    _senders(engine, "telegram")  # the enterprise person is on Discord
    empty = await engine.create_draft(None, "hi", audience=Audience.on_tier("enterprise"))
    with pytest.raises(BroadcastError, match="Nobody"):
        await engine.start(empty.id)
    assert (await engine.get(empty.id)).status is Status.DRAFT
