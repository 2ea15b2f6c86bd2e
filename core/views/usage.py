"""The usage report (/usage, and the quotas part of /plan): per quota what is used,
what is left and when it resets, with the person's plan and when it ends."""

from __future__ import annotations

from dataclasses import dataclass
from datetime import datetime

from core.i18n import t
from core.quotas import QuotaStatus
from core.services import Services
from core.tiers import TIERS, QuotaKey, ResetFrequency, Tier

BAR_WIDTH = 10
TIME_FORMAT = "%Y-%m-%d %H:%M UTC"


def hidden_quotas(services: Services) -> frozenset[QuotaKey]:
    """Quotas of features this server does not offer: not shown (web search
    without OpenRouter)."""
    offered = services.settings.llm.web_search_available
    return frozenset() if offered else frozenset({QuotaKey.WEB_SEARCH})


def bar(used: int, limit: int, width: int = BAR_WIDTH) -> str:
    """▰▰▱▱…: the used share of `limit` in `width` cells (full when over the limit)."""
    filled = 0 if limit <= 0 else min(width, max(0, round(width * used / limit)))
    return "▰" * filled + "▱" * (width - filled)


@dataclass(frozen=True)
class QuotaLine:
    key: QuotaKey
    label: str  # localized: "Small messages"
    used: int
    limit: int
    remaining: int
    reset_frequency: ResetFrequency
    # None: a rolling window that has not started (it starts at the next use).
    resets_at: datetime | None
    when: str  # localized resets_at: "2025-07-01 00:00 UTC" or "3 h after next use"
    text: str  # the whole line as /usage shows it, bar included

    @property
    def amounts(self) -> tuple[str, str, str]:
        """Used, limit and remaining in the unit the label names (voice in minutes)."""
        counts = (self.used, self.limit, self.remaining)
        if self.key is QuotaKey.VOICE:
            return (minutes(counts[0]), minutes(counts[1]), minutes(counts[2]))
        return (str(counts[0]), str(counts[1]), str(counts[2]))

    @property
    def fraction(self) -> float:
        """Used share of the limit, 0..1."""
        return 0.0 if self.limit <= 0 else min(1.0, max(0.0, self.used / self.limit))


@dataclass(frozen=True)
class UsageReport:
    tier: Tier
    plan: str  # the plan's name
    period_end: datetime | None  # when a paid or granted plan ends; None on free
    quotas: list[QuotaLine]
    header: str  # localized: "📊 Plan: Free"

    @property
    def lines(self) -> list[str]:
        return [quota.text for quota in self.quotas]

    @property
    def text(self) -> str:
        """The /usage message."""
        return "\n".join([self.header, *self.lines])


def minutes(seconds: int) -> str:
    """Seconds as minutes, to a tenth: 90 -> "1.5", 300 -> "5"."""
    return f"{seconds / 60:.1f}".removesuffix(".0")


def quota_line(lang: str, status: QuotaStatus) -> QuotaLine:
    label = t(lang, f"quota.{status.key.value}")
    when = status.resets_at.strftime(TIME_FORMAT) if status.resets_at else t(lang, "usage.rolling")
    line = "usage.line"
    used: object = status.used
    limit: object = status.limit
    remaining: object = status.remaining
    if status.key is QuotaKey.VOICE:  # counted in seconds, shown in minutes
        line = "usage.voice_line"
        used, limit, remaining = (
            minutes(status.used),
            minutes(status.limit),
            minutes(status.remaining),
        )
    text = t(
        lang,
        line,
        label=label,
        bar=bar(status.used, status.limit),
        used=used,
        limit=limit,
        remaining=remaining,
        when=when,
    )
    return QuotaLine(
        status.key,
        label,
        status.used,
        status.limit,
        status.remaining,
        status.reset_frequency,
        status.resets_at,
        when,
        text,
    )


async def usage_report(services: Services, user_id: int, lang: str) -> UsageReport:
    """The person's quotas under their current plan (those of features offered here)."""
    view = await services.subscriptions.view(user_id)
    statuses = [
        status
        for status in await services.quotas.report(user_id, view.tier)
        if status.key not in hidden_quotas(services)
    ]
    plan = TIERS[view.tier].name
    return UsageReport(
        view.tier,
        plan,
        view.period_end,
        [quota_line(lang, status) for status in statuses],
        t(lang, "usage.header", plan=plan),
    )
