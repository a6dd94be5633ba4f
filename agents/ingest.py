"""Ingest: validate each incoming event and deliver it once per subject it names.

``govclock-events`` holds one event per record, as producers send them. Faust's per-record
stream path costs ~100 µs whatever the agent does (measured: 7.7k records/s for an agent
that only counts, with or without ``take_events``), which would cap the whole pipeline at
~4% of what the broker delivers. So this stage reads the topic in bulk with aiokafka's
``getmany`` — a service started and stopped with the Faust app, in its own consumer group
``govclock-ingest`` (members split the topic's partitions) — and everything after it is
Faust agents on batch records.

For each fetched batch: every record is validated (:func:`streams.runtime.accept`); a bad
one goes to the dead-letter topic with the reason; the good ones are grouped by the
partition of each subject they name and written as one ``{"batch": [[key, record], …]}``
message per partition of ``govclock-subject-events`` (the event's bytes are spliced in, not
re-encoded). The first time a unit is seen, a unit record goes to ``unit=<unit>`` so the
worker owning that key opens the unit's yearly duties. Offsets are committed only after
the broker has acknowledged every message written for the batch: at least once, and the
ledger drops an event id it has already seen.
"""

from __future__ import annotations

import asyncio
import json
from collections import Counter, deque
from dataclasses import dataclass, field
from typing import TYPE_CHECKING, Any

import orjson
from mode import Service

from streams.runtime import RecordError, accept, partition_of
from streams.topics import APP_ID, EVENTS

if TYPE_CHECKING:
    from streams.app import Context

#: The ingest consumer group (Faust's agents use the group named after the app id).
INGEST_GROUP = f"{APP_ID}-ingest"
#: Records fetched per batch at most.
MAX_BATCH = 5000
#: Fetched batches sent but not yet acknowledged, at most.
MAX_IN_FLIGHT = 4
#: Routed records per subject-events message stop growing at about this size (Kafka's
#: default request limit is 1 MiB; one event is at most the HTTP body limit).
MESSAGE_BYTES = 512 * 1024


def dead_letter(raw: bytes, reason: str, topic: str, partition: int, offset: int) -> bytes:
    return json.dumps(
        {
            "reason": reason,
            "topic": topic,
            "partition": partition,
            "offset": offset,
            "record": raw.decode("utf-8", errors="replace")[:10_000],
        },
        ensure_ascii=False,
    ).encode()


@dataclass
class RoutedBatch:
    """One fetched batch, validated and grouped by subject-events partition."""

    items: dict[int, list[bytes]] = field(default_factory=dict)  # encoded [key, record]
    rejected: list[tuple[bytes, str, Any]] = field(default_factory=list)  # raw, why, origin
    types: Counter[str] = field(default_factory=Counter)

    def messages(self, limit: int = MESSAGE_BYTES) -> list[tuple[int, bytes]]:
        """``{"batch": […]}`` messages, one per partition unless that would exceed about
        ``limit`` bytes; records in arrival order within each partition."""
        out: list[tuple[int, bytes]] = []
        for partition, items in self.items.items():
            chunk: list[bytes] = []
            size = 0
            for item in items:
                if chunk and size + len(item) > limit:
                    out.append((partition, b'{"batch":[' + b",".join(chunk) + b"]}"))
                    chunk, size = [], 0
                chunk.append(item)
                size += len(item) + 1
            out.append((partition, b'{"batch":[' + b",".join(chunk) + b"]}"))
        return out

    @property
    def routed(self) -> int:
        return sum(map(len, self.items.values()))


class Router:
    """Validation and routing, without a broker (remembers the units it has seen)."""

    def __init__(self, unit_kinds: frozenset[str], partitions: int) -> None:
        self.unit_kinds = unit_kinds
        self.partitions = partitions
        self.units_seen: set[str] = set()

    def route(self, records: list[tuple[bytes, Any]]) -> RoutedBatch:
        out = RoutedBatch()
        n = self.partitions
        for raw, origin in records:
            try:
                routed = accept(raw, self.unit_kinds)
            except RecordError as exc:
                out.rejected.append((raw, str(exc), origin))
                continue
            out.types[routed.event.type] += 1
            unit = routed.event.unit
            if unit not in self.units_seen:
                self.units_seen.add(unit)
                key = f"unit={unit}"
                item = json.dumps([key, {"unit": unit}], ensure_ascii=False).encode()
                out.items.setdefault(partition_of(key, n), []).append(item)
            for key in routed.keys:
                # The event as received: it parsed as JSON, so it can be spliced in as is.
                item = b"[" + orjson.dumps(key) + b',{"event":'
                out.items.setdefault(partition_of(key, n), []).append(item + raw + b"}]")
        return out


class IngestService(Service):
    """Reads ``govclock-events`` in bulk and writes routed batches (see the module doc)."""

    def __init__(self, ctx: Context, **kwargs: Any) -> None:
        super().__init__(**kwargs)
        self.ctx = ctx
        self.router = Router(ctx.book.all_ref_kinds(), ctx.settings.partitions)
        self.consumer: Any = None
        self.backlog: dict[Any, int] = {}  # partition -> end offset at start, until reached

    def _bootstrap(self) -> str:
        return ",".join(f"{url.host}:{url.port}" for url in self.ctx.app.conf.broker)

    async def on_start(self) -> None:
        from aiokafka import AIOKafkaConsumer

        conf = self.ctx.app.conf
        self.consumer = AIOKafkaConsumer(
            EVENTS,
            bootstrap_servers=self._bootstrap(),
            group_id=INGEST_GROUP,
            enable_auto_commit=False,
            auto_offset_reset="earliest",
            session_timeout_ms=int(conf.broker_session_timeout * 1000),
            # Tansu answers a JoinGroup after half the rebalance timeout (60 s by default).
            rebalance_timeout_ms=int(conf.broker_session_timeout * 1000),
            heartbeat_interval_ms=int(conf.broker_heartbeat_interval * 1000),
            max_poll_records=MAX_BATCH,
        )
        await self.consumer.start()  # returns once the group has given it partitions
        assigned = list(self.consumer.assignment())
        ends = await self.consumer.end_offsets(assigned) if assigned else {}
        starts = {tp: await self.consumer.position(tp) for tp in assigned}
        # What the topic held at start-up, still to be routed before the sweeper may tick.
        self.backlog = {tp: end for tp, end in ends.items() if end > starts[tp]}
        self.ctx.ingest_caught_up = not self.backlog

    async def on_stop(self) -> None:
        if self.consumer is not None:
            await self.consumer.stop()

    @Service.task
    async def _consume(self) -> None:
        """Fetch, route and send without waiting for the broker between batches; commit
        each batch's offsets, in order, once everything it sent is acknowledged."""
        in_flight: deque[tuple[asyncio.Future[Any], dict[Any, int]]] = deque()
        while not self.should_stop:
            fetched = await self.consumer.getmany(timeout_ms=100, max_records=MAX_BATCH)
            if fetched:
                records = [(m.value, m) for ms in fetched.values() for m in ms]
                offsets = {tp: ms[-1].offset + 1 for tp, ms in fetched.items() if ms}
                in_flight.append((await self.process(records), offsets))
            while in_flight and (in_flight[0][0].done() or len(in_flight) > MAX_IN_FLIGHT):
                acked, offsets = in_flight.popleft()
                await acked
                await self._commit(offsets)
                self._note_progress(offsets)

    def _note_progress(self, offsets: dict[Any, int]) -> None:
        if not self.backlog:
            return
        for tp, offset in offsets.items():
            if offset >= self.backlog.get(tp, offset + 1):
                del self.backlog[tp]
        if not self.backlog:
            self.ctx.ingest_caught_up = True

    async def _commit(self, offsets: dict[Any, int]) -> None:
        from aiokafka.errors import CommitFailedError, IllegalStateError

        try:
            await self.consumer.commit(offsets)
        except (CommitFailedError, IllegalStateError):  # rebalanced: the new owner re-reads
            self.ctx.app.log.warning("govclock ingest: offsets not committed (rebalance)")

    async def process(self, records: list[tuple[bytes, Any]]) -> asyncio.Future[Any]:
        """Route ``records`` (raw value, origin message) and send the results; returns a
        future that completes when the broker has acknowledged all of them."""
        ctx = self.ctx
        batch = self.router.route(records)
        pending = []
        for raw, reason, msg in batch.rejected:
            ctx.metrics.events_rejected.labels("invalid_event").inc()
            value = dead_letter(raw, reason, msg.topic, msg.partition, msg.offset)
            pending.append(await ctx.dead_letters.send(value=value))
        for partition, message in batch.messages():
            pending.append(await ctx.subject_events.send(value=message, partition=partition))
        for kind, count in batch.types.items():
            ctx.metrics.events_ingested.labels(kind).inc(count)
        ctx.count("rejected", len(batch.rejected))
        ctx.count("ingested", sum(batch.types.values()))
        ctx.count("routed", batch.routed)
        acked: asyncio.Future[Any] = asyncio.ensure_future(asyncio.gather(*pending))
        return acked


def register(ctx: Context) -> IngestService:
    service = IngestService(ctx)
    ctx.app.service(service)  # type: ignore[arg-type]  # started with the app (after its producer), stopped with it
    return service
