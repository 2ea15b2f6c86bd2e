"""One streaming driver for every platform.

The LLM yields text deltas; a platform shows the growing answer by posting a
message and editing it. `StreamDriver` owns all the timing (typing status,
per-chat spacing, the global budget, `retry_after`, rolling over past the length
limit, always delivering the final state); a platform `Sink` only speaks its API
and renders its markup. Nothing here imports a platform library.
"""

from core.streaming.driver import DriverResult, StreamDriver
from core.streaming.sink import (
    AnswerSource,
    ChatUnavailable,
    EndingSource,
    Outcome,
    RetryLater,
    Sink,
    SinkLimits,
    StreamStatus,
    show_text,
    split_plain,
)
from core.streaming.throttle import ChatGate, ChatThrottle, RateLimiter

__all__ = [
    "AnswerSource",
    "ChatGate",
    "ChatThrottle",
    "ChatUnavailable",
    "DriverResult",
    "EndingSource",
    "Outcome",
    "RateLimiter",
    "RetryLater",
    "Sink",
    "SinkLimits",
    "StreamDriver",
    "StreamStatus",
    "show_text",
    "split_plain",
]
