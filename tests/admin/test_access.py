"""Who is an admin: the configured accounts and every account linked to one."""

from __future__ import annotations

from core.admin.access import (
    AdminIds,
    admin_actor,
    admin_user_ids,
    is_admin,
    is_admin_user,
)
from core.services import Services
from tests.admin.conftest import DISCORD_ADMIN, TELEGRAM_ADMIN, Build, person


async def test_configured_accounts_are_admins_before_they_ever_wrote(services: Services) -> None:
    assert await is_admin(services, "telegram", TELEGRAM_ADMIN)
    assert await is_admin(services, "discord", str(DISCORD_ADMIN))
    # The ids are per platform: a Telegram admin's id on Discord is someone else.
    assert not await is_admin(services, "discord", TELEGRAM_ADMIN)
    assert not await is_admin(services, "telegram", 5)
    assert await admin_user_ids(services) == AdminIds(
        frozenset({TELEGRAM_ADMIN}), frozenset({DISCORD_ADMIN})
    )


async def test_an_account_linked_to_an_admin_is_an_admin(services: Services) -> None:
    admin = await person(services, "telegram", TELEGRAM_ADMIN)
    other = await person(services, "discord", 999)
    stranger = await person(services, "discord", 998)
    assert not await is_admin(services, "discord", 999)
    code = await services.linking.issue_code(admin, "telegram")
    await services.linking.redeem(other, "discord", code.code)
    assert await is_admin(services, "discord", 999)
    assert await is_admin_user(services, admin)
    assert not await is_admin(services, "discord", 998)
    assert not await is_admin_user(services, stranger)
    ids = await admin_user_ids(services)
    assert ids.of("telegram") == {TELEGRAM_ADMIN}
    assert ids.of("discord") == {DISCORD_ADMIN, 999}
    actor = await admin_actor(services, "discord", 999)
    assert actor is not None
    assert (actor.user_id, actor.name) == (admin, "discord:999")
    assert await admin_actor(services, "discord", 998) is None


async def test_linking_the_other_way_makes_the_admin_account_join_a_person(
    services: Services,
) -> None:
    """The admin enters someone's code: their account joins that user, which is then
    an admin's user (all its accounts are admins)."""
    someone = await person(services, "telegram", 777)
    admin = await person(services, "discord", DISCORD_ADMIN)
    code = await services.linking.issue_code(someone, "telegram")
    await services.linking.redeem(admin, "discord", code.code)
    assert await is_admin(services, "telegram", 777)
    assert await is_admin_user(services, someone)


async def test_without_configured_admins_nobody_is_one(build: Build) -> None:
    services = await build()
    services.settings.telegram.admin_ids.clear()
    services.settings.discord.admin_ids.clear()
    user = await person(services, "telegram", TELEGRAM_ADMIN)
    assert not await is_admin(services, "telegram", TELEGRAM_ADMIN)
    assert not await is_admin_user(services, user)
    assert await admin_user_ids(services) == AdminIds(frozenset(), frozenset())
