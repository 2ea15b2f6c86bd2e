"""All tables, imported together so metadata is complete for migrations."""

from core.db.models.accounts import Identity, User
from core.db.models.base import Base
from core.db.models.billing import (
    AuditLog,
    OutboxMessage,
    Payment,
    PaymentOrder,
    Subscription,
    SubscriptionHistory,
    UsageQuota,
    WebhookEvent,
)
from core.db.models.conversations import ChatMessage, Conversation, MessageStatus

__all__ = [
    "AuditLog",
    "Base",
    "ChatMessage",
    "Conversation",
    "Identity",
    "MessageStatus",
    "OutboxMessage",
    "Payment",
    "PaymentOrder",
    "Subscription",
    "SubscriptionHistory",
    "UsageQuota",
    "User",
    "WebhookEvent",
]
