"""Sweeper: on every worker, tick each partition it owns when something there falls due.

A tick is a record ``{"tick": now}`` sent to that partition of the subject-events topic, so
it is applied in order with the partition's events by the ledger agent (and a replay of the
log repeats it). One tick goes to every owned partition at start (deadlines that passed
while the monitor was down fire then, marked by their ``detected_at``), then one whenever
``next_due`` comes, checked every ``SWEEP_INTERVAL`` seconds.
"""

from __future__ import annotations

import time
from typing import TYPE_CHECKING

from worker.ledgers import encode_record

if TYPE_CHECKING:
    from worker.context import Context

SWEEP_INTERVAL = 0.2


def register(ctx: Context) -> None:
    in_flight: dict[int, int] = {}  # partition -> tick sent and not yet applied

    @ctx.app.timer(SWEEP_INTERVAL, name="sweeper")  # type: ignore[untyped-decorator]
    async def sweep() -> None:
        if not ctx.caught_up():
            return
        now = int(time.time())
        ctx.stats["sweeper_heartbeat"] = now
        ctx.metrics.sweeper_heartbeat.set(now)
        for p in ctx.assigned():
            led = ctx.worker.ledgers.get(p)
            clock = led.clock if led is not None else None
            if p in in_flight and (clock is None or clock < in_flight[p]):
                continue  # the last tick has not been applied yet
            if not ctx.partition_caught_up(p):
                continue  # records from before the (re)assignment are still to be applied
            due = ctx.worker.next_due(p)
            if clock is not None and (due is None or due > now):
                continue
            in_flight[p] = now
            await ctx.subject_events.send(value=encode_record("tick", now), partition=p)
