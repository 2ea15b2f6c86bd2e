"""The conversation list (/history) as pages, and what can be done with an entry:
open it, rename, delete, export."""

from __future__ import annotations

import uuid
from dataclasses import dataclass
from datetime import datetime
from enum import StrEnum

from core.conversations.export import export_markdown
from core.db.models import Conversation
from core.i18n import t
from core.services import Services

PAGE_SIZE = 8
EXPORT_NAME_CHARS = 40


class ConversationAction(StrEnum):
    """What an entry offers. Short values: they travel in button ids."""

    OPEN = "r"  # continue it (resume)
    RENAME = "n"
    DELETE = "d"
    EXPORT = "e"


ENTRY_ACTIONS = (
    ConversationAction.OPEN,
    ConversationAction.RENAME,
    ConversationAction.DELETE,
    ConversationAction.EXPORT,
)


@dataclass(frozen=True)
class HistoryEntry:
    id: uuid.UUID
    title: str
    model_id: str
    last_active: datetime  # the last message, or the start
    current: bool  # the conversation the next message goes to
    actions: tuple[ConversationAction, ...]


@dataclass(frozen=True)
class HistoryPage:
    entries: list[HistoryEntry]
    page: int  # 1-based, within 1..pages
    pages: int
    total: int
    text: str  # localized: the list's heading, or the empty notice

    @property
    def empty(self) -> bool:
        return not self.entries

    @property
    def previous_page(self) -> int | None:
        return self.page - 1 if self.page > 1 else None

    @property
    def next_page(self) -> int | None:
        return self.page + 1 if self.page < self.pages else None

    @property
    def has_previous(self) -> bool:
        return self.previous_page is not None

    @property
    def has_next(self) -> bool:
        return self.next_page is not None


@dataclass(frozen=True)
class ExportFile:
    filename: str
    caption: str  # the title
    content: str  # Markdown of the active path


async def history_page(
    services: Services, user_id: int, lang: str, page: int = 1, per_page: int = PAGE_SIZE
) -> HistoryPage:
    """The person's conversations, most recently active first; a page past the end
    shows the last one."""
    listing = await services.conversations.page(user_id, page, per_page=per_page)
    user = await services.accounts.get(user_id)
    current = user.current_conversation_id if user is not None else None
    entries = [
        HistoryEntry(
            conversation.id,
            conversation.title,
            conversation.model_id,
            conversation.last_message_at or conversation.created_at,
            conversation.id == current,
            ENTRY_ACTIONS,
        )
        for conversation in listing.items
    ]
    text = (
        t(lang, "history.header", page=listing.page, pages=listing.pages)
        if entries
        else t(lang, "history.empty")
    )
    return HistoryPage(entries, listing.page, listing.pages, listing.total, text)


async def open_conversation(
    services: Services, user_id: int, conversation_id: uuid.UUID
) -> Conversation:
    """Make one of the person's conversations the one their next message goes to.
    Raises ConversationNotFound for someone else's or a deleted one."""
    conversation = await services.conversations.get(user_id, conversation_id)
    await services.accounts.set_current_conversation(user_id, conversation.id)
    return conversation


async def delete_conversation(
    services: Services, user_id: int, conversation_id: uuid.UUID
) -> Conversation:
    """Delete one of the person's conversations (the next message then starts a new
    one if it was current). Raises ConversationNotFound, or ConversationBusy while it
    answers."""
    conversation = await services.conversations.get(user_id, conversation_id)
    await services.conversations.delete(user_id, conversation.id)
    return conversation


async def rename_conversation(
    services: Services, user_id: int, conversation_id: uuid.UUID, title: str, lang: str
) -> str:
    """Rename one of the person's conversations; the reply. Raises ConversationNotFound."""
    if not title.strip():
        return t(lang, "rename.usage")
    title = await services.conversations.rename(user_id, conversation_id, title)
    return t(lang, "rename.done", title=title)


async def rename_current(services: Services, user_id: int, title: str, lang: str) -> str:
    """/rename TITLE: rename the current conversation; the reply."""
    if not title.strip():
        return t(lang, "rename.usage")
    conversation = await services.conversations.current(user_id)
    if conversation is None:
        return t(lang, "nothing")
    return await rename_conversation(services, user_id, conversation.id, title, lang)


def export_filename(title: str) -> str:
    """A file name for a conversation: letters and digits of its title, else dashes."""
    name = "".join(c if c.isalnum() else "-" for c in title)[:EXPORT_NAME_CHARS].strip("-")
    return f"{name or 'conversation'}.md"


async def export_conversation(
    services: Services, user_id: int, conversation_id: uuid.UUID
) -> ExportFile:
    """One of the person's conversations as a Markdown file. Raises ConversationNotFound."""
    conversation = await services.conversations.get(user_id, conversation_id)
    markdown = await export_markdown(services.db, user_id, conversation.id)
    return ExportFile(export_filename(conversation.title), conversation.title, markdown)


async def export_current(services: Services, user_id: int) -> ExportFile | None:
    """/export: the current conversation as a Markdown file; None when there is none."""
    conversation = await services.conversations.current(user_id)
    if conversation is None:
        return None
    return await export_conversation(services, user_id, conversation.id)
