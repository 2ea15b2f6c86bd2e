"""All tables, imported together so metadata is complete for migrations."""

from core.db.models.access import AccessEntry, AccessInvite, AccessNote, AccessRedemption
from core.db.models.accounts import Identity, User
from core.db.models.admin import DisabledModel
from core.db.models.attachments import Attachment
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
from core.db.models.broadcasts import Broadcast, BroadcastRecipient
from core.db.models.conversations import ChatMessage, Conversation, MessageLink, MessageStatus
from core.db.models.linking import LinkAttempt, LinkCodeRecord
from core.db.models.workers import Worker

__all__ = [
    "AccessEntry",
    "AccessInvite",
    "AccessNote",
    "AccessRedemption",
    "Attachment",
    "AuditLog",
    "Base",
    "Broadcast",
    "BroadcastRecipient",
    "ChatMessage",
    "Conversation",
    "DisabledModel",
    "Identity",
    "LinkAttempt",
    "LinkCodeRecord",
    "MessageLink",
    "MessageStatus",
    "OutboxMessage",
    "Payment",
    "PaymentOrder",
    "Subscription",
    "SubscriptionHistory",
    "UsageQuota",
    "User",
    "WebhookEvent",
    "Worker",
]
