"""Quotas, subscriptions, the payment ledger and the outbox."""

from __future__ import annotations

import uuid
from datetime import datetime
from typing import Any

from sqlalchemy import (
    BigInteger,
    CheckConstraint,
    ForeignKey,
    Index,
    String,
    Text,
    UniqueConstraint,
    text,
)
from sqlalchemy.orm import Mapped, mapped_column

from core.clock import utcnow
from core.db.models.base import Base, Timestamps
from core.db.types import BigIntPK


class UsageQuota(Timestamps, Base):
    __tablename__ = "usage_quotas"
    __table_args__ = (
        UniqueConstraint("user_id", "quota_key"),
        CheckConstraint("used_count >= 0", name="used_not_negative"),
    )

    id: Mapped[int] = mapped_column(BigIntPK, primary_key=True, autoincrement=True)
    user_id: Mapped[int] = mapped_column(BigInteger, ForeignKey("users.id", ondelete="CASCADE"))
    subscription_tier: Mapped[str] = mapped_column(String(16))
    quota_key: Mapped[str] = mapped_column(String(32))
    used_count: Mapped[int] = mapped_column(default=0)
    quota_limit: Mapped[int]
    reset_frequency: Mapped[str] = mapped_column(String(8))
    # The current window is [last_reset_at, next_reset_at); a due window resets on use.
    last_reset_at: Mapped[datetime]
    next_reset_at: Mapped[datetime]
    last_usage_at: Mapped[datetime | None]


class Subscription(Timestamps, Base):
    """The authority for a user's plan: at most one current row per user."""

    __tablename__ = "subscriptions"
    __table_args__ = (
        UniqueConstraint("payment_provider", "provider_subscription_id"),
        Index(
            "uq_subscriptions_current_user",
            "user_id",
            unique=True,
            sqlite_where=text("is_current"),
            postgresql_where=text("is_current"),
        ),
        Index("ix_subscriptions_period_end", "current_period_end"),
        # Plans per tier on the admin stats.
        Index(
            "ix_subscriptions_current_tier",
            "tier",
            "status",
            sqlite_where=text("is_current"),
            postgresql_where=text("is_current"),
        ),
    )

    id: Mapped[int] = mapped_column(BigIntPK, primary_key=True, autoincrement=True)
    user_id: Mapped[int] = mapped_column(BigInteger, ForeignKey("users.id", ondelete="CASCADE"))
    tier: Mapped[str] = mapped_column(String(16))
    # active | cancelled | past_due | unpaid | trial | expired
    status: Mapped[str] = mapped_column(String(16))
    is_current: Mapped[bool] = mapped_column(default=True)
    payment_provider: Mapped[str] = mapped_column(String(32))
    provider_subscription_id: Mapped[str | None] = mapped_column(String(191))
    current_period_start: Mapped[datetime]
    current_period_end: Mapped[datetime]
    cancel_at_period_end: Mapped[bool] = mapped_column(default=False)
    canceled_at: Mapped[datetime | None]
    reminded_at: Mapped[datetime | None]
    # Provider events arrive out of order: only newer ones are applied.
    last_event_at: Mapped[datetime | None]
    meta: Mapped[dict[str, Any]] = mapped_column("metadata", default=dict)


class SubscriptionHistory(Base):
    __tablename__ = "subscription_history"
    __table_args__ = (Index("ix_subscription_history_user", "user_id", "changed_at"),)

    id: Mapped[int] = mapped_column(BigIntPK, primary_key=True, autoincrement=True)
    user_id: Mapped[int] = mapped_column(BigInteger, ForeignKey("users.id", ondelete="CASCADE"))
    subscription_id: Mapped[int | None] = mapped_column(
        BigInteger, ForeignKey("subscriptions.id", ondelete="SET NULL")
    )
    old_tier: Mapped[str | None] = mapped_column(String(16))
    new_tier: Mapped[str] = mapped_column(String(16))
    # new_subscription | renewal | upgrade | downgrade | cancellation | expiry | refund | grant
    change_reason: Mapped[str] = mapped_column(String(32))
    changed_at: Mapped[datetime] = mapped_column(default=utcnow)
    meta: Mapped[dict[str, Any]] = mapped_column("metadata", default=dict)


class PaymentOrder(Timestamps, Base):
    """A purchase the bot offered; carries the stable idempotence key sent to the provider."""

    __tablename__ = "payment_orders"
    __table_args__ = (UniqueConstraint("provider", "provider_payment_id"),)

    id: Mapped[uuid.UUID] = mapped_column(primary_key=True, default=uuid.uuid4)
    user_id: Mapped[int] = mapped_column(
        BigInteger, ForeignKey("users.id", ondelete="CASCADE"), index=True
    )
    provider: Mapped[str] = mapped_column(String(32))
    tier: Mapped[str] = mapped_column(String(16))
    amount_minor: Mapped[int] = mapped_column(BigInteger)
    currency: Mapped[str] = mapped_column(String(8))
    idempotence_key: Mapped[str] = mapped_column(String(64), unique=True)
    provider_payment_id: Mapped[str | None] = mapped_column(String(191))
    status: Mapped[str] = mapped_column(String(32), default="created")
    # The newest provider event applied to this order (events arrive out of order).
    last_event_at: Mapped[datetime | None]
    meta: Mapped[dict[str, Any]] = mapped_column("metadata", default=dict)


class Payment(Base):
    """The ledger. Keyed by the provider's charge or event id: a replayed webhook
    collides on the unique key instead of activating twice."""

    __tablename__ = "payments"
    __table_args__ = (
        UniqueConstraint("provider", "provider_charge_id"),
        # Revenue per month on the admin stats.
        Index("ix_payments_created_at", "created_at"),
    )

    id: Mapped[int] = mapped_column(BigIntPK, primary_key=True, autoincrement=True)
    user_id: Mapped[int | None] = mapped_column(
        BigInteger, ForeignKey("users.id", ondelete="SET NULL"), index=True
    )
    provider: Mapped[str] = mapped_column(String(32))
    provider_charge_id: Mapped[str] = mapped_column(String(191))
    kind: Mapped[str] = mapped_column(String(16))  # payment | refund | renewal
    # payment / renewal: succeeded | refunded | amount_mismatch (Discord: ended too).
    # refund (keyed refund:<charge id of the payment>): succeeded is money back;
    # requested | pending | failed are an admin's refund not finished (payments/refunds.py).
    status: Mapped[str] = mapped_column(String(32))
    tier: Mapped[str | None] = mapped_column(String(16))
    amount_minor: Mapped[int] = mapped_column(BigInteger, default=0)
    currency: Mapped[str] = mapped_column(String(8))
    order_id: Mapped[uuid.UUID | None] = mapped_column(
        ForeignKey("payment_orders.id", ondelete="SET NULL")
    )
    subscription_id: Mapped[int | None] = mapped_column(
        BigInteger, ForeignKey("subscriptions.id", ondelete="SET NULL")
    )
    payload: Mapped[dict[str, Any]] = mapped_column(default=dict)
    created_at: Mapped[datetime] = mapped_column(default=utcnow)


class WebhookEvent(Base):
    """Every provider event seen once, by its own id (dedupe before any work)."""

    __tablename__ = "webhook_events"
    __table_args__ = (UniqueConstraint("provider", "event_id"),)

    id: Mapped[int] = mapped_column(BigIntPK, primary_key=True, autoincrement=True)
    provider: Mapped[str] = mapped_column(String(32))
    event_id: Mapped[str] = mapped_column(String(191))
    event_type: Mapped[str] = mapped_column(String(64))
    received_at: Mapped[datetime] = mapped_column(default=utcnow)
    processed_at: Mapped[datetime | None]


class OutboxMessage(Base):
    """A message to a user caused by a state change, written in that change's
    transaction and delivered after commit."""

    __tablename__ = "outbox"
    __table_args__ = (
        Index(
            "ix_outbox_pending",
            "created_at",
            sqlite_where=text("sent_at IS NULL"),
            postgresql_where=text("sent_at IS NULL"),
        ),
    )

    id: Mapped[int] = mapped_column(BigIntPK, primary_key=True, autoincrement=True)
    user_id: Mapped[int] = mapped_column(BigInteger, ForeignKey("users.id", ondelete="CASCADE"))
    # The platform the change came from (where the person is answered); None: any.
    platform: Mapped[str | None] = mapped_column(String(16))
    kind: Mapped[str] = mapped_column(String(32))
    payload: Mapped[dict[str, Any]] = mapped_column(default=dict)
    created_at: Mapped[datetime] = mapped_column(default=utcnow)
    # A sender holds a row until then; another process takes it over only after.
    claimed_until: Mapped[datetime | None]
    sent_at: Mapped[datetime | None]
    attempts: Mapped[int] = mapped_column(default=0)
    last_error: Mapped[str | None] = mapped_column(Text)


class AuditLog(Base):
    __tablename__ = "audit_log"

    id: Mapped[int] = mapped_column(BigIntPK, primary_key=True, autoincrement=True)
    actor_user_id: Mapped[int | None] = mapped_column(
        BigInteger, ForeignKey("users.id", ondelete="SET NULL")
    )
    action: Mapped[str] = mapped_column(String(64), index=True)
    target_user_id: Mapped[int | None] = mapped_column(
        BigInteger, ForeignKey("users.id", ondelete="SET NULL")
    )
    details: Mapped[dict[str, Any]] = mapped_column(default=dict)
    created_at: Mapped[datetime] = mapped_column(default=utcnow)
