"""Settled obligations to the archive: exactly once, before their table rows change.

The ledger agent calls :func:`archive_settled` with what a batch settled, before it writes
the batch's rows (the settled obligations gone from their subjects, forgotten subjects'
tombstones). If the process dies between the two, the rows are not written: on restart the
obligations come back from the table, settle again at the next tick and are written again,
which the archive ignores (its key is obligation id + version). A failing archive is retried
until it takes the records, so the ledger waits rather than drop a settled obligation.
"""

from __future__ import annotations

import asyncio
import logging
from collections.abc import Sequence
from typing import TYPE_CHECKING

from archive.records import ArchiveRecord, record_from_view
from deadlines.report import obligation_view
from deadlines.retention import Settled

if TYPE_CHECKING:
    from worker.context import Context

log = logging.getLogger("govclock.archive")

#: Pauses between attempts while the archive refuses writes (then every 30 s).
RETRY_DELAYS_S = (0.5, 1.0, 2.0, 5.0, 10.0, 30.0)


def records_of(settled: Sequence[Settled]) -> list[ArchiveRecord]:
    """The archive rows of settled obligations; the version is the opening instant (an id
    opened again later, by a new trigger for the same subject, is another version)."""
    return [
        record_from_view(
            obligation_view(s.obligation), s.obligation.opened_at, s.closed_at, s.evidence_url
        )
        for s in settled
    ]


async def archive_settled(ctx: Context, settled: Sequence[Settled]) -> None:
    """Write ``settled`` to the archive (in a thread: SQL blocks), retrying until it is done."""
    archive = ctx.archive
    if not settled or archive is None:
        return
    records = records_of(settled)
    loop = asyncio.get_running_loop()
    attempt = 0
    while True:
        try:
            await loop.run_in_executor(None, archive.write, records)
            break
        except Exception as exc:  # the database is down or refuses: wait, never drop
            ctx.metrics.archive_errors.inc()
            delay = RETRY_DELAYS_S[min(attempt, len(RETRY_DELAYS_S) - 1)]
            log.warning(
                "archive: %d settled obligations not written (%s: %s); retrying in %.1f s",
                len(records),
                type(exc).__name__,
                exc,
                delay,
            )
            attempt += 1
            await asyncio.sleep(delay)
    for record in records:
        ctx.metrics.archived.labels(record.status).inc()
    ctx.count("archived", len(records))
