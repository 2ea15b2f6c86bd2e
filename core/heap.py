"""The cyclic garbage collector, set for a long-running server once start-up is done.

Start-up leaves a large heap that lives as long as the process: modules, the Bot API
models, the catalog, the services. Left in the collector's oldest generation, each
full collection walks all of it (tens of milliseconds here, several times a minute
under load) although none of it is ever garbage. `settle` moves it out of the
collector's sight (`gc.freeze`). The thresholds stay Python's: with the heap frozen,
collecting young objects less often saved nothing measurable (bench/telegram.py) and
let cyclic garbage pile up between collections.
"""

from __future__ import annotations

import gc


def settle() -> None:
    """Call once the process is built and before it takes work."""
    gc.collect()
    gc.freeze()
