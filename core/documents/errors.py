"""Why a document could not be read, each with a reply fit to show its sender.
English texts live here; other languages in core/i18n.py as `error.<code>`."""

from __future__ import annotations

from core.errors import OneAIError


class DocumentError(OneAIError):
    code = "document_error"
    user_message = "I could not read that document."


class DocumentTooBig(DocumentError):
    code = "document_too_big"

    def __init__(self, size_mb: float, limit_mb: float) -> None:
        super().__init__(
            f"That file is {size_mb:.1f} MB; I can read documents up to {limit_mb:.0f} MB. "
            "Please send a smaller file or only the part you need.",
            size_mb=f"{size_mb:.1f}",
            limit_mb=f"{limit_mb:.0f}",
        )


class DocumentUnavailable(DocumentError):
    code = "document_unavailable"
    user_message = "I could not download that file. Please send it again."


class BinaryDocument(DocumentError):
    code = "document_binary"
    user_message = (
        "That file is not text I can read: I read PDF, DOCX and text files "
        "(plain text, Markdown, source code, CSV in UTF-8)."
    )


class UnreadableDocument(DocumentError):
    code = "document_unreadable"
    user_message = "That document is damaged or empty: I found no text in it."


class EncryptedDocument(DocumentError):
    code = "document_encrypted"
    user_message = (
        "That document is protected by a password, so I can't read it. "
        "Please remove the password (save an unprotected copy) and send it again."
    )


class ScannedPdf(DocumentError):
    code = "document_scanned"

    def __init__(self, pages: int) -> None:
        super().__init__(
            f"That PDF ({pages} pages) has no text layer: it looks scanned, so there is "
            "no text for me to read. Please send a PDF with selectable text "
            "(run it through OCR first), or paste the text.",
            pages=pages,
        )


class TooManyPages(DocumentError):
    code = "document_too_many_pages"

    def __init__(self, pages: int, limit: int) -> None:
        super().__init__(
            f"That PDF has {pages} pages; I read documents of up to {limit} pages. "
            "Please send the part you need.",
            pages=pages,
            limit=limit,
        )


class DocumentTooLong(DocumentError):
    code = "document_too_long"

    def __init__(self, limit: int) -> None:
        super().__init__(
            f"That document holds more than {limit:,} characters of text, more than I "
            "read. Please send the part you need.",
            limit=f"{limit:,}",
        )


class ExtractionTimedOut(DocumentError):
    code = "document_timeout"
    user_message = (
        "Reading that document took too long, so I stopped. "
        "Please send a smaller file or only the part you need."
    )


class DocumentGone(DocumentError):
    """A button of an offer whose document was replaced by a newer one."""

    code = "document_gone"
    user_message = "That document is no longer here. Please send it again."


class DocumentDoesNotFit(DocumentError):
    """The document stopped fitting between the offer and the press (a model change)."""

    code = "document_does_not_fit"
    user_message = "That document no longer fits this model. Please send it again."


class NotYourDocument(DocumentError):
    code = "not_yours"
    user_message = "This button is not for you."
