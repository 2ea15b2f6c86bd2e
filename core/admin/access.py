"""Who is an administrator, and who did an admin action.

Admins are the accounts in TELEGRAM_ADMIN_IDS and DISCORD_ADMIN_IDS, and every
other account linked to one of them (`/link` joins accounts into one user, so an
admin who linked Discord is an admin there too). To anyone else the admin
commands do not exist: the platforms answer them as unknown commands, leave them
out of the command menus (`admin_user_ids` says whose menus show them) and never
send them to a model.
"""

from __future__ import annotations

from collections.abc import Iterable
from dataclasses import dataclass
from typing import TYPE_CHECKING, Any

from sqlalchemy import and_, false, or_, select
from sqlalchemy.orm import aliased

from core.config import Settings
from core.db.models import Identity

if TYPE_CHECKING:
    from core.services import Services

ADMIN_PLATFORMS = ("telegram", "discord")


@dataclass(frozen=True)
class Actor:
    """Who did an admin action, as the audit log names them."""

    user_id: int | None  # the admin's user; None for an operator at a shell
    name: str  # "telegram:123", "discord:456", "cli"


# `oneai admin …`: an operator at a shell, not a person of the bot.
CLI_ACTOR = Actor(None, "cli")


@dataclass(frozen=True)
class AdminIds:
    """Every platform account that is an admin's (configured or linked): whose
    command menu shows the admin commands."""

    telegram: frozenset[int]
    discord: frozenset[int]

    def of(self, platform: str) -> frozenset[int]:
        return {"telegram": self.telegram, "discord": self.discord}.get(platform, frozenset())


def configured_ids(settings: Settings) -> dict[str, frozenset[str]]:
    """The admin ids of the configuration, per platform, as identities store them."""
    return {
        "telegram": frozenset(str(i) for i in settings.telegram.admin_ids),
        "discord": frozenset(str(i) for i in settings.discord.admin_ids),
    }


def _is_configured(identity: Any, ids: dict[str, frozenset[str]]) -> Any:
    """SQL: the identity row is one of the configured admin accounts."""
    terms = [
        and_(identity.platform == platform, identity.platform_user_id.in_(sorted(values)))
        for platform, values in ids.items()
        if values
    ]
    return or_(*terms) if terms else false()


async def is_admin(services: Services, platform: str, platform_user_id: int | str) -> bool:
    """Whether this platform account is an admin's: configured, or linked to one."""
    ids = configured_ids(services.settings)
    account = str(platform_user_id)
    if account in ids.get(platform, frozenset()):
        return True
    if not any(ids.values()):
        return False
    me, other = aliased(Identity), aliased(Identity)
    async with services.db.read() as session:
        found = await session.scalar(
            select(other.id)
            .join(me, me.user_id == other.user_id)
            .where(
                me.platform == platform,
                me.platform_user_id == account,
                _is_configured(other, ids),
            )
            .limit(1)
        )
    return found is not None


async def is_admin_user(services: Services, user_id: int) -> bool:
    """Whether one of this user's accounts is a configured admin's."""
    ids = configured_ids(services.settings)
    if not any(ids.values()):
        return False
    async with services.db.read() as session:
        found = await session.scalar(
            select(Identity.id)
            .where(Identity.user_id == user_id, _is_configured(Identity, ids))
            .limit(1)
        )
    return found is not None


async def admin_user_ids(services: Services) -> AdminIds:
    """The configured admin accounts and every account linked to one of them."""
    ids = configured_ids(services.settings)
    found: dict[str, set[str]] = {platform: set(values) for platform, values in ids.items()}
    if any(ids.values()):
        admin = aliased(Identity)
        async with services.db.read() as session:
            rows = await session.execute(
                select(Identity.platform, Identity.platform_user_id).where(
                    Identity.user_id.in_(select(admin.user_id).where(_is_configured(admin, ids))),
                    Identity.platform.in_(ADMIN_PLATFORMS),
                )
            )
            for platform, account in rows:
                found[platform].add(account)
    return AdminIds(_ints(found["telegram"]), _ints(found["discord"]))


def _ints(values: Iterable[str]) -> frozenset[int]:
    return frozenset(int(value) for value in values if value.lstrip("-").isdigit())


async def admin_actor(
    services: Services, platform: str, platform_user_id: int | str
) -> Actor | None:
    """The admin behind this account, for the audit log; None for anyone else."""
    if not await is_admin(services, platform, platform_user_id):
        return None
    user = await services.accounts.by_identity(platform, str(platform_user_id))
    return Actor(user.id if user is not None else None, f"{platform}:{platform_user_id}")
