"""The access rule of private deployments, on the real database (SQLite, and
PostgreSQL when TEST_DATABASE_URL points at one): the race for an invite's last
use, the once-a-day note across concurrent checks, linked accounts, the modes."""

from __future__ import annotations

import asyncio
from collections.abc import AsyncIterator
from typing import Any

import pytest
from pydantic import ValidationError
from sqlalchemy import func, select

from core.access import (
    BadEntry,
    InviteUnknown,
    InviteUsedUp,
    Redeemed,
    parse_entry,
)
from core.accounts import PlatformProfile
from core.admin import allowlist
from core.admin.access import CLI_ACTOR
from core.admin.errors import BadUses, InvitesOff
from core.config import AccessSettings, Settings, TelegramSettings
from core.db.engine import Database
from core.db.models import AccessInvite, AccessRedemption, User
from core.services import Services
from tests.conftest import make_settings
from tests.fakes.llm_server import FakeLLM

ADMIN = 42


def build(db: Database, fake_llm: FakeLLM, **access: Any) -> Services:
    base = make_settings(db.url, fake_llm.base_url)
    settings = Settings(
        db=base.db,
        llm=base.llm,
        limits=base.limits,
        telegram=TelegramSettings(admin_ids=[ADMIN]),
        access=AccessSettings.model_validate(access),
    )
    return Services.build(settings, db=db)


@pytest.fixture
async def services(db: Database, fake_llm: FakeLLM) -> AsyncIterator[Services]:
    built = build(db, fake_llm, mode="invite")
    try:
        yield built
    finally:
        await built.llm.aclose()


async def person(services: Services, platform: str, account: int, **profile: Any) -> User:
    return await services.accounts.upsert(PlatformProfile(platform, str(account), **profile))


async def test_two_people_racing_for_the_last_use_cannot_both_get_it(
    services: Services,
) -> None:
    people = [await person(services, "telegram", 1000 + i) for i in range(12)]
    made = await allowlist.invite(services, CLI_ACTOR, uses=1, days=1)
    results = await asyncio.gather(
        *(services.access.redeem(p.id, made.invite.code) for p in people),
        return_exceptions=True,
    )
    won = [r for r in results if isinstance(r, Redeemed)]
    assert won == [Redeemed(already=False)]
    assert all(isinstance(r, InviteUsedUp) for r in results if not isinstance(r, Redeemed))
    winner = people[results.index(won[0])]
    assert [await services.access.allowed(p.id) for p in people].count(True) == 1
    assert await services.access.allowed(winner.id)
    async with services.db.read() as session:
        assert await session.scalar(select(AccessInvite.uses_left)) == 0
        assert await session.scalar(select(func.count()).select_from(AccessRedemption)) == 1


async def test_three_uses_go_to_three_of_twelve(services: Services) -> None:
    people = [await person(services, "discord", 2000 + i) for i in range(12)]
    made = await allowlist.invite(services, CLI_ACTOR, uses=3, days=1)
    results = await asyncio.gather(
        *(services.access.redeem(p.id, made.invite.code) for p in people),
        return_exceptions=True,
    )
    assert sum(isinstance(r, Redeemed) for r in results) == 3
    assert sum(isinstance(r, InviteUsedUp) for r in results) == 9
    async with services.db.read() as session:
        assert await session.scalar(select(AccessInvite.uses_left)) == 0


async def test_one_note_a_day_however_many_checks_at_once(services: Services) -> None:
    said = await asyncio.gather(*(services.access.should_note("telegram", 7) for _ in range(10)))
    assert said.count(True) == 1
    assert not await services.access.should_note("telegram", 7)
    assert await services.access.should_note("discord", 7)  # another account


async def test_an_invite_reaches_every_linked_account(services: Services) -> None:
    telegram = await person(services, "telegram", 11)
    discord = await person(services, "discord", 22)
    made = await allowlist.invite(services, CLI_ACTOR)
    await services.access.redeem(telegram.id, made.invite.code)
    assert not await services.access.allowed(discord.id)
    code = await services.linking.issue_code(telegram.id, "telegram")
    result = await services.linking.redeem(discord.id, "discord", code.code)
    joined = await services.accounts.by_identity("discord", "22")
    assert joined is not None and joined.id == result.user_id == telegram.id
    assert await services.access.allowed(joined.id)
    # Nothing more to take: they have access already.
    other = await allowlist.invite(services, CLI_ACTOR)
    assert await services.access.redeem(joined.id, other.invite.code) == Redeemed(already=True)


async def test_admins_the_list_and_usernames(services: Services) -> None:
    admin = await person(services, "telegram", ADMIN)
    named = await person(services, "telegram", 33, username="MiXeD")
    other = await person(services, "discord", 44, username="mixed")  # not a Telegram name
    assert await services.access.allowed(admin.id)
    assert not await services.access.allowed(named.id)
    await allowlist.allow(services, CLI_ACTOR, "@Mixed")
    assert await services.access.allowed(named.id)
    assert not await services.access.allowed(other.id)
    await allowlist.allow(services, CLI_ACTOR, "<@44>")
    assert await services.access.allowed(other.id)
    assert (await allowlist.allowlist(services)).entries == ["@mixed", "discord:44"]


async def test_bad_input_changes_nothing(services: Services) -> None:
    with pytest.raises(BadEntry):
        await allowlist.allow(services, CLI_ACTOR, "telegram:abc")
    with pytest.raises(BadUses):
        await allowlist.invite(services, CLI_ACTOR, uses=0)
    someone = await person(services, "telegram", 55)
    with pytest.raises(InviteUnknown):
        await services.access.redeem(someone.id, "no such code here")
    with pytest.raises(InviteUnknown):
        await services.access.redeem(someone.id, "AAAAAAAAAAAAAAAAAAAAAA")
    async with services.db.read() as session:
        assert await session.scalar(select(func.count()).select_from(AccessInvite)) == 0


async def test_modes(db: Database, fake_llm: FakeLLM) -> None:
    opened = build(db, fake_llm)
    listed = build(db, fake_llm, mode="allowlist", allowlist="telegram:66")
    try:
        someone = await person(opened, "telegram", 66)
        stranger = await person(opened, "telegram", 77)
        assert await opened.access.allowed(stranger.id)  # open: everyone
        assert await listed.access.allowed(someone.id)  # seeded from ACCESS_ALLOWLIST
        assert not await listed.access.allowed(stranger.id)
        with pytest.raises(InvitesOff):
            await allowlist.invite(listed, CLI_ACTOR)
    finally:
        await opened.llm.aclose()
        await listed.llm.aclose()


def test_entries_and_settings() -> None:
    assert parse_entry(" TG:123 ") == "telegram:123"
    assert parse_entry("dc:456") == "discord:456"
    assert parse_entry("<@!456>") == "discord:456"
    assert parse_entry("@Ann_B") == "@ann_b"
    for bad in ("ann", "telegram:", "slack:1", "@", "@bad-name"):
        with pytest.raises(BadEntry):
            parse_entry(bad)
    settings = AccessSettings.model_validate(
        {"mode": "Invite", "allowlist": "Telegram:1, @Ann,discord:2"}
    )
    assert settings.mode == "invite"
    assert settings.allowlist == ["telegram:1", "@ann", "discord:2"]
    with pytest.raises(ValidationError, match="not an entry"):
        AccessSettings.model_validate({"allowlist": "ann"})
    with pytest.raises(ValidationError):
        AccessSettings.model_validate({"mode": "closed"})
