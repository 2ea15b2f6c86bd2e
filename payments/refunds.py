"""Refunds an admin issues: one payment (a ledger row) given back through the
provider that took it, and the plan adjusted as DESIGN's refund rules say. The
admin screens (Telegram, Discord, the command line) call `Refunds.refund`.

Once per payment, whoever presses and however often: the refund's own ledger row,
keyed by the payment it returns (`refund:<charge id>`, the key every provider's
refund notice is recorded under too), is inserted as a claim (`requested`) before
the provider is called. A second press, at once or later, finds the key taken and
hears "already refunded" (or "under way") without calling the provider. The
provider's answer completes that row in the transaction that changes the plan,
marks the payment refunded, writes the person's notice and the audit row
(Ledger._settle_refund); a refund notice that arrives afterwards is a duplicate.

A crash between the provider call and that write leaves the claim `requested`.
Two ways finish it: the provider's notice (YooKassa refund.succeeded, Razorpay
refund.processed, Telegram's refunded_payment message) completes the claim like
any refund; and a press after `claim_ttl` takes the claim over and calls again with
the same idempotence key (YooKassa's Idempotence-Key, Razorpay's
X-Refund-Idempotency), which answers with the refund made the first time, while
Telegram answers CHARGE_ALREADY_REFUNDED, taken as done. A refusal frees the claim
(`failed`) for another try under a new key.
"""

from __future__ import annotations

import logging
import uuid
from collections.abc import Awaitable, Callable
from dataclasses import dataclass, replace
from datetime import datetime, timedelta
from typing import TYPE_CHECKING, Any, Literal

from sqlalchemy import select

from core.clock import utcnow
from core.db.engine import Database
from core.db.models import AuditLog, Identity, Payment, PaymentOrder, User
from core.db.upsert import insert_new
from core.errors import OneAIError
from core.i18n import t
from core.notices import format_price
from core.subscriptions import PlanChange, PlanView, SubscriptionService
from core.tiers import TIERS, Tier
from payments import razorpay_provider, stars, yookassa_provider
from payments.ledger import PAID_KINDS, Ledger, LedgerEntry, platform_of, refund_key
from payments.razorpay_provider import RazorpayProvider
from payments.yookassa_provider import YooKassaProvider

if TYPE_CHECKING:
    from yookassa.domain.exceptions import ApiError as YooApiError

log = logging.getLogger(__name__)

# aiogram's Bot.refund_star_payment(user_id, telegram_payment_charge_id) -> bool.
StarRefunder = Callable[[int, str], Awaitable[object]]
# Ends a Stars subscription: (Telegram user id, the charge id that started it).
StarStopper = Callable[[int, str], Awaitable[object]]

PROVIDER_NAMES = {
    stars.STARS: "Telegram Stars",
    stars.PROVIDER: "Telegram payments",
    yookassa_provider.PROVIDER: "YooKassa",
    razorpay_provider.PROVIDER: "Razorpay",
    "discord": "Discord",
}
# Bot API errors that mean Telegram looked at the request and said no (aiogram's
# exception classes, matched by name: payments does not import aiogram).
_TELEGRAM_REFUSALS = {
    "TelegramBadRequest",
    "TelegramForbiddenError",
    "TelegramNotFound",
    "TelegramUnauthorizedError",
    "TelegramConflictError",
    "TelegramRetryAfter",
}
CLAIM_TTL = timedelta(minutes=5)


def provider_name(provider: str) -> str:
    return PROVIDER_NAMES.get(provider, provider)


# -- errors -----------------------------------------------------------------------------


class RefundError(OneAIError):
    """A refund that did not happen; `user_message` is the English `error.<code>`."""

    code = "refund_error"

    def __init__(self, **details: object) -> None:
        super().__init__(t("en", f"error.{self.code}", **details), **details)


class PaymentNotFound(RefundError):
    code = "refund_not_found"

    def __init__(self, payment: int | str) -> None:
        super().__init__(payment=payment)


class AlreadyRefunded(RefundError):
    """Refunded before (by anyone, here or at the provider): nothing was called."""

    code = "refund_already"

    def __init__(self, payment: int) -> None:
        super().__init__(payment=payment)
        self.payment_id = payment


class RefundInProgress(AlreadyRefunded):
    """Another press is refunding it right now, or the provider is processing it."""

    code = "refund_in_progress"


class RefundRefused(RefundError):
    """The provider said no; the payment can be tried again."""

    code = "refund_refused"

    def __init__(self, provider: str, reason: str) -> None:
        super().__init__(provider=provider_name(provider), reason=reason)
        self.provider = provider
        self.reason = reason


class RefundOutcomeUnknown(RefundError):
    """No answer (a timeout, a network or server error): the refund may have gone
    through. The provider's notice finishes it, or a press after CLAIM_TTL asks
    again with the same idempotence key."""

    code = "refund_unknown"

    def __init__(self, provider: str) -> None:
        super().__init__(provider=provider_name(provider))
        self.provider = provider


class ProviderNotConfigured(RefundError):
    code = "refund_not_configured"

    def __init__(self, provider: str) -> None:
        super().__init__(provider=provider_name(provider))
        self.provider = provider


class RefundNotSupported(RefundError):
    """Telegram payments through a provider token and Discord purchases are
    refunded where they were paid; their notices change the plan."""

    code = "refund_unsupported"

    def __init__(self, provider: str) -> None:
        super().__init__(provider=provider_name(provider))
        self.provider = provider


class NothingToRefund(RefundError):
    """A refund row, or a record of no money (a free activation)."""

    code = "refund_nothing"

    def __init__(self, payment: int) -> None:
        super().__init__(payment=payment)


# -- results ----------------------------------------------------------------------------


@dataclass(frozen=True)
class PlanState:
    tier: Tier
    period_end: datetime | None


@dataclass(frozen=True)
class RefundResult:
    payment_id: int  # the ledger row refunded
    provider: str
    charge_id: str  # the provider's id of the payment
    user_id: int | None
    amount_minor: int
    currency: str
    # refunded: the money is back and the plan follows the refund rules;
    # pending: the provider accepted it and reports the end later (its notice
    # then changes the plan).
    status: Literal["refunded", "pending"]
    provider_refund_id: str | None
    before: PlanState
    after: PlanState
    # The change this call made (None: the plan stayed, or a notice that arrived
    # first made it; `before` and `after` say what happened either way).
    change: PlanChange | None = None
    # The refunded plan renewed at its provider: "stopped" there now, or "left"
    # (it could not be stopped from here); None when nothing renews.
    renewals: Literal["stopped", "left"] | None = None
    renewal_provider: str | None = None

    def text(self, lang: str | None) -> str:
        """One line for the admin who pressed it."""
        values: dict[str, object] = {
            "price": format_price(self.amount_minor, self.currency),
            "provider": provider_name(self.provider),
            "payment": self.payment_id,
            "before": _plan_text(self.before),
            "after": _plan_text(self.after),
        }
        if self.status == "pending":
            return t(lang, "refund.pending", **values)
        if self.before == self.after:
            return t(lang, "refund.done_plan_kept", **values)
        text = t(lang, "refund.done", **values)
        if self.renewals is not None:
            where = provider_name(self.renewal_provider or self.provider)
            text += "\n" + t(lang, f"refund.renewals_{self.renewals}", provider=where)
        return text


def _plan_text(plan: PlanState) -> str:
    name = TIERS[plan.tier].name
    if plan.period_end is None or plan.tier is Tier.FREE:
        return name
    return f"{name} ({plan.period_end.strftime('%Y-%m-%d')})"


@dataclass(frozen=True)
class _Target:
    id: int
    provider: str
    charge_id: str
    kind: str
    status: str
    user_id: int | None
    amount_minor: int
    currency: str
    tier: str | None
    order_id: uuid.UUID | None
    platform: str | None


@dataclass(frozen=True)
class _Claim:
    row_id: int
    key: str  # the ledger key of the refund
    idempotence_key: str  # what the provider gets


@dataclass(frozen=True)
class _Answer:
    """What the provider said to the refund call."""

    status: Literal["succeeded", "pending"]
    refund_id: str | None = None
    already: bool = False  # it had been refunded at the provider before


class _Refused(Exception):
    def __init__(self, reason: str) -> None:
        super().__init__(reason)
        self.reason = reason


# -- the service ------------------------------------------------------------------------


class Refunds:
    def __init__(
        self,
        db: Database,
        ledger: Ledger,
        subscriptions: SubscriptionService,
        *,
        yookassa: YooKassaProvider | None = None,
        razorpay: RazorpayProvider | None = None,
        refund_star_payment: StarRefunder | None = None,
        stop_star_subscription: StarStopper | None = None,
        claim_ttl: timedelta = CLAIM_TTL,
        now: Callable[[], datetime] = utcnow,
    ) -> None:
        self.db = db
        self.ledger = ledger
        self.subscriptions = subscriptions
        self.yookassa = yookassa
        self.razorpay = razorpay
        # Set by the Telegram adapter (aiogram's bot.refund_star_payment).
        self.refund_star_payment = refund_star_payment
        self.stop_star_subscription = stop_star_subscription
        self.claim_ttl = claim_ttl
        self._now = now

    def use_telegram(
        self, refund_star_payment: StarRefunder, stop_star_subscription: StarStopper | None = None
    ) -> None:
        """Stars are refunded through the Bot API: the Telegram adapter passes
        `bot.refund_star_payment`, and how to end a Stars subscription
        (editUserStarSubscription) so a refunded one does not renew."""
        self.refund_star_payment = refund_star_payment
        self.stop_star_subscription = stop_star_subscription

    async def refund(
        self, payment_id: int | str, *, admin_user_id: int | None, reason: str | None
    ) -> RefundResult:
        """Refund one payment in full: `payment_id` is the ledger row's id, or the
        provider's charge id (a Stars charge, a YooKassa payment, a Razorpay pay_…).
        `admin_user_id` is our users.id of the admin (None: an operator at a shell),
        written to the audit log with `reason`. Raises a RefundError subclass when
        nothing was refunded now."""
        if admin_user_id is not None and not await self._is_user(admin_user_id):
            # The audit row names them: a wrong id must fail before any money moves.
            raise ValueError(f"admin_user_id {admin_user_id} is not a user")
        target = await self._target(payment_id)
        self._check(target)
        before = await self._plan(target.user_id)
        plan = await self.subscriptions.view(target.user_id) if target.user_id else None
        claim = await self._claim(target, admin_user_id, reason)
        try:
            answer = await self._call(target, claim)
        except _Refused as refused:
            await self._release(claim, refused.reason)
            await self._audit(target, admin_user_id, reason, "refused", before, refused.reason)
            raise RefundRefused(target.provider, refused.reason) from None
        except Exception as exc:
            log.warning(
                "%s refund of payment %d: no answer (%r); the claim stays until the "
                "provider reports it or %s pass",
                target.provider,
                target.id,
                exc,
                self.claim_ttl,
            )
            await self._audit(target, admin_user_id, reason, "unknown", before, repr(exc))
            raise RefundOutcomeUnknown(target.provider) from exc
        assert target.user_id is not None  # _check
        if answer.status == "pending":
            await self._pending(claim, answer)
            await self._audit(target, admin_user_id, reason, "pending", before, None)
            return self._result(target, "pending", answer.refund_id, before, before, None)
        payload: dict[str, Any] = {"refund_id": answer.refund_id} if answer.refund_id else {}
        if answer.already:
            payload["found_refunded"] = True
        settled = await self.ledger.settle(
            LedgerEntry(
                provider=target.provider,
                charge_id=claim.key,
                kind="refund",
                user_id=target.user_id,
                amount_minor=target.amount_minor,
                currency=target.currency,
                tier=Tier(target.tier) if target.tier else None,
                order_id=target.order_id,
                refund_of=target.charge_id,
                platform=target.platform,
                payload=payload,
            )
        )
        after = await self._plan(target.user_id)
        log.info(
            "%s payment %d refunded by admin %s%s",
            target.provider,
            target.id,
            admin_user_id,
            " (its notice was first)" if settled.duplicate else "",
        )
        result = self._result(target, "refunded", answer.refund_id, before, after, settled.change)
        if settled.change is not None and plan is not None:
            # The period this payment bought has ended: a plan that renews at its
            # provider must stop there, or the next renewal charges the person
            # again and brings the refunded plan back.
            stopped = await self._stop_renewals(target.user_id, plan)
            if stopped is not None:
                result = replace(result, renewals=stopped, renewal_provider=plan.provider)
        return result

    # -- steps ------------------------------------------------------------------------

    async def _target(self, payment_id: int | str) -> _Target:
        async with self.db.read() as session:
            row: Payment | None = None
            if isinstance(payment_id, int):
                row = await session.get(Payment, payment_id)
            else:
                text = payment_id.strip()
                rows = (
                    await session.scalars(
                        select(Payment).where(
                            Payment.provider_charge_id == text, Payment.kind.in_(PAID_KINDS)
                        )
                    )
                ).all()
                if len(rows) == 1:
                    row = rows[0]
                elif not rows and text.isdigit():
                    row = await session.get(Payment, int(text))
            if row is None:
                raise PaymentNotFound(payment_id)
            order = await session.get(PaymentOrder, row.order_id) if row.order_id else None
        platform = "telegram" if row.provider in (stars.STARS, stars.PROVIDER) else None
        if order is not None:
            platform = platform_of(order.meta or {}) or platform
        return _Target(
            row.id,
            row.provider,
            row.provider_charge_id,
            row.kind,
            row.status,
            row.user_id,
            row.amount_minor,
            row.currency,
            row.tier,
            row.order_id,
            platform,
        )

    def _check(self, target: _Target) -> None:
        if target.kind not in PAID_KINDS:
            raise NothingToRefund(target.id)  # a refund row
        configured = {
            stars.STARS: self.refund_star_payment is not None,
            yookassa_provider.PROVIDER: self.yookassa is not None,
            razorpay_provider.PROVIDER: self.razorpay is not None,
        }
        if target.provider not in configured:
            raise RefundNotSupported(target.provider)
        if target.amount_minor <= 0 or target.user_id is None:
            # No money (a free first cycle), or nobody to refund (a deleted person).
            raise NothingToRefund(target.id)
        if target.status == "refunded":
            raise AlreadyRefunded(target.id)
        if not configured[target.provider]:
            raise ProviderNotConfigured(target.provider)

    async def _claim(
        self, target: _Target, admin_user_id: int | None, reason: str | None
    ) -> _Claim:
        """The refund row as this press's claim, or AlreadyRefunded / RefundInProgress.
        A claim nobody finished within `claim_ttl`, or one the provider refused, is
        taken over (a refused one under a new idempotence key)."""
        key = refund_key(target.charge_id)
        now = self._now()
        mine = {
            "refund_of": target.charge_id,
            "requested_by": admin_user_id,
            "reason": (reason or "")[:500] or None,
        }
        async with self.db.write() as session:
            first = f"oneai-refund-{target.id}-1"
            values = {
                "user_id": target.user_id,
                "provider": target.provider,
                "provider_charge_id": key,
                "kind": "refund",
                "status": "requested",
                "tier": target.tier,
                "amount_minor": target.amount_minor,
                "currency": target.currency,
                "order_id": target.order_id,
                "payload": {**mine, "attempt": 1, "idempotence_key": first},
                "created_at": now,
            }
            row_id = await insert_new(session, Payment, values, ["provider", "provider_charge_id"])
            if row_id is not None:
                return _Claim(row_id, key, first)
            row = await session.scalar(
                select(Payment)
                .where(Payment.provider == target.provider, Payment.provider_charge_id == key)
                .with_for_update()
                .execution_options(populate_existing=True)
            )
            assert row is not None
            payload = dict(row.payload or {})
            fresh = row.created_at > now - self.claim_ttl
            if row.status == "pending" or (row.status == "requested" and fresh):
                raise RefundInProgress(target.id)
            if row.status not in ("requested", "failed"):
                raise AlreadyRefunded(target.id)
            attempt = int(payload.get("attempt") or 1)
            if row.status == "failed":
                attempt += 1  # the refused key would be refused again
            idempotence_key = f"oneai-refund-{target.id}-{attempt}"
            log.warning(
                "%s refund of payment %d: taking over a %s claim (attempt %d)",
                target.provider,
                target.id,
                row.status,
                attempt,
            )
            row.status = "requested"
            row.created_at = now
            row.payload = {
                **payload,
                **mine,
                "attempt": attempt,
                "idempotence_key": idempotence_key,
            }
            return _Claim(row.id, key, idempotence_key)

    async def _call(self, target: _Target, claim: _Claim) -> _Answer:
        if target.provider == stars.STARS:
            return await self._stars(target)
        if target.provider == yookassa_provider.PROVIDER:
            return await self._yookassa(target, claim)
        return await self._razorpay(target, claim)

    async def _telegram_id(self, user_id: int) -> int | None:
        async with self.db.read() as session:
            telegram_id = await session.scalar(
                select(Identity.platform_user_id).where(
                    Identity.user_id == user_id, Identity.platform == "telegram"
                )
            )
        if telegram_id is None or not telegram_id.lstrip("-").isdigit():
            return None
        return int(telegram_id)

    async def _stop_renewals(
        self, user_id: int, plan: PlanView
    ) -> Literal["stopped", "left"] | None:
        """Stop the renewals of the refunded plan at Stars or Razorpay (YooKassa
        renewals are our own charges, and the ended plan has none)."""
        charge = plan.provider_subscription_id
        if not plan.recurring or plan.cancel_at_period_end or not charge:
            return None
        if plan.provider not in (stars.STARS, razorpay_provider.PROVIDER):
            return None
        try:
            if plan.provider == stars.STARS:
                telegram_id = await self._telegram_id(user_id)
                if self.stop_star_subscription is None or telegram_id is None:
                    return "left"
                await self.stop_star_subscription(telegram_id, charge)
            else:
                if self.razorpay is None:
                    return "left"
                await self.razorpay.cancel(charge)
        except Exception as exc:
            log.warning("user %d: renewals at %s not stopped: %r", user_id, plan.provider, exc)
            return "left"
        return "stopped"

    async def _stars(self, target: _Target) -> _Answer:
        assert self.refund_star_payment is not None and target.user_id is not None
        telegram_id = await self._telegram_id(target.user_id)
        if telegram_id is None:
            raise _Refused("the buyer has no Telegram account linked any more")
        try:
            await self.refund_star_payment(telegram_id, target.charge_id)
        except Exception as exc:
            names = {cls.__name__ for cls in type(exc).__mro__}
            if not names & _TELEGRAM_REFUSALS:
                raise
            message = str(getattr(exc, "message", None) or exc)
            if "CHARGE_ALREADY_REFUNDED" in message:
                return _Answer("succeeded", already=True)
            raise _Refused(message) from exc
        return _Answer("succeeded")

    async def _yookassa(self, target: _Target, claim: _Claim) -> _Answer:
        assert self.yookassa is not None
        # Imported with the shop's provider only (the SDK is large).
        from yookassa.domain.exceptions import BadRequestError as YooBadRequest
        from yookassa.domain.exceptions import ForbiddenError as YooForbidden
        from yookassa.domain.exceptions import NotFoundError as YooNotFound
        from yookassa.domain.exceptions import UnauthorizedError as YooUnauthorized

        try:
            refund = await self.yookassa.create_refund(
                target.charge_id,
                target.amount_minor,
                target.currency,
                claim.idempotence_key,
                f"OneAI refund of payment {target.id}",
            )
        except (YooBadRequest, YooForbidden, YooNotFound, YooUnauthorized) as exc:
            raise _Refused(_yookassa_reason(exc)) from exc
        status = str(refund.status)
        refund_id = str(refund.id) if refund.id else None
        if status == "succeeded":
            return _Answer("succeeded", refund_id)
        if status == "canceled":
            details = getattr(refund, "cancellation_details", None)
            raise _Refused(str(getattr(details, "reason", None) or "canceled"))
        return _Answer("pending", refund_id)

    async def _razorpay(self, target: _Target, claim: _Claim) -> _Answer:
        assert self.razorpay is not None
        from razorpay.errors import BadRequestError as RazorpayBadRequest  # loaded with it

        try:
            refund = await self.razorpay.create_refund(
                target.charge_id,
                target.amount_minor,
                claim.idempotence_key,
                {"oneai_payment": str(target.id)},
            )
        except RazorpayBadRequest as exc:
            message = str(exc)
            if "fully refunded" in message.lower():
                return _Answer("succeeded", already=True)
            raise _Refused(message or "bad request") from exc
        status = str(refund.get("status") or "")
        refund_id = str(refund.get("id") or "") or None
        if status == "processed":
            return _Answer("succeeded", refund_id)
        if status == "failed":
            raise _Refused("the refund failed")
        return _Answer("pending", refund_id)

    async def _release(self, claim: _Claim, reason: str) -> None:
        """The provider refused: the claim is free for another try."""
        async with self.db.write() as session:
            row = await session.get(Payment, claim.row_id, with_for_update=True)
            if row is not None and row.status == "requested":
                row.status = "failed"
                row.payload = {**(row.payload or {}), "error": reason[:500]}

    async def _pending(self, claim: _Claim, answer: _Answer) -> None:
        async with self.db.write() as session:
            row = await session.get(Payment, claim.row_id, with_for_update=True)
            if row is not None and row.status == "requested":
                row.status = "pending"
                row.payload = {**(row.payload or {}), "refund_id": answer.refund_id}

    async def _audit(
        self,
        target: _Target,
        admin_user_id: int | None,
        reason: str | None,
        outcome: str,
        plan: PlanState,
        error: str | None,
    ) -> None:
        """A press that did not end in a refund (that one is audited with the plan
        change, in its transaction)."""
        state = {
            "payment": target.status,
            "tier": plan.tier.value,
            "period_end": plan.period_end.isoformat() if plan.period_end else None,
        }
        async with self.db.write() as session:
            session.add(
                AuditLog(
                    actor_user_id=admin_user_id,
                    action="refund",
                    target_user_id=target.user_id,
                    details={
                        "outcome": outcome,
                        "payment_id": target.id,
                        "provider": target.provider,
                        "charge_id": target.charge_id,
                        "amount": target.amount_minor,
                        "currency": target.currency,
                        "reason": reason,
                        "error": error,
                        "before": state,
                        "after": state,
                    },
                )
            )

    async def _is_user(self, user_id: int) -> bool:
        async with self.db.read() as session:
            return await session.get(User, user_id) is not None

    async def _plan(self, user_id: int | None) -> PlanState:
        if user_id is None:
            return PlanState(Tier.FREE, None)
        async with self.db.read() as session:
            user = await session.get(User, user_id)
            sub = await self.subscriptions.current(session, user_id)
        tier = Tier(user.tier) if user is not None else Tier.FREE
        return PlanState(tier, sub.current_period_end if sub is not None else None)

    def _result(
        self,
        target: _Target,
        status: Literal["refunded", "pending"],
        refund_id: str | None,
        before: PlanState,
        after: PlanState,
        change: PlanChange | None,
    ) -> RefundResult:
        return RefundResult(
            payment_id=target.id,
            provider=target.provider,
            charge_id=target.charge_id,
            user_id=target.user_id,
            amount_minor=target.amount_minor,
            currency=target.currency,
            status=status,
            provider_refund_id=refund_id,
            before=before,
            after=after,
            change=change,
        )


def _yookassa_reason(exc: YooApiError) -> str:
    content = exc.content if isinstance(exc.content, dict) else {}
    return str(content.get("description") or content.get("code") or type(exc).__name__)
