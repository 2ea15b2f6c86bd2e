"""Plans for sale and their prices: a shipped default (plans.json beside this file),
replaced whole by the operator's PAYMENTS_PLANS_FILE.

Prices are integers in minor units (Stars, kopecks, paise), never floats. Every
plan runs 30 days. Enterprise is custom-priced: granted, not sold in the chat.
"""

from __future__ import annotations

import json
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from core.tiers import TIERS, Tier

DEFAULT_FILE = Path(__file__).with_name("plans.json")
PERIOD_SECONDS = 30 * 24 * 3600  # the only period Telegram Stars subscriptions have

# Price keys in the file -> ISO currency codes.
CURRENCIES = {"xtr": "XTR", "rub": "RUB", "inr": "INR"}


class PlanConfigError(ValueError):
    pass


@dataclass(frozen=True)
class Plan:
    tier: Tier
    prices: dict[str, int]  # currency code -> amount in minor units

    @property
    def name(self) -> str:
        return TIERS[self.tier].name

    def price(self, currency: str) -> int | None:
        return self.prices.get(currency.upper())


class PlanCatalog:
    def __init__(self, plans: dict[Tier, Plan]) -> None:
        self.plans = plans

    @classmethod
    def load(cls, path: Path | None = None) -> PlanCatalog:
        source = path or DEFAULT_FILE
        try:
            raw = json.loads(source.read_text(encoding="utf-8"))
        except (OSError, json.JSONDecodeError) as exc:
            raise PlanConfigError(f"plans file {source}: {exc}") from None
        return cls.parse(raw, str(source))

    @classmethod
    def parse(cls, raw: Any, where: str = "plans") -> PlanCatalog:
        if not isinstance(raw, dict):
            raise PlanConfigError(f"{where}: expected an object of tier -> prices")
        plans: dict[Tier, Plan] = {}
        for name, prices in raw.items():
            try:
                tier = Tier(name)
            except ValueError:
                raise PlanConfigError(f"{where}: unknown tier {name!r}") from None
            if tier is Tier.FREE:
                raise PlanConfigError(f"{where}: the free tier is not for sale")
            if tier is Tier.ENTERPRISE:
                raise PlanConfigError(
                    f"{where}: enterprise is priced individually and granted "
                    "(oneai grant), not sold in the chat"
                )
            if not isinstance(prices, dict) or not prices:
                raise PlanConfigError(f"{where}: {name}: expected prices by currency")
            parsed: dict[str, int] = {}
            for key, amount in prices.items():
                currency = CURRENCIES.get(str(key).lower())
                if currency is None:
                    raise PlanConfigError(f"{where}: {name}: unknown currency {key!r}")
                # bool is an int in Python; a price of `true` is a typo, not 1.
                if not isinstance(amount, int) or isinstance(amount, bool) or amount <= 0:
                    raise PlanConfigError(
                        f"{where}: {name}.{key}: price must be a positive integer in minor units"
                    )
                parsed[currency] = amount
            plans[tier] = Plan(tier, parsed)
        return cls(plans)

    def get(self, tier: Tier | str) -> Plan | None:
        try:
            return self.plans.get(Tier(tier))
        except ValueError:
            return None

    def for_sale(self, currency: str) -> list[Plan]:
        """Plans with a price in `currency`, cheapest tier first."""
        return sorted(
            (plan for plan in self.plans.values() if plan.price(currency) is not None),
            key=lambda plan: plan.tier.rank,
        )
