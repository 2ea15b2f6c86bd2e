"""What can go wrong with a conversation operation, in words for the user."""

from __future__ import annotations

import uuid
from collections.abc import Sequence
from dataclasses import dataclass
from datetime import datetime

from core.errors import OneAIError


@dataclass(frozen=True)
class BlockingAnswer:
    """A `streaming` answer in the way of a request, and the worker named on it: if
    that worker is gone, the answer is ended and the request goes ahead."""

    id: uuid.UUID
    worker_id: str | None
    heartbeat_at: datetime | None


class ConversationNotFound(OneAIError):
    code = "conversation_not_found"
    user_message = "That conversation does not exist any more."


class MessageNotFound(OneAIError):
    code = "message_not_found"
    user_message = "That message does not exist any more."


class ConversationBusy(OneAIError):
    code = "busy"
    user_message = "Still answering — press Stop first."

    def __init__(self, blocking: Sequence[BlockingAnswer] = ()) -> None:
        super().__init__()
        self.blocking = tuple(blocking)


class TooManyGenerations(OneAIError):
    code = "too_many_generations"
    user_message = "You already have answers streaming. Wait for one to finish or press Stop."

    def __init__(self, blocking: Sequence[BlockingAnswer] = ()) -> None:
        super().__init__()
        self.blocking = tuple(blocking)


class DuplicateMessage(OneAIError):
    """The platform delivered a message that was answered already: nothing is
    written, nothing charged, nothing said."""

    code = "duplicate"


class ShuttingDown(OneAIError):
    code = "shutting_down"
    user_message = "The bot is restarting. Please send your message again in a minute."


class ConversationFull(OneAIError):
    code = "conversation_full"
    user_message = "This conversation is too long to continue. Start a new one with /new."


class TooManyRevisions(OneAIError):
    code = "too_many_revisions"
    user_message = "This message has reached its limit of versions."


class InputTooLong(OneAIError):
    code = "input_too_long"

    def __init__(self, length: int, limit: int) -> None:
        super().__init__(
            f"Your message is {length:,} characters long; the limit is {limit:,}. "
            "Please shorten it or split it.",
            length=length,
            limit=limit,
        )


class EmptyMessage(OneAIError):
    code = "empty_message"
    user_message = "Your message is empty. Please send some text."


class UserBanned(OneAIError):
    code = "banned"
    user_message = "Your access to this service has been suspended."


class NotARevisionTarget(OneAIError):
    code = "wrong_message_kind"
    user_message = "That action does not apply to this message."


class RevisionNotFound(OneAIError):
    code = "revision_not_found"
    user_message = "That version does not exist."
