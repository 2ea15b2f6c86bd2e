"""Once built, the process keeps its start-up heap out of the collector's scans."""

from __future__ import annotations

import gc
from collections.abc import Iterator

import pytest

from core import heap


@pytest.fixture
def collector() -> Iterator[None]:
    yield
    gc.unfreeze()


def test_settle_freezes_what_start_up_built(collector: None) -> None:
    built = [object() for _ in range(10)]  # noqa: F841 (start-up's long-lived objects)
    threshold = gc.get_threshold()
    heap.settle()
    assert gc.get_freeze_count() > 0
    assert gc.get_threshold() == threshold
    # Cycles made afterwards are still collected.
    cycle: list[object] = []
    cycle.append(cycle)
    del cycle
    assert gc.collect() >= 1
