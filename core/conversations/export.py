"""Export a conversation: Markdown of the active path, JSON of every revision."""

from __future__ import annotations

import json
import uuid
from typing import Any

from sqlalchemy import select

from core.conversations import store
from core.conversations.errors import ConversationNotFound
from core.conversations.turns import load_documents
from core.db.engine import Database
from core.db.models import Attachment, ChatMessage, Conversation
from core.db.models.attachments import AUDIO
from core.documents.service import stored_label
from core.llm.citations import from_meta, to_meta

ROLE_HEADINGS = {"user": "You", "assistant": "Assistant"}


async def _load(
    db: Database, user_id: int, conversation_id: uuid.UUID, *, every_revision: bool
) -> tuple[Conversation, list[ChatMessage], dict[uuid.UUID, Attachment]]:
    async with db.read() as session:
        conversation = await session.get(Conversation, conversation_id)
        if conversation is None or conversation.user_id != user_id:
            raise ConversationNotFound()
        if every_revision:
            rows = list(
                (
                    await session.scalars(
                        select(ChatMessage)
                        .where(ChatMessage.conversation_id == conversation_id)
                        .order_by(
                            ChatMessage.sequence_number,
                            ChatMessage.revision_number,
                            ChatMessage.created_at,
                        )
                    )
                ).all()
            )
        else:
            rows = await store.load_active_path(session, conversation_id)
        documents = await load_documents(session, rows)
    return conversation, rows, documents


async def export_markdown(
    db: Database, user_id: int, conversation_id: uuid.UUID, lang: str = "en"
) -> str:
    conversation, rows, documents = await _load(db, user_id, conversation_id, every_revision=False)
    lines = [f"# {conversation.title}", ""]
    lines.append(f"Model: `{conversation.model_id}`  ")
    lines.append(f"Started: {conversation.created_at:%Y-%m-%d %H:%M} UTC")
    lines.append("")
    for row in rows:
        heading = ROLE_HEADINGS.get(row.role, row.role.title())
        if row.role == "assistant" and row.model_id:
            heading += f" ({row.model_id})"
        lines += [f"## {heading}", ""]
        document = documents.get(row.attachment_id) if row.attachment_id else None
        if document is not None:  # the name only: the text or sound stays out of the export
            lines += [stored_label(lang, document), ""]
        if row.content or document is None or document.kind != AUDIO:
            lines += [row.content or "_(no text)_", ""]
        lines += _sources(row)
        if row.status not in ("complete", "streaming"):
            lines += [f"_This answer is {row.status}._", ""]
    return "\n".join(lines).rstrip() + "\n"


def _sources(row: ChatMessage) -> list[str]:
    """A web-search answer's sources as a numbered Markdown list (titles cannot
    close their link: brackets are swapped; URLs were made safe when stored)."""
    citations = from_meta(row.meta)
    if not citations:
        return []
    lines = ["Sources:", ""]
    for number, citation in enumerate(citations, 1):
        title = citation.title.replace("[", "(").replace("]", ")")
        lines.append(f"{number}. [{title}]({citation.url})")
    return [*lines, ""]


def _attachment_json(document: Attachment | None) -> dict[str, Any] | None:
    if document is None:
        return None
    if document.kind == AUDIO:  # what it was, not the recording itself
        meta = document.meta if isinstance(document.meta, dict) else {}
        return {
            "kind": AUDIO,
            "name": document.name,
            "mime_type": document.mime_type,
            "size_bytes": document.size_bytes,
            "format": meta.get("format"),
            "seconds": meta.get("seconds"),
        }
    return {
        "name": document.name,
        "mime_type": document.mime_type,
        "size_bytes": document.size_bytes,
        "pages": document.pages,
        "chars": document.chars,
    }


def _message_json(row: ChatMessage, document: Attachment | None) -> dict[str, Any]:
    citations = from_meta(row.meta)
    return {
        "id": str(row.id),
        "role": row.role,
        "content": row.content,
        "model_id": row.model_id,
        "sequence_number": row.sequence_number,
        "parent_message_id": str(row.parent_message_id) if row.parent_message_id else None,
        "original_message_id": str(row.original_message_id),
        "revision_number": row.revision_number,
        "revision_type": row.revision_type,
        "is_latest": row.is_latest,
        "status": row.status,
        "prompt_tokens": row.prompt_tokens,
        "completion_tokens": row.completion_tokens,
        "created_at": row.created_at.isoformat(),
        **({"citations": to_meta(citations)} if citations else {}),
        "attachment": _attachment_json(document),
    }


async def export_json(db: Database, user_id: int, conversation_id: uuid.UUID) -> str:
    """Every row of every revision and branch; `is_latest` marks the active path."""
    conversation, rows, documents = await _load(db, user_id, conversation_id, every_revision=True)
    document = {
        "id": str(conversation.id),
        "title": conversation.title,
        "model_id": conversation.model_id,
        "system_prompt": conversation.system_prompt,
        "mode": conversation.mode,
        "created_at": conversation.created_at.isoformat(),
        "last_message_at": (
            conversation.last_message_at.isoformat() if conversation.last_message_at else None
        ),
        "messages": [
            _message_json(row, documents.get(row.attachment_id) if row.attachment_id else None)
            for row in rows
        ],
    }
    return json.dumps(document, ensure_ascii=False, indent=2)
