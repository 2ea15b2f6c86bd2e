"""Web search: /search QUESTION and the per-conversation toggle in /settings.

A search answer goes out with OpenRouter's web plugin and takes one `web_search`
unit instead of its model's message unit (see README, "Web search")."""

from __future__ import annotations

from core.db.models import User
from core.i18n import t
from core.services import Services


def available(services: Services) -> bool:
    """Whether this server offers web search (OpenRouter, or WEB_SEARCH=on)."""
    return services.settings.llm.web_search_available


def search_refusal(services: Services, lang: str, question: str) -> str | None:
    """Why /search QUESTION cannot go ahead (nothing is asked or charged), or None."""
    if not available(services):
        return t(lang, "search.unavailable")
    if not question.strip():
        return t(lang, "search.usage")
    return None


async def web_search_state(services: Services, user: User) -> bool | None:
    """Whether the current conversation searches; None when there is no toggle to
    show (the server offers no search, or there is no current conversation)."""
    if not available(services):
        return None
    conversation = await services.conversations.current(user.id)
    if conversation is None:
        return None
    return bool((conversation.meta or {}).get("web_search"))


async def toggle_web_search(services: Services, user: User, lang: str) -> str:
    """Switch web search for the current conversation; the notice to show."""
    if not available(services):
        return t(lang, "search.unavailable")
    conversation = await services.conversations.current(user.id)
    if conversation is None:
        return t(lang, "search.no_conversation")
    on = not (conversation.meta or {}).get("web_search")
    await services.conversations.set_web_search(user.id, conversation.id, on)
    return t(lang, "search.enabled" if on else "search.disabled")
