"""The admin screens' buttons, as data: the menu, a person's actions (refunds
included), the plans and day counts a grant offers, the confirmations, a
broadcast's audiences and controls. Telegram draws them as inline keyboards and
Discord as views; both run the same rules (which payment can be refunded, which
controls a broadcast shows in which state) from here.

Every value that travels in a button is short (a platform caps button ids at 64
or 100 bytes), has "." between its parts (":" separates the fields of a Telegram
CallbackData) and is re-checked when pressed: the presser must still be an admin
and the person, payment or model must still exist.
"""

from __future__ import annotations

from dataclasses import dataclass
from enum import StrEnum

from core.admin.people import PaymentLine, PersonCard
from core.admin.stats import money
from core.broadcast import Audience, AudienceKind, Progress, Status
from core.i18n import t
from core.tiers import TIERS, Tier
from payments.ledger import PAID_KINDS

# The day counts a grant offers as buttons (`oneai admin grant` takes any count).
GRANT_DAYS = (7, 30, 90, 365)
ACTIVE_DAYS = 30


class AdminOp(StrEnum):
    """What an admin button does. Short values: they travel in button ids."""

    MENU = "m"
    STATS = "st"
    FIND = "f"  # ask who
    PERSON = "p"  # show a person's card
    GRANT = "g"  # pick a plan (arg: "" ) or the days (arg: the plan)
    GRANT_DAYS = "gd"  # arg: "<plan>:<days>"
    REVOKE = "rv"  # ask to confirm
    REVOKE_YES = "rvy"
    RESET = "rs"
    BAN = "b"  # ask why
    UNBAN = "ub"
    REFUND = "rf"  # arg: the ledger row; ask to confirm
    REFUND_YES = "rfy"
    MODELS = "md"
    MODEL_TOGGLE = "mt"  # arg: the model's catalog index
    REFRESH = "rc"
    AUDIT = "a"  # page: the page
    BROADCAST = "bc"  # ask for the text
    BC_AUDIENCE = "ba"  # arg: an audience key
    BC_SEND = "bs"
    BC_EDIT = "be"
    BC_DISCARD = "bd"
    BC_PAUSE = "bp"
    BC_RESUME = "br"
    BC_CANCEL = "bx"


@dataclass(frozen=True)
class AdminButton:
    op: AdminOp
    label: str  # localized
    user_id: int = 0  # whose (person screens)
    arg: str = ""
    page: int = 0
    danger: bool = False  # drawn red where a platform can


def menu_buttons(lang: str) -> list[AdminButton]:
    """The /admin menu."""
    return [
        AdminButton(AdminOp.STATS, t(lang, "admin.button.stats")),
        AdminButton(AdminOp.FIND, t(lang, "admin.button.person")),
        AdminButton(AdminOp.MODELS, t(lang, "admin.button.models")),
        AdminButton(AdminOp.BROADCAST, t(lang, "admin.button.broadcast")),
        AdminButton(AdminOp.AUDIT, t(lang, "admin.button.audit"), page=1),
    ]


def back_button(lang: str) -> AdminButton:
    return AdminButton(AdminOp.MENU, t(lang, "admin.button.back"))


# -- a person ------------------------------------------------------------------------


def refundable(payment: PaymentLine) -> bool:
    """A payment that took money and has not been given back. Providers that the
    bot cannot refund through still get a button: pressing it says why not."""
    return (
        payment.kind in PAID_KINDS
        and payment.status not in ("refunded", "failed")
        and payment.amount_minor > 0
    )


def refund_label(lang: str, payment: PaymentLine) -> str:
    return t(
        lang,
        "admin.button.refund",
        amount=money(payment.amount_minor, payment.currency),
        at=payment.created_at.strftime("%Y-%m-%d"),
    )


def person_buttons(card: PersonCard, lang: str) -> list[AdminButton]:
    """The card's actions that apply now, then a refund per refundable payment."""
    ops = {
        "grant": AdminOp.GRANT,
        "revoke": AdminOp.REVOKE,
        "reset": AdminOp.RESET,
        "ban": AdminOp.BAN,
        "unban": AdminOp.UNBAN,
    }
    buttons = [
        AdminButton(
            ops[action],
            t(lang, f"admin.button.{action}"),
            card.user_id,
            danger=action in ("revoke", "ban"),
        )
        for action in card.actions
        if not (action == "ban" and card.is_admin)  # admins cannot be banned
    ]
    buttons += [
        AdminButton(AdminOp.REFUND, refund_label(lang, p), card.user_id, str(p.id), danger=True)
        for p in card.payments
        if refundable(p)
    ]
    return buttons


def grant_plans(lang: str, user_id: int) -> list[AdminButton]:
    """The paid plans a grant can give."""
    return [
        AdminButton(AdminOp.GRANT, TIERS[tier].name, user_id, tier.value)
        for tier in Tier
        if tier is not Tier.FREE
    ]


def grant_days(lang: str, user_id: int, tier: Tier) -> list[AdminButton]:
    return [
        AdminButton(
            AdminOp.GRANT_DAYS,
            t(lang, "admin.button.days", days=days),
            user_id,
            f"{tier.value}.{days}",
        )
        for days in GRANT_DAYS
    ]


def parse_grant(arg: str) -> tuple[Tier, int] | None:
    """`<plan>.<days>` from a button; None when forged."""
    plan, _, days = arg.partition(".")
    try:
        tier = Tier(plan)
    except ValueError:
        return None
    if tier is Tier.FREE or not days.isdigit() or int(days) not in GRANT_DAYS:
        return None
    return tier, int(days)


def confirm_revoke(card: PersonCard, lang: str) -> tuple[str, list[AdminButton]]:
    text = t(lang, "admin.confirm.revoke", user=card.user_id, plan=TIERS[card.plan.tier].name)
    return text, [
        AdminButton(AdminOp.REVOKE_YES, t(lang, "admin.button.yes"), card.user_id, danger=True),
        AdminButton(AdminOp.PERSON, t(lang, "admin.button.no"), card.user_id),
    ]


def confirm_refund(
    card: PersonCard, payment_id: int, lang: str
) -> tuple[str, list[AdminButton]] | None:
    """The question before a refund; None when the payment is not this person's
    (a forged or outdated button) or cannot be refunded any more."""
    payment = next((p for p in card.payments if p.id == payment_id), None)
    if payment is None or not refundable(payment):
        return None
    text = t(
        lang,
        "admin.confirm.refund",
        user=card.user_id,
        amount=money(payment.amount_minor, payment.currency),
        provider=payment.provider,
        at=payment.created_at.strftime("%Y-%m-%d"),
        payment=payment.id,
    )
    return text, [
        AdminButton(
            AdminOp.REFUND_YES,
            t(lang, "admin.button.yes"),
            card.user_id,
            str(payment_id),
            danger=True,
        ),
        AdminButton(AdminOp.PERSON, t(lang, "admin.button.no"), card.user_id),
    ]


# -- broadcasts ----------------------------------------------------------------------


def audience_key(audience: Audience) -> str:
    if audience.kind is AudienceKind.TIER and audience.tier is not None:
        return f"tier.{audience.tier.value}"
    if audience.kind is AudienceKind.ACTIVE:
        return f"active.{audience.days}"
    return "all"


def parse_audience(key: str) -> Audience | None:
    """An audience from `audience_key`'s text; None when forged."""
    kind, _, value = key.partition(".")
    if kind == "all" and not value:
        return Audience.everyone()
    if kind == "tier":
        try:
            return Audience.on_tier(Tier(value))
        except ValueError:
            return None
    if kind == "active" and value == str(ACTIVE_DAYS):
        return Audience.active(ACTIVE_DAYS)
    return None


def audience_buttons(lang: str, chosen: Audience, broadcast_id: int = 0) -> list[AdminButton]:
    """Everyone, each plan, the active: the chosen one marked. With `broadcast_id`,
    each button's arg is `<broadcast id>.<audience key>` (`parse_audience_choice`)."""
    audiences = [
        (Audience.everyone(), t(lang, "admin.broadcast.everyone")),
        *((Audience.on_tier(tier), TIERS[tier].name) for tier in Tier),
        (Audience.active(ACTIVE_DAYS), t(lang, "admin.broadcast.active", days=ACTIVE_DAYS)),
    ]
    current = audience_key(chosen)
    prefix = f"{broadcast_id}." if broadcast_id else ""
    return [
        AdminButton(
            AdminOp.BC_AUDIENCE,
            ("• " if audience_key(audience) == current else "") + label,
            arg=prefix + audience_key(audience),
        )
        for audience, label in audiences
    ]


def parse_audience_choice(arg: str) -> tuple[int, Audience] | None:
    """`<broadcast id>.<audience key>` from an audience button; None when forged."""
    number, _, key = arg.partition(".")
    broadcast_id = parse_id(number)
    audience = parse_audience(key)
    if broadcast_id is None or audience is None:
        return None
    return broadcast_id, audience


def draft_buttons(lang: str, broadcast_id: int, ready: bool) -> list[AdminButton]:
    """Under a draft's preview: send (when it can go), change the text, discard."""
    arg = str(broadcast_id)
    buttons = [
        AdminButton(AdminOp.BC_EDIT, t(lang, "admin.broadcast.edit"), arg=arg),
        AdminButton(AdminOp.BC_DISCARD, t(lang, "admin.broadcast.discard"), arg=arg, danger=True),
    ]
    if ready:
        buttons.insert(0, AdminButton(AdminOp.BC_SEND, t(lang, "admin.broadcast.send"), arg=arg))
    return buttons


def progress_buttons(lang: str, progress: Progress) -> list[AdminButton]:
    """Under a broadcast's progress: pause or resume, and cancel, while it is not
    over; nothing once it is."""
    arg = str(progress.broadcast_id)
    if progress.status is Status.RUNNING:
        pause = AdminButton(AdminOp.BC_PAUSE, t(lang, "admin.broadcast.pause"), arg=arg)
    elif progress.status is Status.PAUSED:
        pause = AdminButton(AdminOp.BC_RESUME, t(lang, "admin.broadcast.resume"), arg=arg)
    else:
        return []
    cancel = AdminButton(AdminOp.BC_CANCEL, t(lang, "admin.broadcast.cancel"), arg=arg, danger=True)
    return [pause, cancel]


def parse_id(arg: str) -> int | None:
    """A row id from a button; None when forged."""
    return int(arg) if arg.isdigit() and arg.isascii() and len(arg) < 19 else None
