"""The cyclic garbage collector, set for a long-running server once start-up is done.

Start-up leaves a large heap that lives as long as the process: modules, the Bot API
models, the catalog, the services. Left in the collector's oldest generation, each
full collection walks all of it (tens of milliseconds here, several times a minute
under load) although none of it is ever garbage. `settle` moves it out of the
collector's sight (`gc.freeze`) and lets the youngest generation grow larger before a
collection: an answer's many short-lived objects are freed by reference counting
anyway, and the collector runs for the few cycles among them less often.
"""

from __future__ import annotations

import gc

YOUNG_THRESHOLD = 50_000  # allocations between collections of the youngest generation


def settle() -> None:
    """Call once the process is built and before it takes work."""
    gc.collect()
    gc.freeze()
    _, middle, old = gc.get_threshold()
    gc.set_threshold(YOUNG_THRESHOLD, middle, old)
