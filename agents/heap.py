"""Heap: give the C allocator's free memory back to the system after a burst of work.

A worker that applies a large backlog (a million events at start, a replayed journal)
allocates and frees hundreds of megabytes outside Python's small-object allocator (event
bodies, produce batches, row JSON); glibc keeps that memory in its heap unless asked to
return it. Every ``TRIM_INTERVAL_S`` seconds, once at least :data:`TRIM_AFTER_RECORDS`
more records were applied since the last time, ``malloc_trim(0)`` hands the free pages back
(in a thread, so the event loop does not wait; nothing happens where there is no glibc).
"""

from __future__ import annotations

import asyncio
import ctypes
import ctypes.util
from collections.abc import Callable
from typing import TYPE_CHECKING

if TYPE_CHECKING:
    from worker.context import Context

TRIM_INTERVAL_S = 5.0
TRIM_AFTER_RECORDS = 100_000


def malloc_trim() -> Callable[[], None] | None:
    """glibc's ``malloc_trim(0)``, or None where there is none."""
    name = ctypes.util.find_library("c")
    if name is None:
        return None
    libc = ctypes.CDLL(name)
    trim = getattr(libc, "malloc_trim", None)
    if trim is None:
        return None

    def release() -> None:
        trim(0)

    return release


def register(ctx: Context) -> None:
    trim = malloc_trim()
    if trim is None:
        return
    state = {"applied": 0}

    @ctx.app.timer(TRIM_INTERVAL_S, name="heap-trim")  # type: ignore[untyped-decorator]
    async def heap_trim() -> None:
        applied = ctx.worker.applied
        if applied - state["applied"] < TRIM_AFTER_RECORDS or not ctx.caught_up():
            return
        state["applied"] = applied
        # ctypes lets go of the GIL during the call: in a thread, the event loop goes on
        await asyncio.get_running_loop().run_in_executor(None, trim)
        ctx.count("heap_trims")
