"""Reading documents: what each kind gives, and the bounds (size, pages, characters,
time). The end-to-end paths are in tests/telegram/test_documents_e2e.py and
tests/discord/test_documents.py."""

from __future__ import annotations

import io
import time
import zipfile

import pytest

from core.config import DocumentSettings
from core.documents.errors import (
    BinaryDocument,
    DocumentTooBig,
    DocumentTooLong,
    ExtractionTimedOut,
    TooManyPages,
    UnreadableDocument,
)
from core.documents.extract import DOCX_MIME, PDF_MIME, Bounds, extract
from core.documents.fit import decide
from core.documents.reader import DocumentReader
from core.llm.catalog import ModelCatalog
from core.llm.context import DocumentText, HistoryMessage, build_context
from core.llm.tokens import default_estimator
from core.tiers import Tier
from tests.support.documents import docx, pdf, report_pdf


def _bounds(**overrides: float) -> Bounds:
    values = {"max_pages": 100, "max_chars": 1_000_000, "deadline": time.monotonic() + 60}
    values.update(overrides)
    return Bounds(int(values["max_pages"]), int(values["max_chars"]), values["deadline"])


def test_each_kind_is_told_by_its_content_not_its_name() -> None:
    read = extract(pdf(["Alpha", "Beta"]), "text/plain", _bounds())
    assert (read.mime_type, read.pages, read.text) == (PDF_MIME, 2, "Alpha\n\nBeta")
    read = extract(docx(["One", "Two"]), "application/pdf", _bounds())
    assert (read.mime_type, read.pages, read.text) == (DOCX_MIME, None, "One\nTwo")
    read = extract("a;b\r\nç;é\r\n".encode(), "text/csv", _bounds())
    assert (read.mime_type, read.text) == ("text/csv", "a;b\nç;é")
    read = extract("# Заголовок".encode("utf-16"), None, _bounds())
    assert (read.mime_type, read.text) == ("text/plain", "# Заголовок")


def test_what_is_not_text_is_refused() -> None:
    with pytest.raises(BinaryDocument):
        extract(b"GIF89a\x00\x00", "text/plain", _bounds())
    with pytest.raises(BinaryDocument):
        extract(b"\xff\xd8\xff\xe0 jpeg without nul \xfa", "text/plain", _bounds())
    with pytest.raises(BinaryDocument):
        extract(b"\x1b[31mterminal escapes\x07", "text/plain", _bounds())
    archive = io.BytesIO()
    with zipfile.ZipFile(archive, "w") as z:
        z.writestr("readme.txt", "not a document")
    with pytest.raises(BinaryDocument):
        extract(archive.getvalue(), None, _bounds())
    with pytest.raises(UnreadableDocument):
        extract(b"%PDF-1.7\nbroken", None, _bounds())
    with pytest.raises(UnreadableDocument):
        extract(b"   \n\n ", None, _bounds())


def test_bounds_on_pages_characters_and_time() -> None:
    with pytest.raises(TooManyPages) as pages:
        extract(report_pdf(12), None, _bounds(max_pages=10))
    assert pages.value.details == {"pages": 12, "limit": 10}
    with pytest.raises(DocumentTooLong):
        extract(report_pdf(3), None, _bounds(max_chars=5_000))
    with pytest.raises(DocumentTooLong):
        extract(b"x" * 5_001, None, _bounds(max_chars=5_000))
    with pytest.raises(ExtractionTimedOut):
        extract(report_pdf(3), None, _bounds(deadline=time.monotonic() - 1))


async def test_the_reader_refuses_a_file_over_the_size_limit_before_reading() -> None:
    reader = DocumentReader(DocumentSettings(max_bytes=1024))
    reader.check_size(1024)
    with pytest.raises(DocumentTooBig):
        reader.check_size(1025)
    with pytest.raises(DocumentTooBig):
        await reader.read(b"a" * 2048, "text/plain")
    assert (await reader.read(b"hello", "text/plain")).text == "hello"


def test_a_document_that_does_not_fit_is_measured_and_its_first_part_fits() -> None:
    catalog = ModelCatalog.load("openai/gpt-4o-mini")
    estimator = default_estimator()
    read = extract(report_pdf(300), None, _bounds(max_pages=1000, max_chars=5_000_000))
    document = DocumentText("annual.pdf", read.text, read.pages)
    fit = decide("Sum it up", document, catalog.default, None, catalog, Tier.FREE, estimator)
    assert not fit.fits and 0 < fit.chars < fit.total_chars
    assert fit.pages_fit is not None and 0 < fit.pages_fit < 300
    assert fit.bigger is not None and fit.bigger.context_length > catalog.default.context_length
    # The first part is exactly what the context builder then accepts.
    part = DocumentText("annual.pdf", read.text, read.pages, fit.chars)
    built = build_context(
        [HistoryMessage("user", "Sum it up", document=part)],
        model=catalog.default,
        system_prompt=None,
        estimator=estimator,
    )
    sent = built.messages[-1]["content"]
    assert 'part="only the first ' in sent and sent.endswith("Sum it up")
    # A plan with no larger model gets no model offer.
    small = DocumentText("x.pdf", read.text * 10, None)
    fit = decide("q", small, catalog.default, None, catalog, Tier.FREE, estimator)
    assert fit.bigger is None or fit.bigger.available_to(Tier.FREE)


async def test_a_parser_fault_becomes_the_damaged_document_reply(
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    import core.documents.reader as reader_module

    def explode(data: bytes, mime: str | None, bounds: Bounds) -> None:
        raise RecursionError("maximum recursion depth exceeded")

    monkeypatch.setattr(reader_module, "extract", explode)
    with pytest.raises(UnreadableDocument):
        await DocumentReader(DocumentSettings()).read(b"%PDF-1.7", None)
