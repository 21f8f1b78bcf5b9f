"""A serving process's long-lived heap, set aside from the garbage collector.

Once the cloud has started, a process holds some 10^5 objects that live as long as it does:
modules, the app's routes and templates, SQLAlchemy's mappers and compiled statements. Every
full (generation 2) collection walked all of them again: at 10 000 shops that was a pause of
200–280 ms every few seconds, which every request in flight waited out, and it was the API's
p99 (`bench/api_load_bench.py`, 8 clients: p99 354 ms against a p50 of 62 ms). `settle()`
collects once and freezes what is left (`gc.freeze`), so later collections walk only what
requests make; `thaw()` gives them back when the cloud stops (tests start many clouds in one
process). Frozen objects are still freed when their last reference goes; only a cycle among
them would outlive the process's serving life.
"""

from __future__ import annotations

import gc


def settle() -> int:
    """Collect, then freeze every object left; returns how many are frozen."""
    gc.collect()
    gc.freeze()
    return gc.get_freeze_count()


def thaw() -> None:
    """Give the frozen objects back to the collector."""
    gc.unfreeze()
