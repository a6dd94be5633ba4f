"""Ledger agent: apply subject records to the partition's ledger, persist, emit effects.

Reads ``govclock-subject-events`` (batch records from ingest, ticks from the sweeper); each
partition's records are applied in order to that partition's ledger (events, unit notes and
ticks alike); the subjects that changed are written to the ``subjects`` table in that
partition, as one multi-row changelog record per batch (:mod:`streams.table`),
and every effect goes to ``govclock-notifications`` in the same partition, keyed by the
obligation id. A bad record goes to the dead-letter topic; the agent carries on.
"""

from __future__ import annotations

import gc
import json
from collections import Counter
from typing import TYPE_CHECKING, Any

from faust.types import TP

from agents.ingest import dead_letter
from streams.topics import NOTIFICATIONS, SUBJECT_EVENTS
from worker.archiving import archive_settled
from worker.context import in_partition
from worker.ledgers import RecordError, effect_record

if TYPE_CHECKING:
    from worker.context import Context


FULFILLED = frozenset({"met", "late"})


def register(ctx: Context) -> None:
    worker = ctx.worker

    @ctx.app.agent(ctx.subject_events, name="ledger")
    async def ledger(stream: Any) -> None:
        async for batch in stream.take_events(2000, within=0.02):
            by_partition: dict[int, list[Any]] = {}
            for event in batch:
                by_partition.setdefault(event.message.partition, []).append(event)
            for partition, events in by_partition.items():
                effects = []
                for event in events:
                    key = event.key.decode() if event.key else None
                    try:
                        effects += worker.handle(partition, key, event.value)
                    except RecordError as exc:
                        ctx.count("dead_letters")
                        msg = event.message
                        await ctx.dead_letters.send(
                            value=dead_letter(
                                event.value, str(exc), msg.topic, msg.partition, msg.offset
                            )
                        )
                ctx.stats["applied"] = worker.applied
                ctx.applied_offsets[partition] = events[-1].message.offset + 1
                rows = [(key.encode(), row) for key, row in worker.changed(partition)]
                await archive_settled(ctx, worker.take_settled(partition))  # before the rows
                forgotten = sum(1 for _, row in rows if row is None)
                if forgotten:
                    ctx.metrics.forgotten_subjects.inc(forgotten)
                if rows:
                    with in_partition(events[-1]):
                        ctx.table.write_rows(partition, rows)
                if effects:
                    await emit(partition, effects)

    async def emit(partition: int, effects: list[Any]) -> None:
        """Count ``effects`` and send those not emitted before to the notifications topic
        (one record each, keyed by obligation id), as a few produce batches; their keys
        are recorded as emitted once the broker has acknowledged them."""
        windows = {}  # obligation id -> (start, due), for the time-to-fulfil ratio
        if any(fx.kind in FULFILLED for fx in effects):
            windows = {
                ob.id: (ob.start, ob.due_at)
                for subject in worker.changed_subjects
                for ob in subject.obligations or ()
            }
        late_known, worker.late_known = worker.late_known, set()
        for kind, n in Counter(fx.kind for fx in effects).items():
            ctx.count(f"effects_{kind}", n)
        keys = [fx.key for fx in effects]
        seen = ctx.emitted.known(keys) if ctx.emitted is not None else set()
        if seen:
            ctx.count("effects_already_emitted", len(seen))
            kept = [(fx, key) for fx, key in zip(effects, keys, strict=True) if key not in seen]
            effects, keys = [fx for fx, _ in kept], [key for _, key in kept]
        ctx.metrics.observe_effects(effects, windows, late_known)
        records = [(fx.obligation_id.encode(), effect_record(fx)) for fx in effects]
        start = 0
        for future, count in await ctx.publish(NOTIFICATIONS, partition, records):
            future.add_done_callback(remember(keys[start : start + count]))
            start += count

    def remember(keys: list[str]) -> Any:
        """Record effects as emitted once the broker has acknowledged them."""

        def on_sent(fut: Any) -> None:
            if ctx.emitted is not None and not fut.cancelled() and fut.exception() is None:
                ctx.emitted.add_many(keys)

        return on_sent

    @ctx.app.on_rebalance_complete.connect
    async def restore(app: Any, /, *args: Any, signal: Any, **kwargs: Any) -> None:
        """After table recovery: rebuild the ledgers of the partitions we now own."""
        owned = set(ctx.assigned())
        for p in list(worker.ledgers):
            if p not in owned:
                worker.release(p)
        rows: dict[int, list[tuple[str, bytes]]] = {p: [] for p in owned}
        from worker.ledgers import partition_of

        for k, v in ctx.table.items():
            key = k.decode() if isinstance(k, bytes) else str(k)
            p = partition_of(key, worker.partitions)
            if p in rows and v is not None:
                rows[p].append((key, v))
        restored = {p: worker.restore(p, items) for p, items in rows.items()}
        # The restored ledgers are long-lived: out of the collector's sight, so that a full
        # collection never walks a million obligations on the event loop (a query or the
        # sweeper would wait behind it).
        gc.freeze()
        ctx.metrics.prepare_obligation_series(
            {(ob.rule.id, ob.unit) for p in owned for ob in worker.ledger(p).obligations()}
        )
        tps = [TP(SUBJECT_EVENTS, p) for p in sorted(owned)]
        consumer = ctx.app.consumer
        ends = await consumer.highwaters(*tps) if tps else {}
        for tp in tps:
            position = await consumer.position(tp)
            ctx.applied_offsets[tp.partition] = max(
                position or 0, ctx.applied_offsets.get(tp.partition, 0)
            )
            ctx.catchup_targets[tp.partition] = ends.get(tp, 0)
        ctx.ready = True
        ctx.metrics.ready.set(1)
        ctx.app.log.info(f"govclock: restored {json.dumps(restored)} subjects by partition")

    @ctx.app.on_partitions_revoked.connect
    async def revoked(app: Any, /, *args: Any, signal: Any, **kwargs: Any) -> None:
        ctx.ready = False
        ctx.metrics.ready.set(0)
