"""Documents made in the tests (no binary fixtures): PDFs with a text layer, scanned
(no text) and encrypted ones with pypdf, DOCX with python-docx."""

from __future__ import annotations

import io
from collections.abc import Sequence

from pypdf import PdfWriter
from pypdf.generic import (
    DecodedStreamObject,
    DictionaryObject,
    NameObject,
)

# About as much text as a page of a typical report.
PAGE_LINES = 40
LINE = "The quarterly figures show steady growth across all regions and products. "


def _escape(text: str) -> str:
    return text.replace("\\", "\\\\").replace("(", "\\(").replace(")", "\\)")


def pdf(pages: Sequence[str | Sequence[str]], *, password: str | None = None) -> bytes:
    """A PDF whose page i shows `pages[i]` (a string, or its lines) in Helvetica.
    An empty page has no text layer at all, like a scanned one."""
    writer = PdfWriter()
    font = writer._add_object(
        DictionaryObject(
            {
                NameObject("/Type"): NameObject("/Font"),
                NameObject("/Subtype"): NameObject("/Type1"),
                NameObject("/BaseFont"): NameObject("/Helvetica"),
            }
        )
    )
    for content in pages:
        page = writer.add_blank_page(612, 792)
        lines = [content] if isinstance(content, str) else list(content)
        lines = [line for line in lines if line]
        if not lines:
            continue
        ops = ["BT", "/F1 9 Tf", "11 TL", "36 760 Td"]
        for line in lines:
            ops.append(f"({_escape(line)}) Tj T*")
        ops.append("ET")
        stream = DecodedStreamObject()
        stream.set_data("\n".join(ops).encode("latin-1"))
        page[NameObject("/Contents")] = writer._add_object(stream)
        page[NameObject("/Resources")] = DictionaryObject(
            {NameObject("/Font"): DictionaryObject({NameObject("/F1"): font})}
        )
    if password is not None:
        writer.encrypt(password)
    out = io.BytesIO()
    writer.write(out)
    return out.getvalue()


def report_pdf(page_count: int, *, marker: str = "") -> bytes:
    """`page_count` full pages of text; page i starts with "Page i", the first
    with `marker` too."""
    pages = []
    for number in range(1, page_count + 1):
        head = f"Page {number}. {marker if number == 1 else ''}".strip()
        pages.append([head, *([LINE] * PAGE_LINES)])
    return pdf(pages)


def scanned_pdf(page_count: int = 3) -> bytes:
    return pdf([""] * page_count)


def docx(paragraphs: Sequence[str]) -> bytes:
    import docx as python_docx

    document = python_docx.Document()
    for paragraph in paragraphs:
        document.add_paragraph(paragraph)
    out = io.BytesIO()
    document.save(out)
    return out.getvalue()
