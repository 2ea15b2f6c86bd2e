"""Once built, the process keeps its start-up heap out of the collector's scans and
collects its youngest generation less often."""

from __future__ import annotations

import gc
from collections.abc import Iterator

import pytest

from core import heap


@pytest.fixture
def collector() -> Iterator[None]:
    threshold = gc.get_threshold()
    yield
    gc.unfreeze()
    gc.set_threshold(*threshold)


def test_settle_freezes_what_start_up_built_and_raises_the_young_threshold(
    collector: None,
) -> None:
    built = [object() for _ in range(10)]  # noqa: F841 (start-up's long-lived objects)
    _, middle, old = gc.get_threshold()
    heap.settle()
    assert gc.get_freeze_count() > 0
    assert gc.get_threshold() == (heap.YOUNG_THRESHOLD, middle, old)
    # Cycles made afterwards are still collected.
    cycle: list[object] = []
    cycle.append(cycle)
    del cycle
    assert gc.collect() >= 1
