"""Private deployments: who may use the bot (ACCESS_MODE), and what everyone else
hears. Telegram and Discord ask `allowed` for every update or interaction of a
person and, for a refused person's message, `should_note` whether to say the bot
is private (once a day per account); nothing of theirs reaches a model.

- `open` (the default): everyone, nothing is read.
- `allowlist`: the admins (TELEGRAM_ADMIN_IDS / DISCORD_ADMIN_IDS, and every
  account linked to one) and the people on the list: an entry names a platform
  account (`telegram:123`, `discord:456`) or a Telegram `@username` (any case).
- `invite`: those, and whoever used an invite (`redeem`). An invite is tied to our
  user, so every account they `/link` has access too.

The list lives in the database (`access_entries`): ACCESS_ALLOWLIST seeds it when
a process first needs it, and admins edit it (core/admin/allowlist.py); every
check reads it, so a change applies at once in every process.
"""

from __future__ import annotations

import hashlib
import re
import secrets
from dataclasses import dataclass
from datetime import date, datetime, timedelta
from typing import Any

from sqlalchemy import select, update
from sqlalchemy.dialects import postgresql, sqlite
from sqlalchemy.ext.asyncio import AsyncSession

from core.admin.access import configured_ids
from core.clock import utcnow
from core.config import Settings
from core.db.engine import Database
from core.db.models import (
    AccessEntry,
    AccessInvite,
    AccessNote,
    AccessRedemption,
    Identity,
    User,
)
from core.db.upsert import insert_ignore
from core.errors import OneAIError
from core.i18n import t

CODE_BYTES = 12  # 16 URL-safe characters: unguessable, and fits a /start deep link
_CODE = re.compile(r"[A-Za-z0-9_-]{8,64}")  # what Telegram lets through `?start=`
_MENTION = re.compile(r"<@!?(\d+)>")
_USERNAME = re.compile(r"@[A-Za-z0-9_]{1,32}")
_ACCOUNT = re.compile(r"(telegram|discord):[0-9]{1,20}")
_ALIASES = {"tg": "telegram", "dc": "discord"}


# -- errors ---------------------------------------------------------------------------


class AccessError(OneAIError):
    """An invite that cannot be used, or a bad allowlist entry; `user_message` is
    the English text of `error.<code>`."""

    code = "access_error"

    def __init__(self, **details: object) -> None:
        super().__init__(t("en", f"error.{self.code}", **details), **details)


class InviteUnknown(AccessError):
    code = "access_invite_unknown"


class InviteUsedUp(AccessError):
    code = "access_invite_used_up"


class InviteExpired(AccessError):
    code = "access_invite_expired"


class BadEntry(AccessError):
    code = "access_bad_entry"

    def __init__(self, entry: str) -> None:
        super().__init__(entry=entry[:80])


# -- entries and codes ---------------------------------------------------------------


def parse_entry(text: str) -> str:
    """An allowlist entry as stored: `telegram:123`, `discord:456` or `@name`
    (lowercased). Accepts `tg:`/`dc:` and a Discord mention `<@456>`; BadEntry
    for anything else."""
    value = text.strip()
    if mention := _MENTION.fullmatch(value):
        return f"discord:{mention.group(1)}"
    if _USERNAME.fullmatch(value):
        return value.lower()
    platform, sep, account = value.partition(":")
    if sep:
        name = platform.strip().lower()
        entry = f"{_ALIASES.get(name, name)}:{account.strip()}"
        if _ACCOUNT.fullmatch(entry):
            return entry
    raise BadEntry(value)


def new_invite_code() -> str:
    return secrets.token_urlsafe(CODE_BYTES)


def hash_invite(code: str) -> str:
    return hashlib.sha256(code.strip().encode()).hexdigest()


def looks_like_code(text: str) -> bool:
    return _CODE.fullmatch(text.strip()) is not None


def account_key(platform: str, platform_user_id: str | int) -> str:
    return f"{platform}:{platform_user_id}"


@dataclass(frozen=True)
class Invite:
    id: int
    code: str  # shown once, to the admin who made it; only its hash is stored
    uses: int
    expires_at: datetime


@dataclass(frozen=True)
class Redeemed:
    """`already`: the person had access before; no use was taken."""

    already: bool


# -- the service ----------------------------------------------------------------------


class AccessService:
    def __init__(self, db: Database, settings: Settings) -> None:
        self.db = db
        self.settings = settings
        self._seeded = False

    @property
    def mode(self) -> str:
        return self.settings.access.mode

    @property
    def private(self) -> bool:
        return self.mode != "open"

    @property
    def invites_on(self) -> bool:
        return self.mode == "invite"

    async def seed(self) -> None:
        """Put ACCESS_ALLOWLIST's entries into the list (those missing; once per
        process). An entry an admin removed comes back at the next start while it
        is still in ACCESS_ALLOWLIST."""
        if self._seeded:
            return
        entries = self.settings.access.allowlist
        if entries:
            now = utcnow()
            async with self.db.write() as session:
                await insert_ignore(
                    session,
                    AccessEntry.__table__,  # type: ignore[arg-type]
                    [{"entry": e, "source": "config", "created_at": now} for e in entries],
                    ["entry"],
                )
        self._seeded = True

    async def allowed(self, user_id: int) -> bool:
        """Whether this person may use the bot now."""
        if not self.private:
            return True
        await self.seed()
        async with self.db.read() as session:
            return await self._allowed(session, user_id)

    async def _allowed(self, session: AsyncSession, user_id: int) -> bool:
        accounts = (
            await session.execute(
                select(Identity.platform, Identity.platform_user_id, Identity.username).where(
                    Identity.user_id == user_id
                )
            )
        ).all()
        admins = configured_ids(self.settings)
        if any(account in admins.get(platform, ()) for platform, account, _ in accounts):
            return True
        candidates = {account_key(platform, account) for platform, account, _ in accounts}
        candidates |= {
            f"@{username.lower()}"
            for platform, _, username in accounts
            if platform == "telegram" and username
        }
        if candidates:
            found = await session.scalar(
                select(AccessEntry.id).where(AccessEntry.entry.in_(sorted(candidates))).limit(1)
            )
            if found is not None:
                return True
        if not self.invites_on:
            return False
        redeemed = await session.scalar(
            select(AccessRedemption.id).where(AccessRedemption.user_id == user_id).limit(1)
        )
        return redeemed is not None

    async def should_note(self, platform: str, platform_user_id: str | int) -> bool:
        """Whether to tell this refused account now that the bot is private: True
        at most once per UTC day per account, across processes (the database
        decides: one conditional UPDATE, or the INSERT of the first note)."""
        account = account_key(platform, platform_user_id)
        today = utcnow().date()
        async with self.db.read() as session:
            told = await session.scalar(
                select(AccessNote.told_on).where(AccessNote.account == account)
            )
        if told is not None and told >= today:
            return False  # the common case for a refused person who keeps writing
        async with self.db.write() as session:
            return await self._mark(session, account, today)

    @staticmethod
    async def _mark(session: AsyncSession, account: str, today: date) -> bool:
        moved: Any = await session.execute(
            update(AccessNote)
            .where(AccessNote.account == account, AccessNote.told_on < today)
            .values(told_on=today)
        )
        if moved.rowcount:
            return True
        dialect = session.bind.dialect.name if session.bind is not None else "sqlite"
        insert = postgresql.insert if dialect == "postgresql" else sqlite.insert
        created = await session.scalar(
            insert(AccessNote)
            .values(account=account, told_on=today)
            .on_conflict_do_nothing(index_elements=["account"])
            .returning(AccessNote.account)
        )
        return created is not None

    # -- invites ------------------------------------------------------------------------

    async def create_invite(
        self, session: AsyncSession, created_by: int | None, uses: int, days: int
    ) -> Invite:
        """A new invite, in the caller's transaction (the admin action audits it)."""
        code = new_invite_code()
        expires_at = utcnow() + timedelta(days=days)
        row = AccessInvite(
            code_hash=hash_invite(code),
            uses_total=uses,
            uses_left=uses,
            expires_at=expires_at,
            created_by_user_id=created_by,
            created_at=utcnow(),
        )
        session.add(row)
        await session.flush()
        return Invite(row.id, code, uses, expires_at)

    async def redeem(self, user_id: int, code: str) -> Redeemed:
        """Use one of the invite's uses for this person, for good. A person with
        access already keeps it and takes no use. The use is taken by one UPDATE
        (uses left and not expired, or nothing), so two people racing for the last
        use cannot both get it. InviteUnknown, InviteUsedUp or InviteExpired."""
        if not looks_like_code(code):
            raise InviteUnknown()
        digest = hash_invite(code)
        now = utcnow()
        async with self.db.write() as session:
            # The person's row, locked: their own two redeems at once queue here.
            await session.execute(select(User.id).where(User.id == user_id).with_for_update())
            if await self._allowed(session, user_id):
                return Redeemed(already=True)
            invite_id = await session.scalar(
                update(AccessInvite)
                .where(
                    AccessInvite.code_hash == digest,
                    AccessInvite.uses_left > 0,
                    AccessInvite.expires_at > now,
                )
                .values(uses_left=AccessInvite.uses_left - 1)
                .returning(AccessInvite.id)
            )
            if invite_id is None:
                found = (
                    await session.execute(
                        select(AccessInvite.uses_left, AccessInvite.expires_at).where(
                            AccessInvite.code_hash == digest
                        )
                    )
                ).first()
                if found is None:
                    raise InviteUnknown()
                if found.expires_at <= now:
                    raise InviteExpired()
                raise InviteUsedUp()
            session.add(AccessRedemption(invite_id=invite_id, user_id=user_id, redeemed_at=now))
        return Redeemed(already=False)
