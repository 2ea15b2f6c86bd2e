"""Plans given by an operator (`oneai grant USER TIER [DAYS]`), recorded like any
other change (history, quotas, a message to the person) plus an audit row."""

from __future__ import annotations

from datetime import timedelta

from core.db.models import AuditLog
from core.services import Services
from core.subscriptions import PlanChange, Purchase, Reason
from core.tiers import Tier

MAX_DAYS = 3660


class GrantError(Exception):
    pass


async def find_user(services: Services, who: str) -> int:
    """`42` (our id) or `telegram:12345` / `discord:6789`."""
    platform, sep, platform_id = who.partition(":")
    if sep:
        user = await services.accounts.by_identity(platform.lower(), platform_id.strip())
    elif who.isdigit():
        user = await services.accounts.get(int(who))
    else:
        raise GrantError(f"user must be an id or platform:id, not {who!r}")
    if user is None:
        raise GrantError(f"no user {who}")
    return user.id


async def grant(
    services: Services, who: str, tier_name: str, days: int | None = None
) -> PlanChange:
    """`days` is needed for a paid tier; taking a plan away (free) has no length."""
    try:
        tier = Tier(tier_name.lower())
    except ValueError:
        raise GrantError(f"tier must be one of free, pro, enterprise, not {tier_name!r}") from None
    if tier is Tier.FREE:
        days = None
    elif days is None:
        raise GrantError(
            f"a {tier.value} plan needs DAYS (1 to {MAX_DAYS}): oneai grant USER {tier.value} DAYS"
        )
    elif not 0 < days <= MAX_DAYS:
        raise GrantError(f"days must be between 1 and {MAX_DAYS}")
    user_id = await find_user(services, who)
    async with services.db.write() as session:
        change: PlanChange | None
        if tier is Tier.FREE:
            change = await services.subscriptions.end(session, user_id, Reason.GRANT)
            if change is None:
                raise GrantError(f"user {user_id} has no plan to take away")
        else:
            assert days is not None  # checked above for paid tiers
            change = await services.subscriptions.activate(
                session,
                user_id,
                Purchase(
                    tier=tier,
                    provider="grant",
                    period=timedelta(days=days),
                    reason=Reason.GRANT,
                ),
            )
            assert change is not None  # a grant always changes the plan
        session.add(
            AuditLog(
                action="grant",
                target_user_id=user_id,
                details={"tier": tier.value, "days": days, "subscription": change.subscription_id},
            )
        )
    services.outbox.wake()
    return change
