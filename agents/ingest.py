"""Ingest: validate each incoming event and deliver it once per subject it names.

``govclock-events`` holds one event per record, as producers send them. Faust's per-record
stream path costs ~100 µs whatever the agent does (measured: 7.7k records/s for an agent
that only counts, with or without ``take_events``), which would cap the whole pipeline at
~4% of what the broker delivers. So this stage reads the topic in bulk with aiokafka's
``getmany`` — a service started and stopped with the Faust app, in its own consumer group
``govclock-ingest`` (members split the topic's partitions) — and everything after it is
Faust agents on batch records.

For each fetched batch: every record is validated (:func:`worker.ledgers.accept`); a bad
one goes to the dead-letter topic with the reason; the good ones are grouped by the
partition of each subject they name and written as one ``{"batch": [[key, record], …]}``
message per partition of ``govclock-subject-events`` (the event's bytes are spliced in, not
re-encoded). The first time a unit is seen, a unit record goes to ``unit=<unit>`` so the
worker owning that key opens the unit's yearly duties. Offsets are committed only after
the broker has acknowledged every message written for the batch: at least once, and the
ledger drops an event id it has already seen.

Validation and routing are pure CPU work (~15 µs per event), and the ledger agent already
keeps the worker's event loop busy: so the running service routes in a child process (one
per worker, ``spawn``ed, holding the :class:`Router`), while the event loop goes on fetching,
sending and applying. Fetched batches are routed, sent and committed strictly in order.
"""

from __future__ import annotations

import asyncio
import json
import multiprocessing
import os
import signal
import threading
import time
from collections import Counter, deque
from concurrent.futures import ProcessPoolExecutor
from concurrent.futures.process import BrokenProcessPool
from dataclasses import dataclass, field
from typing import TYPE_CHECKING, Any

import orjson
from mode import Service

from streams.bulk import InFlight, bulk_consumer, commit_acknowledged
from streams.publish import BATCH_RECORD_BYTES, batch_records
from streams.topics import APP_ID, EVENTS
from worker.ledgers import RecordError, accept, partition_of

if TYPE_CHECKING:
    from worker.context import Context

#: The ingest consumer group (Faust's agents use the group named after the app id).
INGEST_GROUP = f"{APP_ID}-ingest"
#: Records fetched per batch at most.
MAX_BATCH = 5000
#: Fetched batches sent but not yet acknowledged, at most.
MAX_IN_FLIGHT = 4
#: Fetched batches handed to the routing process but not yet sent, at most.
MAX_ROUTING = 3
#: An event record larger than this is routed in its compact form. No valid event comes
#: near it compact (every field is bounded: ids 200 characters, texts and URLs 2,000).
MAX_SPLICED_BYTES = 64 * 1024


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

    def messages(self, limit: int = BATCH_RECORD_BYTES) -> list[tuple[int, bytes]]:
        """``{"batch": […]}`` messages, one per partition unless that would exceed about
        ``limit`` bytes; records in arrival order within each partition."""
        return [
            (partition, message)
            for partition, items in self.items.items()
            for message in batch_records(items, limit)
        ]

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
            # The event as received: it parsed as JSON, so it can be spliced in as is; unless
            # it is padded past any valid event's size (its fields are bounded), when its
            # compact form goes instead, so a record near the broker's limit stays under it.
            body = raw if len(raw) <= MAX_SPLICED_BYTES else orjson.dumps(orjson.loads(raw))
            for key in routed.keys:
                item = b"[" + orjson.dumps(key) + b',{"event":'
                out.items.setdefault(partition_of(key, n), []).append(item + body + b"}]")
        return out


#: The routing process's router (set by :func:`_start_router`).
_ROUTER: Router | None = None


def _start_router(unit_kinds: frozenset[str], partitions: int) -> None:
    """Initialise the routing process: Ctrl-C is the parent's to handle, and the process
    ends when its parent is gone (a worker killed with SIGKILL leaves no orphan)."""
    global _ROUTER
    signal.signal(signal.SIGINT, signal.SIG_IGN)
    _ROUTER = Router(unit_kinds, partitions)
    parent = os.getppid()

    def exit_with_parent() -> None:
        while os.getppid() == parent:
            time.sleep(0.5)
        os._exit(0)

    threading.Thread(target=exit_with_parent, name="exit-with-parent", daemon=True).start()


def _route_in_child(raws: list[bytes]) -> RoutedBatch:
    """Route ``raws`` in the routing process; a rejected record's origin is its index."""
    assert _ROUTER is not None, "routing process not initialised"
    return _ROUTER.route([(raw, i) for i, raw in enumerate(raws)])


class IngestService(Service):
    """Reads ``govclock-events`` in bulk and writes routed batches (see the module doc)."""

    def __init__(self, ctx: Context, **kwargs: Any) -> None:
        super().__init__(**kwargs)
        self.ctx = ctx
        self.router = Router(ctx.book.all_ref_kinds(), ctx.settings.partitions)
        self.pool: ProcessPoolExecutor | None = None  # the routing process, once started
        self.consumer: Any = None
        self.backlog: dict[Any, int] = {}  # partition -> end offset at start, until reached

    def _start_pool(self) -> ProcessPoolExecutor:
        return ProcessPoolExecutor(
            max_workers=1,
            mp_context=multiprocessing.get_context("spawn"),  # the worker has threads
            initializer=_start_router,
            initargs=(self.router.unit_kinds, self.router.partitions),
        )

    async def on_start(self) -> None:
        self.pool = self._start_pool()
        # Start the routing process now (its imports take ~0.5 s), not on the first event.
        asyncio.get_running_loop().run_in_executor(self.pool, _route_in_child, [])
        self.consumer = bulk_consumer(self.ctx.app, EVENTS, INGEST_GROUP, MAX_BATCH)
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
        if self.pool is not None:
            self.pool.shutdown(wait=False, cancel_futures=True)

    @Service.task
    async def _consume(self) -> None:
        """Fetch, and hand each batch to the routing process without waiting for it; the
        batches are then sent in order (:meth:`_send_routed`)."""
        routing: asyncio.Queue[tuple[asyncio.Future[RoutedBatch], list[Any], dict[Any, int]]]
        routing = asyncio.Queue(maxsize=MAX_ROUTING)
        sender = asyncio.ensure_future(self._send_routed(routing))
        try:
            while not self.should_stop:
                fetched = await self.consumer.getmany(timeout_ms=100, max_records=MAX_BATCH)
                if sender.done():
                    sender.result()  # raise what stopped it
                if not fetched:
                    continue
                msgs = [m for ms in fetched.values() for m in ms]
                offsets = {tp: ms[-1].offset + 1 for tp, ms in fetched.items() if ms}
                routed = asyncio.ensure_future(self.route([m.value for m in msgs]))
                await routing.put((routed, msgs, offsets))
        finally:
            sender.cancel()

    async def _send_routed(self, routing: asyncio.Queue[Any]) -> None:
        """Send routed batches in fetch order without waiting for the broker between them;
        commit each batch's offsets, in order, once everything it sent is acknowledged."""
        in_flight: InFlight = deque()
        while True:
            try:
                routed, msgs, offsets = await asyncio.wait_for(routing.get(), timeout=0.1)
            except TimeoutError:
                pass
            else:
                batch = await routed
                in_flight.append((await self.send(batch, msgs), offsets))
            log = self.ctx.app.log
            for done in await commit_acknowledged(
                self.consumer, in_flight, MAX_IN_FLIGHT, log, "ingest"
            ):
                self._note_progress(done)

    async def route(self, raws: list[bytes]) -> RoutedBatch:
        """Validate and route ``raws`` (in the routing process once the service runs); a
        rejected record's origin is its index in ``raws``."""
        if self.pool is None:
            return self.router.route([(raw, i) for i, raw in enumerate(raws)])
        loop = asyncio.get_running_loop()
        try:
            return await loop.run_in_executor(self.pool, _route_in_child, raws)
        except BrokenProcessPool:  # the routing process died: a new one routes it again
            self.ctx.app.log.warning("govclock ingest: routing process lost; restarting it")
            self.pool = self._start_pool()
            return await loop.run_in_executor(self.pool, _route_in_child, raws)

    def _note_progress(self, offsets: dict[Any, int]) -> None:
        if not self.backlog:
            return
        for tp, offset in offsets.items():
            if offset >= self.backlog.get(tp, offset + 1):
                del self.backlog[tp]
        if not self.backlog:
            self.ctx.ingest_caught_up = True

    async def process(self, records: list[tuple[bytes, Any]]) -> asyncio.Future[Any]:
        """Route ``records`` (raw value, origin message) and send the results; returns a
        future that completes when the broker has acknowledged all of them."""
        batch = await self.route([raw for raw, _ in records])
        return await self.send(batch, [origin for _, origin in records])

    async def send(self, batch: RoutedBatch, origins: list[Any]) -> asyncio.Future[Any]:
        """Send a routed batch (rejected records by their index into ``origins``, the
        fetched messages); returns a future that completes once all of it is acknowledged."""
        ctx = self.ctx
        pending = []
        for raw, reason, index in batch.rejected:
            ctx.metrics.events_rejected.labels("invalid_event").inc()
            msg = origins[index]
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
