"""Compactor: keep the journal to what the open state needs while the monitor runs.

Every ``GOVCLOCK_COMPACT_INTERVAL_S`` (an hour; 0: only at start, monitor/run.py), once the
worker has caught up and the journal has grown by a fifth (and 1 MiB) since the last
compaction, the journal is compacted in a child process (worker/compaction.py: the pure core
decides what is still hot, what settled is archived, the rest of the lines dropped), so that
a restart after months replays what is open, not the months. Appends go on meanwhile.
"""

from __future__ import annotations

import asyncio
import time
from typing import TYPE_CHECKING

from worker.compaction import compact_in_child

if TYPE_CHECKING:
    from worker.context import Context

#: Growth since the last compaction that makes another worth it.
GROWTH = 1.2
MIN_GROWTH_BYTES = 1 << 20


def register(ctx: Context) -> None:
    interval = ctx.settings.compact_interval_s
    if interval <= 0:
        return
    journal = ctx.journal
    state = {"after": journal.end(), "running": False}

    @ctx.app.timer(interval=interval, name="journal-compactor")  # type: ignore[untyped-decorator]
    async def compactor() -> None:
        size = journal.end()
        worth = size > state["after"] * GROWTH and size - state["after"] > MIN_GROWTH_BYTES
        if state["running"] or not worth or not ctx.caught_up():
            return
        state["running"] = True
        try:
            loop = asyncio.get_running_loop()
            done = await loop.run_in_executor(
                None, compact_in_child, journal, ctx.settings, int(time.time())
            )
        except Exception as exc:  # the journal stays as it was; the next interval retries
            ctx.app.log.warning(f"govclock: journal compaction failed: {exc!r}")
            return
        finally:
            state["running"] = False
        state["after"] = journal.end()
        ctx.count("journal_lines_dropped", done.dropped)
        ctx.app.log.info(
            f"govclock: journal compacted in {done.seconds:.1f} s: {done.kept} lines kept, "
            f"{done.dropped} dropped, {done.archived} settled obligations archived"
        )
