"""The words of messages that state changes send (the outbox), and prices as
people read them. Platform-free: each platform only delivers the text."""

from __future__ import annotations

from datetime import datetime
from typing import Any

from core.i18n import t
from core.tiers import TIERS, Tier

# Digits after the point per currency (Telegram's currencies.json has the rest).
_EXPONENT = {"XTR": 0, "RUB": 2, "INR": 2, "USD": 2, "EUR": 2}
_SYMBOL = {"RUB": "{} ₽", "INR": "₹{}", "USD": "${}", "EUR": "€{}"}


def format_price(amount_minor: int, currency: str) -> str:
    currency = currency.upper()
    if currency == "XTR":
        return f"{amount_minor} ⭐"
    exponent = _EXPONENT.get(currency, 2)
    major, minor = divmod(amount_minor, 10**exponent)
    number = f"{major:,}".replace(",", " ") + (f".{minor:0{exponent}d}" if minor else "")
    return _SYMBOL.get(currency, "{} " + currency).format(number)


def format_date(value: datetime | str | None) -> str:
    if value is None:
        return "—"
    moment = datetime.fromisoformat(value) if isinstance(value, str) else value
    return moment.strftime("%Y-%m-%d")


def _plan_name(value: Any) -> str:
    try:
        return TIERS[Tier(str(value))].name
    except ValueError:
        return str(value)


def render_notice(lang: str | None, kind: str, payload: dict[str, Any]) -> str:
    """An outbox message in the person's language."""
    key = f"notice.{kind}"
    if kind == "plan.reminder" and payload.get("renews"):
        key = "notice.plan.reminder_renews"
    return t(
        lang,
        key,
        plan=_plan_name(payload.get("tier", "free")),
        old_plan=_plan_name(payload.get("old_tier", payload.get("tier", "free"))),
        until=format_date(payload.get("period_end")),
        price=format_price(int(payload.get("amount") or 0), str(payload.get("currency") or "XTR")),
    )
