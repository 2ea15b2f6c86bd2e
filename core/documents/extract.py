"""Text out of a document's bytes: PDF (pypdf), DOCX (python-docx), and text files
(plain, Markdown, source code, CSV) by decoding. The kind is decided by the
content, never by the file's name. Pure and blocking: `reader.py` runs it in a
thread, within the bounds given here."""

from __future__ import annotations

import io
import time
import zipfile
from dataclasses import dataclass

from core.documents.errors import (
    BinaryDocument,
    DocumentTooLong,
    EncryptedDocument,
    ExtractionTimedOut,
    ScannedPdf,
    TooManyPages,
    UnreadableDocument,
)

PDF_MIME = "application/pdf"
DOCX_MIME = "application/vnd.openxmlformats-officedocument.wordprocessingml.document"
TEXT_MIME = "text/plain"
# Office files saved with a password are OLE containers holding this stream.
_OLE_MAGIC = b"\xd0\xcf\x11\xe0\xa1\xb1\x1a\xe1"
# A DOCX is a zip: what it may unpack to at most (a zip bomb stops here).
_DOCX_MAX_UNPACKED = 200 * 1024 * 1024
# Control characters a text file may hold (tab, newlines, form feed).
_TEXT_CONTROLS = frozenset("\t\n\r\f\v")
# Pages are separated so the model (and "the first part") sees where one ends.
PAGE_BREAK = "\n\n"


@dataclass(frozen=True)
class Bounds:
    max_pages: int
    max_chars: int
    deadline: float  # time.monotonic() after which extraction gives up


@dataclass(frozen=True)
class Extracted:
    text: str
    mime_type: str
    pages: int | None  # PDFs only: DOCX and text files have no fixed pages


def extract(data: bytes, declared_mime: str | None, bounds: Bounds) -> Extracted:
    head = data[:1024]
    if b"%PDF-" in head:
        return _pdf(data, bounds)
    if data.startswith(b"PK\x03\x04"):
        return _docx(data, bounds)
    if data.startswith(_OLE_MAGIC):
        if b"E\x00n\x00c\x00r\x00y\x00p\x00t\x00e\x00d\x00P\x00a\x00c\x00k" in data:
            raise EncryptedDocument()
        raise BinaryDocument()  # an old .doc / .xls: not a format read here
    return _text(data, declared_mime, bounds)


def _check_time(bounds: Bounds) -> None:
    if time.monotonic() > bounds.deadline:
        raise ExtractionTimedOut()


def _pdf(data: bytes, bounds: Bounds) -> Extracted:
    from pypdf import PasswordType, PdfReader
    from pypdf.errors import DependencyError, FileNotDecryptedError, PdfReadError

    try:
        reader = PdfReader(io.BytesIO(data))
        if reader.is_encrypted:
            # Many PDFs are encrypted with an empty password (only printing or
            # copying is restricted): those open; any other password is refused.
            try:
                if reader.decrypt("") == PasswordType.NOT_DECRYPTED:
                    raise EncryptedDocument()
            except (DependencyError, NotImplementedError):
                raise EncryptedDocument() from None
        count = len(reader.pages)
    except EncryptedDocument:
        raise
    except FileNotDecryptedError:
        raise EncryptedDocument() from None
    except (PdfReadError, ValueError, KeyError, TypeError, OSError):
        raise UnreadableDocument() from None
    if count > bounds.max_pages:
        raise TooManyPages(count, bounds.max_pages)
    parts: list[str] = []
    chars = 0
    for page in reader.pages:
        _check_time(bounds)
        try:
            text = page.extract_text() or ""
        except Exception:
            # One broken page is left out rather than losing the document.
            text = ""
        text = text.strip()
        parts.append(text)
        chars += len(text) + len(PAGE_BREAK)
        if chars > bounds.max_chars:
            raise DocumentTooLong(bounds.max_chars)
    if not any(parts):
        raise ScannedPdf(count)
    return Extracted(PAGE_BREAK.join(parts).strip(), PDF_MIME, count)


def _docx(data: bytes, bounds: Bounds) -> Extracted:
    import docx
    from docx.opc.exceptions import PackageNotFoundError

    try:
        with zipfile.ZipFile(io.BytesIO(data)) as archive:
            names = archive.namelist()
            unpacked = sum(info.file_size for info in archive.infolist())
    except zipfile.BadZipFile:
        raise UnreadableDocument() from None
    if "word/document.xml" not in names:
        raise BinaryDocument()  # another zip: an archive, a spreadsheet
    if unpacked > _DOCX_MAX_UNPACKED:
        raise DocumentTooLong(bounds.max_chars)
    try:
        document = docx.Document(io.BytesIO(data))
    except (PackageNotFoundError, KeyError, ValueError, zipfile.BadZipFile):
        raise UnreadableDocument() from None
    except Exception:  # lxml's own errors on a broken document.xml
        raise UnreadableDocument() from None
    lines: list[str] = []
    chars = 0
    for index, paragraph in enumerate(document.paragraphs):
        if index % 200 == 0:
            _check_time(bounds)
        lines.append(paragraph.text)
        chars += len(paragraph.text) + 1
        if chars > bounds.max_chars:
            raise DocumentTooLong(bounds.max_chars)
    for table in document.tables:
        _check_time(bounds)
        for row in table.rows:
            line = " | ".join(cell.text.strip() for cell in row.cells)
            lines.append(line)
            chars += len(line) + 1
            if chars > bounds.max_chars:
                raise DocumentTooLong(bounds.max_chars)
    text = "\n".join(lines).strip()
    if not text:
        raise UnreadableDocument()
    return Extracted(text, DOCX_MIME, None)


def _text(data: bytes, declared_mime: str | None, bounds: Bounds) -> Extracted:
    text: str | None = None
    if data.startswith((b"\xff\xfe", b"\xfe\xff")):
        try:
            text = data.decode("utf-16")
        except UnicodeDecodeError:
            raise BinaryDocument() from None
    elif b"\x00" in data:
        raise BinaryDocument()  # NUL bytes: an executable, an image, an archive
    else:
        try:
            text = data.decode("utf-8-sig")
        except UnicodeDecodeError:
            raise BinaryDocument() from None
    if any(ch < " " and ch not in _TEXT_CONTROLS for ch in text[:65536]):
        raise BinaryDocument()
    text = text.replace("\r\n", "\n").strip()
    if not text:
        raise UnreadableDocument()
    if len(text) > bounds.max_chars:
        raise DocumentTooLong(bounds.max_chars)
    mime = declared_mime if declared_mime and declared_mime.startswith("text/") else TEXT_MIME
    return Extracted(text, mime, None)
