"""Ingest agent: validate each incoming event and deliver it once per subject it names.

Reads ``govclock-events`` (any key) in batches and writes, per batch and partition, one
``{"batch": [[subject key, record], …]}`` message to that partition of
``govclock-subject-events`` (the partition Kafka's partitioner gives the subject key), so
Faust's per-message cost is paid once per batch. A record that is not a valid event goes
to the dead-letter topic with the reason and the agent carries on. The first time a unit
is seen, a unit record goes to ``unit=<unit>`` so the worker that owns that key opens the
unit's yearly duties.
"""

from __future__ import annotations

import json
from typing import TYPE_CHECKING, Any

from streams.runtime import RecordError, accept, encode_record, partition_of

if TYPE_CHECKING:
    from streams.app import Context


def dead_letter(raw: bytes, reason: str, message: Any) -> bytes:
    return json.dumps(
        {
            "reason": reason,
            "topic": message.topic,
            "partition": message.partition,
            "offset": message.offset,
            "record": raw.decode("utf-8", errors="replace")[:10_000],
        },
        ensure_ascii=False,
    ).encode()


def register(ctx: Context) -> None:
    unit_kinds = ctx.book.all_ref_kinds()
    partitions = ctx.settings.partitions

    def deliver(groups: dict[int, list[Any]], key: str, record: dict[str, Any]) -> None:
        groups.setdefault(partition_of(key, partitions), []).append((key, record))

    units_seen: set[str] = set()

    @ctx.app.agent(ctx.events, name="ingest")
    async def ingest(stream: Any) -> None:
        async for batch in stream.take_events(2000, within=0.05):
            groups: dict[int, list[tuple[str, dict[str, Any]]]] = {}
            for event in batch:
                raw: bytes = event.value
                try:
                    routed = accept(raw, unit_kinds)
                except RecordError as exc:
                    ctx.count("rejected")
                    ctx.metrics.events_rejected.labels("invalid_event").inc()
                    await ctx.dead_letters.send(value=dead_letter(raw, str(exc), event.message))
                    continue
                ctx.count("ingested")
                ctx.metrics.events_ingested.labels(routed.event.type).inc()
                unit = routed.event.unit
                if unit not in units_seen:
                    units_seen.add(unit)
                    deliver(groups, f"unit={unit}", {"unit": unit})
                for key in routed.keys:
                    deliver(groups, key, {"event": routed.data})
            for partition, items in groups.items():
                # One message per partition: the records keep their order within it.
                ctx.subject_events.send_soon(
                    value=encode_record("batch", items), partition=partition
                )
                ctx.count("routed", len(items))
