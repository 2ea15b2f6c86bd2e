"""Finding a person, and the card an admin sees of them.

A person is found by our user id (`42`, `#42`), a platform account
(`telegram:123`, `tg:123`, `discord:456`, `dc:456`, a Discord mention `<@456>`),
an @username on any platform, or a bare platform id (`123456789`, when no user
has that id of ours). Every account linked to a person finds that person.
"""

from __future__ import annotations

import re
from dataclasses import dataclass, replace
from datetime import datetime
from typing import TYPE_CHECKING

from sqlalchemy import func, select

from core.admin.access import is_admin_user
from core.admin.errors import PersonAmbiguous, PersonNotFound
from core.admin.stats import money
from core.db.models import Conversation, Identity, Payment, User
from core.i18n import t
from core.linking import platform_name
from core.subscriptions import PlanView
from core.tiers import TIERS, Tier
from core.views.usage import UsageReport, usage_report

if TYPE_CHECKING:
    from core.services import Services

PAYMENTS_SHOWN = 10
TIME = "%Y-%m-%d %H:%M UTC"

_ALIASES = {"tg": "telegram", "dc": "discord"}
_MENTION = re.compile(r"<@!?(\d+)>")


async def find_person(services: Services, query: str) -> int:
    """The user id `query` names; PersonNotFound or PersonAmbiguous otherwise."""
    text = query.strip()
    if mention := _MENTION.fullmatch(text):
        text = f"discord:{mention.group(1)}"
    number = text.removeprefix("#")
    if number.isdigit() and number.isascii():
        user = await services.accounts.get(int(number))
        if user is not None:
            return user.id
        if text.startswith("#"):
            raise PersonNotFound(query)
        return await _one(query, await _by_platform_id(services, number))
    platform, sep, account = text.partition(":")
    if sep and platform and account and not platform.startswith("@"):
        name = _ALIASES.get(platform.strip().lower(), platform.strip().lower())
        user = await services.accounts.by_identity(name, account.strip())
        if user is None:
            raise PersonNotFound(query)
        return user.id
    username = text.removeprefix("@")
    if not username:
        raise PersonNotFound(query)
    return await _one(query, await _by_username(services, username))


async def _by_platform_id(services: Services, account: str) -> list[int]:
    async with services.db.read() as session:
        rows = await session.scalars(
            select(Identity.user_id).where(Identity.platform_user_id == account).distinct()
        )
        return sorted(rows.all())


async def _by_username(services: Services, username: str) -> list[int]:
    """Exactly as written first (indexed); then ignoring case."""
    async with services.db.read() as session:
        exact = (
            await session.scalars(
                select(Identity.user_id).where(Identity.username == username).distinct()
            )
        ).all()
        if exact:
            return sorted(exact)
        folded = await session.scalars(
            select(Identity.user_id)
            .where(func.lower(Identity.username) == username.lower())
            .distinct()
        )
        return sorted(folded.all())


async def _one(query: str, user_ids: list[int]) -> int:
    if not user_ids:
        raise PersonNotFound(query)
    if len(user_ids) > 1:
        raise PersonAmbiguous(query, user_ids)
    return user_ids[0]


# -- the card ------------------------------------------------------------------------


@dataclass(frozen=True)
class AccountLine:
    platform: str
    platform_user_id: str
    username: str | None
    last_seen_at: datetime | None
    blocked: bool  # the person blocked the bot there


@dataclass(frozen=True)
class PaymentLine:
    """One ledger row of the person's."""

    id: int  # the ledger row (a refund button carries it)
    provider: str
    charge_id: str
    kind: str  # payment | renewal | refund
    status: str
    tier: str | None
    amount_minor: int
    currency: str
    created_at: datetime
    text: str


@dataclass(frozen=True)
class PersonCard:
    user_id: int
    name: str | None
    language: str | None
    accounts: list[AccountLine]
    is_admin: bool
    banned: bool
    ban_reason: str | None
    plan: PlanView  # tier, status, period end, provider, renews or not
    usage: UsageReport  # each quota with its use and reset
    joined_at: datetime
    last_seen_at: datetime | None  # on any platform
    conversations: int
    payments: list[PaymentLine]  # the latest PAYMENTS_SHOWN, newest first
    payments_total: int
    text: str  # the whole card, in the admin's language
    # The actions that apply now, for the platform's buttons, in this order:
    # "grant", "revoke" (a plan to take away), "reset", "ban" or "unban".
    actions: tuple[str, ...]


async def person_card(services: Services, user_id: int, lang: str = "en") -> PersonCard:
    """Everything an admin needs to know about one person."""
    async with services.db.read() as session:
        user = await session.get(User, user_id)
        if user is None:
            raise PersonNotFound(f"#{user_id}")
        identities = (
            await session.scalars(
                select(Identity).where(Identity.user_id == user_id).order_by(Identity.id)
            )
        ).all()
        conversations = int(
            await session.scalar(
                select(func.count())
                .select_from(Conversation)
                .where(Conversation.user_id == user_id)
            )
            or 0
        )
        payments_total = int(
            await session.scalar(
                select(func.count()).select_from(Payment).where(Payment.user_id == user_id)
            )
            or 0
        )
        ledger = (
            await session.scalars(
                select(Payment)
                .where(Payment.user_id == user_id)
                .order_by(Payment.created_at.desc(), Payment.id.desc())
                .limit(PAYMENTS_SHOWN)
            )
        ).all()
    plan = await services.subscriptions.view(user_id)
    usage = await usage_report(services, user_id, lang)
    admin = await is_admin_user(services, user_id)
    accounts = [
        AccountLine(i.platform, i.platform_user_id, i.username, i.last_seen_at, i.is_blocked)
        for i in identities
    ]
    seen = [moment for moment in [user.last_seen_at, *(a.last_seen_at for a in accounts)] if moment]
    payments = [
        PaymentLine(
            p.id,
            p.provider,
            p.provider_charge_id,
            p.kind,
            p.status,
            p.tier,
            p.amount_minor,
            p.currency,
            p.created_at,
            t(
                lang,
                "admin.person.payment",
                at=p.created_at.strftime("%Y-%m-%d"),
                kind=p.kind,
                amount=money(p.amount_minor, p.currency),
                provider=p.provider,
                status=p.status,
                tier=_plan_name(p.tier),
            ),
        )
        for p in ledger
    ]
    actions = ["grant"]
    if plan.period_end is not None:
        actions.append("revoke")
    actions += ["reset", "unban" if user.is_banned else "ban"]
    card = PersonCard(
        user_id=user.id,
        name=user.display_name,
        language=user.language,
        accounts=accounts,
        is_admin=admin,
        banned=user.is_banned,
        ban_reason=user.ban_reason,
        plan=plan,
        usage=usage,
        joined_at=user.created_at,
        last_seen_at=max(seen) if seen else None,
        conversations=conversations,
        payments=payments,
        payments_total=payments_total,
        text="",
        actions=tuple(actions),
    )
    return _with_text(card, lang)


def _plan_name(value: str | None) -> str:
    try:
        return TIERS[Tier(value)].name if value else "—"
    except ValueError:
        return value or "—"


def _with_text(card: PersonCard, lang: str) -> PersonCard:
    lines = [
        t(
            lang,
            "admin.person.header",
            id=card.user_id,
            name=card.name or "—",
            admin=t(lang, "admin.person.is_admin") if card.is_admin else "",
        )
    ]
    for account in card.accounts:
        lines.append(
            t(
                lang,
                "admin.person.account",
                platform=platform_name(account.platform),
                id=account.platform_user_id,
                username=f" @{account.username}" if account.username else "",
                seen=account.last_seen_at.strftime(TIME) if account.last_seen_at else "—",
                blocked=t(lang, "admin.person.blocked") if account.blocked else "",
            )
        )
    if card.banned:
        lines.append(t(lang, "admin.person.banned", reason=card.ban_reason or "—"))
    plan = card.plan
    until = plan.period_end.strftime(TIME) if plan.period_end else "—"
    renews = (
        t(lang, "admin.person.renews") if plan.recurring and not plan.cancel_at_period_end else ""
    )
    lines.append(
        t(
            lang,
            "admin.person.plan",
            plan=TIERS[plan.tier].name,
            status=plan.status,
            until=until,
            provider=plan.provider or "—",
            renews=renews,
        )
    )
    lines += card.usage.lines
    lines.append(
        t(
            lang,
            "admin.person.activity",
            joined=card.joined_at.strftime("%Y-%m-%d"),
            seen=card.last_seen_at.strftime(TIME) if card.last_seen_at else "—",
            conversations=card.conversations,
        )
    )
    if card.payments:
        lines.append(
            t(lang, "admin.person.payments", shown=len(card.payments), total=card.payments_total)
        )
        lines += [payment.text for payment in card.payments]
    else:
        lines.append(t(lang, "admin.person.no_payments"))
    return replace(card, text="\n".join(lines))
