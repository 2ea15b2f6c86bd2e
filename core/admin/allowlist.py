"""What admins change about who may use a private deployment: the allowlist
(add, remove, list) and invites. Each change is one write transaction with its
`audit_log` row; the access check reads the list on every update, so a change
applies at once in every process, without a restart.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import TYPE_CHECKING

from sqlalchemy import delete, select

from core.access import Invite, parse_entry
from core.admin.access import Actor
from core.admin.actions import ActionResult
from core.admin.audit import write_audit
from core.admin.errors import BadDays, BadUses, InvitesOff
from core.clock import utcnow
from core.db.models import AccessEntry
from core.i18n import t

if TYPE_CHECKING:
    from core.services import Services

MAX_USES = 1000
MAX_DAYS = 365
DEFAULT_USES = 1
DEFAULT_DAYS = 7
TIME = "%Y-%m-%d %H:%M UTC"


def _mode_note(services: Services, lang: str) -> list[str]:
    return [] if services.access.private else [t(lang, "admin.done.open_mode")]


async def allow(services: Services, actor: Actor, text: str, *, lang: str = "en") -> ActionResult:
    """Put an entry on the allowlist (BadEntry for one that cannot be)."""
    entry = parse_entry(text)
    await services.access.seed()
    async with services.db.write() as session:
        found = await session.scalar(select(AccessEntry.id).where(AccessEntry.entry == entry))
        audit_id = None
        if found is None:
            session.add(
                AccessEntry(
                    entry=entry, source="admin", added_by_user_id=actor.user_id, created_at=utcnow()
                )
            )
            audit_id = await write_audit(
                session,
                actor,
                "access_allow",
                before={"listed": False},
                after={"listed": True},
                entry=entry,
            )
    key = "admin.done.allow" if audit_id is not None else "admin.done.allow_already"
    return ActionResult(
        "access_allow",
        None,
        audit_id is not None,
        {"listed": found is not None},
        {"listed": True},
        audit_id,
        t(lang, key, entry=entry),
        notes=_mode_note(services, lang),
    )


async def deny(services: Services, actor: Actor, text: str, *, lang: str = "en") -> ActionResult:
    """Take an entry off the allowlist. People who used an invite keep their access."""
    entry = parse_entry(text)
    await services.access.seed()
    async with services.db.write() as session:
        removed = (
            await session.execute(
                delete(AccessEntry).where(AccessEntry.entry == entry).returning(AccessEntry.id)
            )
        ).first()
        audit_id = None
        if removed is not None:
            audit_id = await write_audit(
                session,
                actor,
                "access_deny",
                before={"listed": True},
                after={"listed": False},
                entry=entry,
            )
    notes = _mode_note(services, lang)
    if entry in services.settings.access.allowlist:
        notes.append(t(lang, "admin.done.deny_config"))
    key = "admin.done.deny" if removed is not None else "admin.done.deny_missing"
    return ActionResult(
        "access_deny",
        None,
        removed is not None,
        {"listed": removed is not None},
        {"listed": False},
        audit_id,
        t(lang, key, entry=entry),
        notes=notes,
    )


@dataclass(frozen=True)
class Allowlist:
    mode: str
    entries: list[str]
    text: str


async def allowlist(services: Services, *, lang: str = "en") -> Allowlist:
    """The mode and every entry on the list, as the admin reads it."""
    await services.access.seed()
    async with services.db.read() as session:
        rows = (
            await session.execute(
                select(AccessEntry.entry, AccessEntry.source).order_by(AccessEntry.entry)
            )
        ).all()
    mode = services.access.mode
    if not rows:
        lines = [t(lang, "admin.access.empty", mode=mode)]
    else:
        lines = [t(lang, "admin.access.header", mode=mode, count=len(rows))]
        configured = set(services.settings.access.allowlist)
        lines += [
            t(
                lang,
                "admin.access.line",
                entry=entry,
                config=t(lang, "admin.access.from_config") if entry in configured else "",
            )
            for entry, _ in rows
        ]
    lines.append(t(lang, "admin.access.usage"))
    return Allowlist(mode, [entry for entry, _ in rows], "\n".join(lines))


@dataclass(frozen=True)
class InviteMade:
    invite: Invite
    audit_id: int

    @property
    def until(self) -> str:
        return self.invite.expires_at.strftime(TIME)


async def invite(
    services: Services,
    actor: Actor,
    uses: int = DEFAULT_USES,
    days: int = DEFAULT_DAYS,
) -> InviteMade:
    """A new invite code for `uses` people, valid `days` days. The platform shows
    it (a t.me deep link, or `/start CODE` on Discord); only its hash is kept."""
    if not services.access.invites_on:
        raise InvitesOff(services.access.mode)
    if not 0 < uses <= MAX_USES:
        raise BadUses(MAX_USES)
    if not 0 < days <= MAX_DAYS:
        raise BadDays(MAX_DAYS)
    async with services.db.write() as session:
        made = await services.access.create_invite(session, actor.user_id, uses, days)
        audit_id = await write_audit(
            session,
            actor,
            "access_invite",
            after={"uses": uses, "expires_at": made.expires_at},
            invite=made.id,
        )
    return InviteMade(made, audit_id)


def parse_invite_args(words: list[str]) -> tuple[int, int] | None:
    """`[uses] [days]` as typed; None when they are not whole numbers."""
    if len(words) > 2 or not all(w.isdigit() and w.isascii() for w in words):
        return None
    uses = int(words[0]) if words else DEFAULT_USES
    days = int(words[1]) if len(words) > 1 else DEFAULT_DAYS
    return uses, days
