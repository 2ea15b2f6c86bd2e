"""What an admin changes about a person: a plan for some days, taking it away,
resetting their quotas, banning and unbanning.

Each action is one write transaction that makes the change and writes its
`audit_log` row (who, what, whose, before and after); messages to the person that
a plan change causes go through the outbox like any plan change's. A ban also
stops the person's answers that are streaming, wherever they run: here at once,
in another process through the Redis stop channel, and without Redis within a
worker heartbeat (every process stops the answers of banned people it streams:
core/admin/sync.py).
"""

from __future__ import annotations

import logging
from dataclasses import dataclass, field
from datetime import timedelta
from typing import TYPE_CHECKING, Any

from sqlalchemy import select, update
from sqlalchemy.ext.asyncio import AsyncSession

from core.admin.access import Actor, is_admin_user
from core.admin.audit import write_audit
from core.admin.banned import forget_banned
from core.admin.errors import (
    AdminTarget,
    BadDays,
    BadQuota,
    BadTier,
    NothingToRevoke,
    PersonNotFound,
)
from core.clock import utcnow
from core.conversations.store import streaming_answers
from core.db.models import ChatMessage, Subscription, UsageQuota, User
from core.grants import MAX_DAYS
from core.i18n import t
from core.subscriptions import Purchase, Reason
from core.text import storable
from core.tiers import TIERS, QuotaKey, Tier

if TYPE_CHECKING:
    from core.services import Services

log = logging.getLogger(__name__)

GRANT_PROVIDER = "grant"
REASON_LIMIT = 500
TIME = "%Y-%m-%d %H:%M UTC"


@dataclass(frozen=True)
class ActionResult:
    action: str  # grant | revoke | reset_quota | ban | unban | model_disable | …
    user_id: int | None  # whose (None for actions on everyone)
    changed: bool  # False: it was so already, nothing was written
    before: dict[str, Any]
    after: dict[str, Any]
    audit_id: int | None  # the audit row (None when nothing changed)
    text: str  # one line for the admin, in their language
    # A ban: the person's answers that were streaming and were told to stop.
    stopped: int = 0
    notes: list[str] = field(default_factory=list)  # more lines for the admin


# -- plans ---------------------------------------------------------------------------


async def _user(session: AsyncSession, user_id: int) -> User:
    """The person, locked for this transaction (PostgreSQL; SQLite has one writer)."""
    user = await session.scalar(
        select(User)
        .where(User.id == user_id)
        .with_for_update()
        .execution_options(populate_existing=True)
    )
    if user is None:
        raise PersonNotFound(f"#{user_id}")
    return user


async def _plan(session: AsyncSession, user: User) -> dict[str, Any]:
    sub = await session.scalar(
        select(Subscription)
        .where(Subscription.user_id == user.id, Subscription.is_current)
        .execution_options(populate_existing=True)
    )
    if sub is None:
        return {"tier": user.tier, "status": user.tier_status, "period_end": None}
    return {
        "tier": sub.tier,
        "status": sub.status,
        "period_end": sub.current_period_end,
        "provider": sub.payment_provider,
        "recurring": bool(sub.meta.get("recurring")),
    }


def _parse_tier(tier: Tier | str) -> Tier:
    try:
        return Tier(str(tier).strip().lower())
    except ValueError:
        raise BadTier(str(tier)) from None


async def grant(
    services: Services,
    actor: Actor,
    user_id: int,
    tier: Tier | str,
    days: int,
    *,
    lang: str = "en",
) -> ActionResult:
    """Give `tier` for `days` days (added to the current end when the person has
    that plan already; a different plan replaces it from today). The person is
    told, as for any plan change. Taking a plan away is `revoke`."""
    plan = _parse_tier(tier)
    if plan is Tier.FREE:
        raise BadTier(plan.value)
    if not 0 < days <= MAX_DAYS:
        raise BadDays(MAX_DAYS)
    async with services.db.write() as session:
        user = await _user(session, user_id)
        before = await _plan(session, user)
        change = await services.subscriptions.activate(
            session,
            user_id,
            Purchase(
                tier=plan,
                provider=GRANT_PROVIDER,
                period=timedelta(days=days),
                reason=Reason.GRANT,
            ),
        )
        assert change is not None  # a grant always changes the plan
        after = await _plan(session, user)
        audit_id = await write_audit(
            session,
            actor,
            "grant",
            target_user_id=user_id,
            before=before,
            after=after,
            days=days,
            subscription=change.subscription_id,
        )
    services.outbox.wake()
    until = change.period_end.strftime(TIME) if change.period_end else "—"
    text = t(
        lang,
        "admin.done.grant",
        user=user_id,
        old=TIERS[change.old_tier].name,
        new=TIERS[plan].name,
        until=until,
        days=days,
    )
    return ActionResult("grant", user_id, True, before, after, audit_id, text)


async def revoke(
    services: Services, actor: Actor, user_id: int, *, lang: str = "en"
) -> ActionResult:
    """End the person's plan now: back to free (quota limits follow, counters stay).
    A plan that renews at its provider (a Stars or Razorpay subscription) keeps
    renewing there: the result says so."""
    async with services.db.write() as session:
        user = await _user(session, user_id)
        before = await _plan(session, user)
        change = await services.subscriptions.end(session, user_id, Reason.GRANT)
        if change is None:
            raise NothingToRevoke(user_id)
        after = await _plan(session, user)
        audit_id = await write_audit(
            session,
            actor,
            "revoke",
            target_user_id=user_id,
            before=before,
            after=after,
            subscription=change.subscription_id,
        )
    services.outbox.wake()
    text = t(lang, "admin.done.revoke", user=user_id, old=TIERS[change.old_tier].name)
    notes = []
    if before.get("recurring") and before.get("provider") not in (None, GRANT_PROVIDER):
        notes.append(t(lang, "admin.done.revoke_renews", provider=before["provider"]))
    return ActionResult("revoke", user_id, True, before, after, audit_id, text, notes=notes)


# -- quotas --------------------------------------------------------------------------


async def reset_quota(
    services: Services,
    actor: Actor,
    user_id: int,
    key: QuotaKey | str | None = None,
    *,
    lang: str = "en",
) -> ActionResult:
    """Set the person's use in the current window to 0, for one quota or all; the
    windows keep their reset times."""
    quota: QuotaKey | None = None
    if key is not None:
        try:
            quota = QuotaKey(str(key))
        except ValueError:
            raise BadQuota(str(key), ", ".join(QuotaKey)) from None
    now = utcnow()
    async with services.db.write() as session:
        user = await _user(session, user_id)
        await services.quotas.ensure_rows(session, user_id, Tier(user.tier))
        where = [UsageQuota.user_id == user_id]
        if quota is not None:
            where.append(UsageQuota.quota_key == quota.value)
        rows = (
            await session.execute(
                select(UsageQuota.quota_key, UsageQuota.used_count, UsageQuota.next_reset_at)
                .where(*where)
                .order_by(UsageQuota.quota_key)
                .with_for_update()
            )
        ).all()
        # A window already over counts nothing: its next use starts a new one.
        before = {name: (used if resets > now else 0) for name, used, resets in rows}
        await session.execute(
            update(UsageQuota)
            .where(*where)
            .values(used_count=0, updated_at=now)
            .execution_options(synchronize_session=False)
        )
        after = dict.fromkeys(before, 0)
        audit_id = await write_audit(
            session,
            actor,
            "reset_quota",
            target_user_id=user_id,
            before=before,
            after=after,
            quota=quota.value if quota else "all",
        )
    what = t(lang, f"quota.{quota.value}") if quota else t(lang, "admin.done.all_quotas")
    text = t(lang, "admin.done.reset", user=user_id, quotas=what)
    return ActionResult("reset_quota", user_id, any(before.values()), before, after, audit_id, text)


# -- bans ----------------------------------------------------------------------------


async def ban(
    services: Services,
    actor: Actor,
    user_id: int,
    reason: str | None = None,
    *,
    lang: str = "en",
) -> ActionResult:
    """Ban the person (with a reason, kept with them and in the audit log) and stop
    their answers that are streaming. The bots then answer them with one short
    note an hour at most (`should_tell_banned`) and never call a model. Admins
    cannot be banned. Banning again only updates the reason."""
    if await is_admin_user(services, user_id):
        raise AdminTarget(user_id)
    why = storable(reason.strip())[:REASON_LIMIT] if reason and reason.strip() else None
    async with services.db.write() as session:
        user = await _user(session, user_id)
        before = {"banned": user.is_banned, "reason": user.ban_reason}
        after = {"banned": True, "reason": why}
        changed = before != after
        audit_id = None
        if changed:
            user.is_banned = True
            user.ban_reason = why
            audit_id = await write_audit(
                session, actor, "ban", target_user_id=user_id, before=before, after=after
            )
    forget_banned(user_id)  # the next thing they send gets the note at once
    stopped = await stop_answers(services, user_id)
    text = t(lang, "admin.done.ban", user=user_id, reason=why or "—")
    notes = [t(lang, "admin.done.stopped", count=stopped)] if stopped else []
    return ActionResult("ban", user_id, changed, before, after, audit_id, text, stopped, notes)


async def unban(
    services: Services, actor: Actor, user_id: int, *, lang: str = "en"
) -> ActionResult:
    async with services.db.write() as session:
        user = await _user(session, user_id)
        before = {"banned": user.is_banned, "reason": user.ban_reason}
        after: dict[str, Any] = {"banned": False, "reason": None}
        changed = before != after
        audit_id = None
        if changed:
            user.is_banned = False
            user.ban_reason = None
            audit_id = await write_audit(
                session, actor, "unban", target_user_id=user_id, before=before, after=after
            )
    forget_banned(user_id)
    key = "admin.done.unban" if changed else "admin.done.not_banned"
    return ActionResult(
        "unban", user_id, changed, before, after, audit_id, t(lang, key, user=user_id)
    )


async def stop_answers(services: Services, user_id: int) -> int:
    """Ask every answer streaming for the person to stop, wherever it runs; how many
    there were. Here and in processes whose answers are ended from here (gone
    workers) they stop now; with Redis every process hears the request at once;
    without it the process that streams one stops it at its next admin sync."""
    async with services.db.read() as session:
        rows = await streaming_answers(session, ChatMessage.user_id == user_id)
    if not rows:
        return 0
    bus = None
    redis_url = services.settings.redis.redis_url
    if services.chat.stop_bus is None and redis_url:
        # `oneai admin` at a shell has no stop channel of its own: open one for this.
        from core.stop_signals import RedisStopBus

        bus = RedisStopBus(redis_url)
        services.chat.stop_bus = bus
    try:
        for row in rows:
            try:
                await services.chat.request_stop(user_id, row.id)
            except Exception:
                log.warning("could not stop answer %s of banned user %d", row.id, user_id)
    finally:
        if bus is not None:
            services.chat.stop_bus = None
            await bus.close()
    return len(rows)
