"""/plan: the person's plan and what each plan includes. Buying is added by the
payment providers, which register their own buttons and handlers."""

from __future__ import annotations

from aiogram import F, Router
from aiogram.filters import Command
from aiogram.types import Message

from bot.telegram.replies import reply
from core.db.models import User
from core.i18n import t
from core.tiers import TIER_ORDER, TIERS, QuotaKey, Tier


def plans_text(lang: str, current: Tier) -> str:
    lines = [t(lang, "plan.header", plan=TIERS[current].name), ""]
    for tier in TIER_ORDER:
        quotas = TIERS[tier].quotas
        lines.append(
            t(
                lang,
                "plan.tier",
                mark="✅ " if tier is current else "• ",
                plan=TIERS[tier].name,
                small=quotas[QuotaKey.SMALL].limit,
                large=quotas[QuotaKey.LARGE].limit,
                images=quotas[QuotaKey.IMAGE].limit,
            )
        )
    return "\n".join(lines)


async def plan(message: Message, user: User, lang: str) -> None:
    await reply(message, plans_text(lang, Tier(user.tier)) + "\n\n" + t(lang, "plan.soon"))


def create_router() -> Router:
    router = Router(name="plans")
    router.message.filter(F.chat.type == "private")
    router.message.register(plan, Command("plan"))
    return router
