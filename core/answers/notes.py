"""The line under a finished answer that says how it ended."""

from __future__ import annotations

from core.errors import OneAIError
from core.i18n import error_text, t


def outcome_note(lang: str, status: str, error: Exception | None, text: str) -> str | None:
    """What the final message says below the answer, by how it ended (None: nothing)."""
    if status == "cancelled":
        return t(lang, "stopped")
    if status == "interrupted":
        return t(lang, "cut")
    if status == "failed":
        reason = (
            error_text(lang, error) if isinstance(error, OneAIError) else t(lang, "error.generic")
        )
        return t(lang, "failed", reason=reason)
    if status == "complete" and not text.strip():
        return t(lang, "empty_answer")
    return None
