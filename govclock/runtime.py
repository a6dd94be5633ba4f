"""Process settings for long-running or bulk work (the core itself sets nothing global)."""

from __future__ import annotations

import gc

#: Young-generation threshold. The ledger keeps millions of long-lived small objects; with
#: CPython's default (700) the collector runs every few events and dominates the cost.
GC_THRESHOLDS = (50_000, 20, 100)


def tune_gc() -> dict[str, object]:
    """Freeze what is loaded so far out of the collector and collect less often.

    Returns the settings, so benchmarks can report what they ran with."""
    gc.collect()
    gc.freeze()
    gc.set_threshold(*GC_THRESHOLDS)
    return {"gc_thresholds": list(GC_THRESHOLDS), "gc_frozen_objects": gc.get_freeze_count()}
