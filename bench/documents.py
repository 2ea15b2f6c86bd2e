"""Benchmark: reading a 300-page PDF, as the bot does when someone sends one.

Made here with pypdf (40 lines of text a page, about 3,000 characters), then read
by `core.documents` in its worker thread, as `DocumentReader` runs it. Printed: the
file's size, the wall time of the extraction, its peak Python allocation
(tracemalloc, a separate run: tracing slows it down) and the growth of the process's
peak RSS, and the time to decide how much of it fits the default model's window.

    python -m bench.documents [--pages 300] [--runs 3]

Not a test: figures vary with the machine.
"""

from __future__ import annotations

import argparse
import asyncio
import resource
import statistics
import time
import tracemalloc

from core.config import DocumentSettings
from core.documents.extract import Bounds, extract
from core.documents.fit import decide
from core.documents.reader import DocumentReader
from core.llm.catalog import ModelCatalog
from core.llm.context import DocumentText
from core.llm.tokens import default_estimator
from core.tiers import Tier
from tests.support.documents import report_pdf

MB = 1024 * 1024


def _peak_rss_mb() -> float:
    # ru_maxrss is in kilobytes on Linux.
    return resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024


async def _read(data: bytes) -> float:
    reader = DocumentReader(DocumentSettings())
    began = time.perf_counter()
    await reader.read(data, "application/pdf")
    return time.perf_counter() - began


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--pages", type=int, default=300)
    parser.add_argument("--runs", type=int, default=3)
    args = parser.parse_args()

    data = report_pdf(args.pages)
    print(f"PDF: {args.pages} pages, {len(data) / MB:.2f} MB")

    rss_before = _peak_rss_mb()
    times = [asyncio.run(_read(data)) for _ in range(args.runs)]
    rss_growth = _peak_rss_mb() - rss_before
    print(
        f"extraction (worker thread): median {statistics.median(times):.2f} s, "
        f"best {min(times):.2f} s over {args.runs} runs"
    )

    tracemalloc.start()
    bounds = Bounds(10_000, 50_000_000, time.monotonic() + 600)
    extracted = extract(data, "application/pdf", bounds)
    _, peak = tracemalloc.get_traced_memory()
    tracemalloc.stop()
    print(f"text: {len(extracted.text):,} characters")
    print(f"peak Python allocation (tracemalloc): {peak / MB:.1f} MB")
    print(f"peak RSS growth of the process: {rss_growth:.1f} MB")

    catalog = ModelCatalog.load("openai/gpt-4o-mini")
    estimator = default_estimator()
    document = DocumentText("report.pdf", extracted.text, extracted.pages)
    began = time.perf_counter()
    fit = decide(
        "Summarize this document.",
        document,
        catalog.default,
        None,
        catalog,
        Tier.FREE,
        estimator,
    )
    spent = time.perf_counter() - began
    bigger = fit.bigger.name if fit.bigger else "none"
    print(
        f"fit on {catalog.default.name}: about {fit.pages_fit} of {fit.pages} pages "
        f"({fit.percent}%), whole on {bigger}; decided in {spent * 1000:.0f} ms"
    )


if __name__ == "__main__":
    main()
