"""The audit log: every admin action writes one row in the transaction that makes
the change (who, what, whose, before and after, when), and admins page through
the latest rows as lines of text.

A row's `details` hold `actor` (the admin's account, or "cli"), `before` and
`after` (JSON objects), and what else the action names (a reason, a model).
Rows other code writes (`link`, `oneai grant`) are listed the same way.
"""

from __future__ import annotations

import json
import math
from dataclasses import dataclass
from datetime import date, datetime
from decimal import Decimal
from typing import TYPE_CHECKING, Any

from sqlalchemy import func, select
from sqlalchemy.ext.asyncio import AsyncSession

from core.admin.access import Actor
from core.clock import utcnow
from core.db.models import AuditLog
from core.i18n import t

if TYPE_CHECKING:
    from core.services import Services

PER_PAGE = 10
# A line of the audit list never runs longer than this.
LINE_LIMIT = 160


def jsonable(value: Any) -> Any:
    """`value` with times, dates and decimals as strings, so a JSON column takes it."""
    if isinstance(value, dict):
        return {str(key): jsonable(item) for key, item in value.items()}
    if isinstance(value, list | tuple | set | frozenset):
        return [jsonable(item) for item in value]
    if isinstance(value, datetime | date):
        return value.isoformat()
    if isinstance(value, Decimal):
        return str(value)
    return value


async def write_audit(
    session: AsyncSession,
    actor: Actor,
    action: str,
    *,
    target_user_id: int | None = None,
    before: dict[str, Any] | None = None,
    after: dict[str, Any] | None = None,
    **details: Any,
) -> int:
    """Record an admin action inside the caller's transaction; the row's id."""
    row = AuditLog(
        actor_user_id=actor.user_id,
        action=action,
        target_user_id=target_user_id,
        details=jsonable(
            {"actor": actor.name, "before": before or {}, "after": after or {}, **details}
        ),
        created_at=utcnow(),
    )
    session.add(row)
    await session.flush()
    return row.id


@dataclass(frozen=True)
class AuditEntry:
    id: int
    at: datetime
    actor: str  # "telegram:123", "cli", or "#42" (a user id) for rows of other code
    action: str
    target_user_id: int | None
    details: dict[str, Any]
    text: str  # one line: when, who, what, whose, the change


@dataclass(frozen=True)
class AuditPage:
    entries: list[AuditEntry]  # newest first
    page: int  # 1-based
    pages: int  # at least 1
    total: int
    text: str  # the header and a line per entry, in the admin's language

    @property
    def has_previous(self) -> bool:
        """A newer page exists."""
        return self.page > 1

    @property
    def has_next(self) -> bool:
        """An older page exists."""
        return self.page < self.pages


def _actor(row: AuditLog) -> str:
    named = row.details.get("actor") if isinstance(row.details, dict) else None
    if isinstance(named, str) and named:
        return named
    return f"#{row.actor_user_id}" if row.actor_user_id is not None else "system"


def _short(value: Any) -> str:
    if value is None:
        return "—"
    if isinstance(value, dict):
        return ", ".join(f"{key}={_short(item)}" for key, item in value.items())
    if isinstance(value, str) and len(value) >= 16 and value[4:5] == "-" and "T" in value:
        return value[:16].replace("T", " ")  # an ISO time: to the minute
    return json.dumps(value, ensure_ascii=False) if not isinstance(value, str) else value


def _change(details: dict[str, Any]) -> str:
    """What changed: the keys of `after` that differ from `before`, then the rest."""
    before = details.get("before") if isinstance(details.get("before"), dict) else {}
    after = details.get("after") if isinstance(details.get("after"), dict) else {}
    assert isinstance(before, dict) and isinstance(after, dict)
    parts = [
        f"{key}: {_short(before.get(key))} → {_short(value)}"
        for key, value in after.items()
        if before.get(key) != value and not isinstance(value, dict | list)
    ]
    extra = {
        key: value
        for key, value in details.items()
        if key not in ("actor", "before", "after") and value not in (None, "", [], {})
    }
    if extra:
        parts.append(_short(extra))
    return "; ".join(parts)


def entry_of(row: AuditLog) -> AuditEntry:
    details = row.details if isinstance(row.details, dict) else {}
    actor = _actor(row)
    target = f" #{row.target_user_id}" if row.target_user_id is not None else ""
    change = _change(details)
    line = f"{row.created_at:%Y-%m-%d %H:%M} · {actor} · {row.action}{target}"
    if change:
        line += f" · {change}"
    if len(line) > LINE_LIMIT:
        line = line[: LINE_LIMIT - 1] + "…"
    return AuditEntry(row.id, row.created_at, actor, row.action, row.target_user_id, details, line)


async def audit_page(
    services: Services, page: int = 1, lang: str = "en", *, per_page: int = PER_PAGE
) -> AuditPage:
    """The `page`-th page of the audit log, newest first (a page past the end
    shows the last one)."""
    async with services.db.read() as session:
        total = int(await session.scalar(select(func.count()).select_from(AuditLog)) or 0)
        pages = max(1, math.ceil(total / per_page))
        page = min(max(page, 1), pages)
        rows = (
            await session.scalars(
                select(AuditLog)
                .order_by(AuditLog.id.desc())
                .limit(per_page)
                .offset((page - 1) * per_page)
            )
        ).all()
    entries = [entry_of(row) for row in rows]
    if not entries:
        text = t(lang, "admin.audit.empty")
    else:
        header = t(lang, "admin.audit.header", page=page, pages=pages, total=total)
        text = "\n".join([header, *(entry.text for entry in entries)])
    return AuditPage(entries, page, pages, total, text)
