"""Broadcasts: an admin's message to everyone, one plan, or the recently active,
sent on every platform under its limits, at most once per person, resuming
after a restart. The engine is here; each platform adds a sender."""

from core.broadcast.engine import BroadcastEngine
from core.broadcast.model import (
    ACTIVE_DAYS,
    Audience,
    AudienceCount,
    AudienceKind,
    BroadcastError,
    BroadcastInfo,
    Content,
    Photo,
    Preview,
    Progress,
    ProgressCallback,
    ProgressRef,
    RecipientState,
    Rejected,
    RetryAfter,
    Sender,
    SendLimits,
    Status,
    Transient,
    Unreachable,
)
from core.broadcast.pacing import Pacer

__all__ = [
    "ACTIVE_DAYS",
    "Audience",
    "AudienceCount",
    "AudienceKind",
    "BroadcastEngine",
    "BroadcastError",
    "BroadcastInfo",
    "Content",
    "Pacer",
    "Photo",
    "Preview",
    "Progress",
    "ProgressCallback",
    "ProgressRef",
    "RecipientState",
    "Rejected",
    "RetryAfter",
    "SendLimits",
    "Sender",
    "Status",
    "Transient",
    "Unreachable",
]
