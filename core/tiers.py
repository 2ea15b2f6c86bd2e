"""Subscription tiers and their quotas, exactly as the product defines them."""

from __future__ import annotations

import calendar
from dataclasses import dataclass
from datetime import UTC, datetime, timedelta
from enum import StrEnum


class Tier(StrEnum):
    FREE = "free"
    PRO = "pro"
    ENTERPRISE = "enterprise"

    @property
    def rank(self) -> int:
        return TIER_ORDER.index(self)


TIER_ORDER: tuple[Tier, ...] = (Tier.FREE, Tier.PRO, Tier.ENTERPRISE)


class QuotaKey(StrEnum):
    SMALL = "small_messages"
    LARGE = "large_messages"
    IMAGE = "image_generation"
    # A web-search answer takes one of these instead of its model's message unit.
    WEB_SEARCH = "web_search"
    VOICE = "voice_seconds"  # seconds of voice notes, not messages


# The keys a model's answers are counted against (a model belongs to one class);
# the others count web searches and voice seconds.
MODEL_QUOTA_KEYS: tuple[QuotaKey, ...] = (QuotaKey.SMALL, QuotaKey.LARGE, QuotaKey.IMAGE)


class ResetFrequency(StrEnum):
    THREE_HOUR = "3hour"
    DAILY = "daily"
    MONTHLY = "monthly"


@dataclass(frozen=True)
class QuotaRule:
    limit: int
    reset: ResetFrequency


@dataclass(frozen=True)
class TierSpec:
    tier: Tier
    name: str
    quotas: dict[QuotaKey, QuotaRule]
    # The longest voice note transcribed, in seconds (the daily total is VOICE).
    voice_note_seconds: int = 0


TIERS: dict[Tier, TierSpec] = {
    Tier.FREE: TierSpec(
        Tier.FREE,
        "Free",
        {
            QuotaKey.SMALL: QuotaRule(100, ResetFrequency.MONTHLY),
            QuotaKey.LARGE: QuotaRule(20, ResetFrequency.MONTHLY),
            QuotaKey.IMAGE: QuotaRule(5, ResetFrequency.THREE_HOUR),
            QuotaKey.WEB_SEARCH: QuotaRule(10, ResetFrequency.DAILY),
            QuotaKey.VOICE: QuotaRule(300, ResetFrequency.DAILY),
        },
        voice_note_seconds=60,
    ),
    Tier.PRO: TierSpec(
        Tier.PRO,
        "Pro",
        {
            QuotaKey.SMALL: QuotaRule(500, ResetFrequency.MONTHLY),
            QuotaKey.LARGE: QuotaRule(100, ResetFrequency.MONTHLY),
            QuotaKey.IMAGE: QuotaRule(10, ResetFrequency.THREE_HOUR),
            QuotaKey.WEB_SEARCH: QuotaRule(100, ResetFrequency.DAILY),
            QuotaKey.VOICE: QuotaRule(1800, ResetFrequency.DAILY),
        },
        voice_note_seconds=300,
    ),
    Tier.ENTERPRISE: TierSpec(
        Tier.ENTERPRISE,
        "Enterprise",
        {
            QuotaKey.SMALL: QuotaRule(5000, ResetFrequency.MONTHLY),
            QuotaKey.LARGE: QuotaRule(1000, ResetFrequency.MONTHLY),
            QuotaKey.IMAGE: QuotaRule(100, ResetFrequency.THREE_HOUR),
            QuotaKey.WEB_SEARCH: QuotaRule(1000, ResetFrequency.DAILY),
            QuotaKey.VOICE: QuotaRule(7200, ResetFrequency.DAILY),
        },
        voice_note_seconds=600,
    ),
}


def window_bounds(frequency: ResetFrequency, now: datetime) -> tuple[datetime, datetime]:
    """(start, end) of the window that a use at `now` opens when the old one expired.

    `3hour` is rolling: it starts at that use. `daily` is the UTC day, `monthly`
    the UTC calendar month.
    """
    now = now.astimezone(UTC)
    if frequency is ResetFrequency.THREE_HOUR:
        return now, now + timedelta(hours=3)
    if frequency is ResetFrequency.DAILY:
        start = now.replace(hour=0, minute=0, second=0, microsecond=0)
        return start, start + timedelta(days=1)
    start = now.replace(day=1, hour=0, minute=0, second=0, microsecond=0)
    days = calendar.monthrange(start.year, start.month)[1]
    return start, start + timedelta(days=days)


def lowest_tier_with(key: QuotaKey, above: Tier) -> Tier | None:
    """The cheapest tier above `above` whose limit for `key` is larger (what lifts a quota)."""
    current = TIERS[above].quotas[key].limit
    for tier in TIER_ORDER[above.rank + 1 :]:
        if TIERS[tier].quotas[key].limit > current:
            return tier
    return None
