"""Users and their platform identities."""

from __future__ import annotations

import dataclasses
import uuid
from collections.abc import Callable
from dataclasses import dataclass
from datetime import datetime, timedelta
from typing import Any

from sqlalchemy import bindparam, select, update
from sqlalchemy.exc import IntegrityError

from core.clock import utcnow
from core.db.engine import Database
from core.db.models import Identity, User
from core.recent_accounts import RecentAccounts
from core.text import storable
from core.tiers import Tier

# Writing last_seen on every update would make each message a write; this is enough.
SEEN_RESOLUTION = timedelta(minutes=5)


# Who writes, at nearly every update: built once, only the identity changes.
_BY_IDENTITY = (
    select(User, Identity.last_seen_at)
    .join(Identity, Identity.user_id == User.id)
    .where(
        Identity.platform == bindparam("platform"),
        Identity.platform_user_id == bindparam("user"),
    )
)


@dataclass(frozen=True)
class PlatformProfile:
    platform: str
    platform_user_id: str
    username: str | None = None
    display_name: str | None = None
    language: str | None = None
    chat_id: str | None = None


class AccountService:
    def __init__(self, db: Database, now: Callable[[], datetime] = utcnow) -> None:
        self.db = db
        self._now = now
        self.recent = RecentAccounts(db.engine.sync_engine)

    async def upsert(self, profile: PlatformProfile) -> User:
        """The user behind a platform account, created on first contact.

        One read in the common case; a write only for a new person or a stale
        last-seen time. Two first contacts at once both end on the same user.
        """
        username = storable(profile.username) if profile.username else profile.username
        name = storable(profile.display_name) if profile.display_name else profile.display_name
        if (username, name) != (profile.username, profile.display_name):
            profile = dataclasses.replace(profile, username=username, display_name=name)
        known = self.recent.get(profile.platform, profile.platform_user_id)
        generation = self.recent.generation
        if known is not None:
            row: tuple[User, datetime | None] | Any = (known.user, known.seen_at)
        else:
            async with self.db.read() as session:
                row = (
                    await session.execute(
                        _BY_IDENTITY,
                        {"platform": profile.platform, "user": profile.platform_user_id},
                    )
                ).one_or_none()
        now = self._now()
        if row is not None:
            user: User = row[0]
            seen: datetime | None = row[1]
            if seen is None or now - seen > SEEN_RESOLUTION:
                await self._touch(profile, user.id, now)  # clears `recent`
            else:
                self.recent.keep(profile.platform, profile.platform_user_id, user, seen, generation)
            return user
        try:
            return await self._create(profile, now)
        except IntegrityError:
            existing = await self.by_identity(profile.platform, profile.platform_user_id)
            if existing is None:
                raise
            return existing

    async def _create(self, profile: PlatformProfile, now: datetime) -> User:
        async with self.db.write() as session:
            user = User(
                display_name=profile.display_name,
                language=_short_language(profile.language),
                tier=Tier.FREE.value,
                last_seen_at=now,
            )
            session.add(user)
            await session.flush()
            session.add(
                Identity(
                    user_id=user.id,
                    platform=profile.platform,
                    platform_user_id=profile.platform_user_id,
                    username=profile.username,
                    chat_id=profile.chat_id,
                    last_seen_at=now,
                )
            )
        return user

    async def _touch(self, profile: PlatformProfile, user_id: int, now: datetime) -> None:
        """The account and its person were seen now (the person on any platform: the
        admin stats count active people from `users.last_seen_at`)."""
        async with self.db.write() as session:
            await session.execute(
                update(Identity)
                .where(
                    Identity.platform == profile.platform,
                    Identity.platform_user_id == profile.platform_user_id,
                )
                .values(last_seen_at=now, username=profile.username, is_blocked=False)
            )
            await session.execute(update(User).where(User.id == user_id).values(last_seen_at=now))

    async def by_identity(self, platform: str, platform_user_id: str) -> User | None:
        async with self.db.read() as session:
            return await session.scalar(
                select(User)
                .join(Identity, Identity.user_id == User.id)
                .where(Identity.platform == platform, Identity.platform_user_id == platform_user_id)
            )

    async def get(self, user_id: int) -> User | None:
        async with self.db.read() as session:
            return await session.get(User, user_id)

    async def _set(self, user_id: int, **values: object) -> None:
        async with self.db.write() as session:
            await session.execute(
                update(User).where(User.id == user_id).values(updated_at=self._now(), **values)
            )

    async def set_default_model(self, user_id: int, model_id: str | None) -> None:
        await self._set(user_id, default_model=model_id)

    async def set_system_prompt(self, user_id: int, prompt: str | None) -> None:
        await self._set(user_id, system_prompt=storable(prompt) if prompt else None)

    async def set_language(self, user_id: int, language: str) -> None:
        await self._set(user_id, language=_short_language(language))

    async def set_current_conversation(
        self, user_id: int, conversation_id: uuid.UUID | None
    ) -> None:
        await self._set(user_id, current_conversation_id=conversation_id)

    async def set_banned(self, user_id: int, banned: bool, reason: str | None = None) -> None:
        await self._set(user_id, is_banned=banned, ban_reason=reason if banned else None)

    async def mark_blocked(self, platform: str, platform_user_id: str) -> None:
        """The person blocked the bot; stop writing to them on that platform."""
        async with self.db.write() as session:
            await session.execute(
                update(Identity)
                .where(Identity.platform == platform, Identity.platform_user_id == platform_user_id)
                .values(is_blocked=True)
            )


def _short_language(code: str | None) -> str | None:
    """`en-US` -> `en`; the product speaks languages, not locales."""
    if not code:
        return None
    return code.split("-")[0].split("_")[0].lower()[:8] or None
