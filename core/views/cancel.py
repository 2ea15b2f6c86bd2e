"""/cancel: stop the answer that is streaming in the current conversation, and end
whatever the platform was asking for (a system prompt, say)."""

from __future__ import annotations

from dataclasses import dataclass

from core.i18n import t
from core.services import Services


@dataclass(frozen=True)
class CancelResult:
    stopped: bool  # an answer was streaming and was told to stop
    text: str  # localized reply: "Cancelled." or "Nothing to cancel."


async def stop_current_answer(services: Services, user_id: int) -> bool:
    """Stop the answer streaming at the end of the current conversation, wherever it
    runs; False when none is."""
    conversation = await services.conversations.current(user_id)
    if conversation is None:
        return False
    path = await services.conversations.active_path(conversation.id)
    if not path or path[-1].status != "streaming":
        return False
    return await services.chat.request_stop(user_id, path[-1].id)


async def cancel(services: Services, user_id: int, lang: str, *, pending: bool) -> CancelResult:
    """`pending`: the platform was waiting for an input from the person and has
    stopped waiting; that counts as something cancelled."""
    stopped = await stop_current_answer(services, user_id)
    return CancelResult(stopped, t(lang, "cancel.done" if stopped or pending else "cancel.nothing"))
