"""What a broadcast is, how it is going, and what a platform sender must do.

A sender speaks one platform's API and translates its answers into the errors
below; every policy (pacing, waiting out 429s, retries, marking people who
blocked the bot, at-most-once) lives in the engine.
"""

from __future__ import annotations

from collections.abc import Awaitable, Callable
from dataclasses import dataclass
from datetime import datetime
from enum import StrEnum
from typing import Any, Protocol

from core.errors import OneAIError
from core.tiers import Tier

ACTIVE_DAYS = 30
MAX_TEXT = 4096  # characters; each platform checks its own limit on top (`Sender.problem`)


class Status(StrEnum):
    DRAFT = "draft"
    RUNNING = "running"
    PAUSED = "paused"
    CANCELLED = "cancelled"
    DONE = "done"


class RecipientState(StrEnum):
    PENDING = "pending"
    SENDING = "sending"  # claimed: committed before the platform call
    SENT = "sent"
    BLOCKED = "blocked"
    FAILED = "failed"
    # Claimed by a process that died before it recorded the outcome: the message
    # may have gone out, so it is never sent again (at most once).
    UNCONFIRMED = "unconfirmed"


FINAL_STATES = frozenset(
    {RecipientState.SENT, RecipientState.BLOCKED, RecipientState.FAILED, RecipientState.UNCONFIRMED}
)


class AudienceKind(StrEnum):
    ALL = "all"
    TIER = "tier"
    ACTIVE = "active"


@dataclass(frozen=True)
class Audience:
    """Who a broadcast goes to: everyone, the people on one plan, or the people
    who wrote to the bot in the last `days` days. Banned people never get it."""

    kind: AudienceKind = AudienceKind.ALL
    tier: Tier | None = None
    days: int | None = None

    @classmethod
    def everyone(cls) -> Audience:
        return cls(AudienceKind.ALL)

    @classmethod
    def on_tier(cls, tier: Tier | str) -> Audience:
        return cls(AudienceKind.TIER, tier=Tier(tier))

    @classmethod
    def active(cls, days: int = ACTIVE_DAYS) -> Audience:
        if days <= 0:
            raise BroadcastError("days must be positive")
        return cls(AudienceKind.ACTIVE, days=days)

    def __post_init__(self) -> None:
        if self.kind is AudienceKind.TIER and self.tier is None:
            raise BroadcastError("a tier audience needs a tier")

    def describe(self) -> str:
        if self.kind is AudienceKind.TIER:
            return f"{self.tier} plan"
        if self.kind is AudienceKind.ACTIVE:
            return f"active in the last {self.days} days"
        return "everyone"


@dataclass(frozen=True)
class Photo:
    """A picture sent with the text: a file id of `platform` (what Telegram gives
    for an uploaded photo) or, with `platform` None, an http(s) URL."""

    ref: str
    platform: str | None = None

    @property
    def is_url(self) -> bool:
        return self.platform is None


@dataclass(frozen=True)
class Content:
    """What every recipient gets: Markdown text and an optional photo."""

    broadcast_id: int
    text: str
    photo: Photo | None = None


@dataclass(frozen=True)
class ProgressRef:
    """The message that shows a broadcast's progress, edited every few seconds."""

    platform: str
    chat_id: str
    message_id: str

    def to_json(self) -> dict[str, Any]:
        return {"platform": self.platform, "chat_id": self.chat_id, "message_id": self.message_id}

    @classmethod
    def from_json(cls, data: dict[str, Any] | None) -> ProgressRef | None:
        if not data:
            return None
        return cls(str(data["platform"]), str(data["chat_id"]), str(data["message_id"]))


@dataclass(frozen=True)
class BroadcastInfo:
    id: int
    created_by: int | None
    text: str
    photo: Photo | None
    audience: Audience
    status: Status
    created_at: datetime
    started_at: datetime | None
    finished_at: datetime | None

    @property
    def content(self) -> Content:
        return Content(self.id, self.text, self.photo)


@dataclass(frozen=True)
class AudienceCount:
    """How many people an audience reaches now, by the platform each one gets it
    on (the one they used last); people linked on two platforms count once."""

    total: int
    by_platform: dict[str, int]


@dataclass(frozen=True)
class Preview:
    broadcast: BroadcastInfo
    audience: AudienceCount
    # Why a platform cannot send this text (too long, a photo it cannot show).
    problems: dict[str, str]

    @property
    def ready(self) -> bool:
        """Nothing stops sending: no problem on a platform that has recipients."""
        return not any(self.audience.by_platform.get(p) for p in self.problems)

    def describe(self) -> str:
        """The lines shown above Confirm: who gets it, where, and what is wrong."""
        platforms = " · ".join(
            f"{platform.capitalize()} {count}"
            for platform, count in sorted(self.audience.by_platform.items())
        )
        lines = [
            f"To: {self.broadcast.audience.describe()}, {self.audience.total} people"
            + (f" ({platforms})" if platforms else "")
        ]
        if self.broadcast.photo is not None:
            lines.append("With a photo.")
        for platform, problem in sorted(self.problems.items()):
            if self.audience.by_platform.get(platform):
                lines.append(f"⚠️ {platform.capitalize()}: {problem}")
        return "\n".join(lines)


@dataclass(frozen=True)
class Progress:
    broadcast_id: int
    status: Status
    total: int
    sent: int
    blocked: int
    failed: int
    unconfirmed: int
    pending: int  # not yet sent, including the ones being sent right now
    floods: int  # 429 answers the platforms gave
    started_at: datetime | None
    finished_at: datetime | None
    report_to: ProgressRef | None = None

    @property
    def done(self) -> int:
        return self.sent + self.blocked + self.failed + self.unconfirmed

    @property
    def finished(self) -> bool:
        return self.status in (Status.DONE, Status.CANCELLED)

    def line(self) -> str:
        """One line for the admin's progress message."""
        head = {
            Status.DRAFT: "📝 Draft",
            Status.RUNNING: "📣 Sending",
            Status.PAUSED: "⏸ Paused",
            Status.CANCELLED: "⏹ Cancelled",
            Status.DONE: "✅ Done",
        }[self.status]
        parts = [f"{head}: {self.done}/{self.total}", f"sent {self.sent}"]
        if self.blocked:
            parts.append(f"blocked {self.blocked}")
        if self.failed:
            parts.append(f"failed {self.failed}")
        if self.unconfirmed:
            parts.append(f"unconfirmed {self.unconfirmed}")
        if self.finished and self.pending:
            parts.append(f"not sent {self.pending}")
        return " · ".join(parts)


class BroadcastError(OneAIError):
    code = "broadcast"


# -- what a sender raises -------------------------------------------------------


class RetryAfter(Exception):
    """The platform asked to wait (429): nothing was delivered."""

    def __init__(self, seconds: float) -> None:
        super().__init__(f"retry after {seconds} s")
        self.seconds = max(0.0, float(seconds))


class Unreachable(Exception):
    """The person blocked the bot or closed their DMs: counted blocked, and their
    account on that platform is marked so nothing is written to it any more."""


class Rejected(Exception):
    """The platform refused the message for good (400): counted failed, no retry."""


class Transient(Exception):
    """A network error or a 5xx: retried a few times, then counted failed. Any
    exception a sender does not translate is taken as one."""


@dataclass(frozen=True)
class SendLimits:
    """What the platform allows: `per_second` messages in any one second over all
    chats, and how many calls may be in flight at once."""

    per_second: float
    concurrency: int = 4


class Sender(Protocol):
    """One platform's side of a broadcast."""

    @property
    def platform(self) -> str: ...

    @property
    def limits(self) -> SendLimits: ...

    def problem(self, content: Content) -> str | None:
        """Why this platform cannot send `content` as one message, or None."""

    async def send(self, address: str, content: Content) -> None:
        """Send `content` to one person (`address`: their chat there). Raises
        RetryAfter, Unreachable, Rejected or Transient; anything else is taken as
        Transient."""


# Shows a broadcast's progress (the admin UI edits one message with it).
ProgressCallback = Callable[[Progress], Awaitable[None]]
