"""The Faust app: topics and the subjects table declared once, agents and views registered.

``create_app(settings, bootstrap)`` builds everything from settings (no import-time app),
so tests and ``govclock run`` each make their own.
"""

from __future__ import annotations

import asyncio
import time
import weakref
from collections.abc import Iterator, Sequence
from contextlib import contextmanager
from dataclasses import dataclass, field
from typing import Any

import faust
from faust.streams import _current_event
from prometheus_client import CollectorRegistry

from deadlines.rules import RuleBook
from govclock.calendar_files import load_calendar
from govclock.packs import load_rulebook
from streams.emitted import EmittedKeys
from streams.journal import Journal
from streams.metrics import LedgerCollector, Metrics
from streams.notifier import NotifierService
from streams.publish import aiokafka_producer, publish_batches
from streams.runtime import Worker
from streams.settings import Settings
from streams.sources import Source, load_sources
from streams.table import rows_table
from streams.topics import (
    APP_ID,
    DEAD_LETTERS,
    EVENTS,
    NOTIFICATIONS,
    SUBJECT_EVENTS,
    SUBJECTS_TABLE,
)

#: Faust settings the embedded broker needs (docs/broker.md in ../shared, measured).
EMBEDDED_BROKER_SETTINGS: dict[str, Any] = {
    "broker_session_timeout": 6.0,
    "broker_heartbeat_interval": 2.0,
    "recovery_consistency_check": False,
}


@dataclass
class Context:
    """What the agents and views share in one worker process."""

    app: faust.App
    settings: Settings
    book: RuleBook
    worker: Worker
    journal: Journal
    events: Any
    subject_events: Any
    notifications: Any
    dead_letters: Any
    table: Any
    sources: dict[str, Source] = field(default_factory=dict)
    emitted: EmittedKeys | None = None
    notifier: NotifierService | None = None  # escalation (agents/notifier.py); None: off
    metrics: Metrics = field(default_factory=lambda: Metrics(CollectorRegistry()))
    ready: bool = False
    #: The ingest consumer has its partitions and has routed what they held when it joined.
    ingest_caught_up: bool = False
    #: Per owned subject-events partition: the end offset when it was assigned, and the next
    #: offset the ledger agent will apply. The sweeper ticks a partition only once the
    #: second reaches the first, so a restart with lag applies old events before judging.
    catchup_targets: dict[int, int] = field(default_factory=dict)
    applied_offsets: dict[int, int] = field(default_factory=dict)
    backlog: int = 0  # journaled events replayed at start, to be ingested before ready
    _replay_done: bool = False
    started_at: float = field(default_factory=time.time)
    stats: dict[str, int] = field(default_factory=dict)

    def caught_up(self) -> bool:
        """Tables recovered, ledgers rebuilt, and (once, at start) the replayed journal
        through the pipeline: until then a tick could judge an old trigger before its old
        evidence is back, and report a breach that never happened.

        Only a journal replayed into a fresh embedded broker is waited for that way: there
        one worker owns every partition, so what it routes it also applies. On a cluster
        (nothing replayed) a worker routes records to other workers' partitions too, so its
        own counts need never meet; the ingest and per-partition gates cover that case."""
        if not self.ready or not self.ingest_caught_up:
            return False
        if not self._replay_done:
            taken = self.stats.get("ingested", 0) + self.stats.get("rejected", 0)
            applied, routed = self.stats.get("applied", 0), self.stats.get("routed", 0)
            self._replay_done = self.backlog == 0 or (taken >= self.backlog and applied >= routed)
        return self._replay_done

    def partition_caught_up(self, partition: int) -> bool:
        """The ledger has applied the partition's records up to its end at assignment."""
        target = self.catchup_targets.get(partition, 0)
        return self.applied_offsets.get(partition, 0) >= target

    async def publish(
        self, topic: str, partition: int, records: Sequence[tuple[bytes | None, bytes]]
    ) -> list[tuple[asyncio.Future[Any], int]]:
        """Send many (key, value) records to one partition as a few produce batches
        (:mod:`streams.publish`); returns each batch's future and record count."""
        return await publish_batches(aiokafka_producer(self.app), topic, partition, records)

    def count(self, name: str, n: int = 1) -> None:
        self.stats[name] = self.stats.get(name, 0) + n

    def assigned(self) -> list[int]:
        """The partitions of the subject-events topic this worker owns now."""
        return sorted(
            tp.partition
            for tp in self.app.assignor.assigned_actives()
            if tp.topic == SUBJECT_EVENTS
        )


@contextmanager
def in_partition(event: Any) -> Iterator[None]:
    """Make ``event`` Faust's current event, so table writes land in its partition (a
    batch from ``take_events`` otherwise leaves the batch's last event current)."""
    token = _current_event.set(weakref.ref(event))
    try:
        yield
    finally:
        _current_event.reset(token)


def load_worker(settings: Settings, partitions: int) -> Worker:
    """The core a worker runs: the rule packs and units file, and the calendars, of
    ``settings``, over ``partitions`` ledgers."""
    book = load_rulebook(packs_dir=settings.packs_dir, units_file=settings.units_file)
    return Worker(book, load_calendar(settings.calendar_files), partitions)


def create_app(
    settings: Settings, bootstrap: str, *, store: str = "rocksdb://", embedded: bool = True
) -> Context:
    """The app, its topics and table, and the shared context; agents and views attached."""
    extra = EMBEDDED_BROKER_SETTINGS if embedded else {}
    app = faust.App(
        APP_ID,
        broker=f"kafka://{bootstrap}",
        store=store,
        datadir=str(settings.data_dir / "faust"),
        web_enabled=True,
        web_host=settings.web_host,
        web_bind=settings.web_host,
        web_port=settings.web_port,
        web_in_thread=False,
        topic_partitions=settings.partitions,
        topic_replication_factor=settings.replication_factor,
        topic_allow_declare=True,
        table_standby_replicas=0,
        key_serializer="raw",
        value_serializer="raw",
        autodiscover=False,
        **extra,
    )
    n = settings.partitions
    events = app.topic(EVENTS, partitions=n, key_serializer="raw", value_serializer="raw")
    subject_events = app.topic(
        SUBJECT_EVENTS, partitions=n, key_serializer="raw", value_serializer="raw"
    )
    notifications = app.topic(
        NOTIFICATIONS, partitions=n, key_serializer="raw", value_serializer="raw"
    )
    dead_letters = app.topic(DEAD_LETTERS, partitions=1, value_serializer="raw")
    table = rows_table(app, SUBJECTS_TABLE, n)  # multi-row changelog records (streams/table.py)
    worker = load_worker(settings, n)
    ctx = Context(
        app=app,
        settings=settings,
        book=worker.book,
        worker=worker,
        journal=Journal(settings.data_dir / "journal"),
        events=events,
        subject_events=subject_events,
        notifications=notifications,
        dead_letters=dead_letters,
        table=table,
        sources=load_sources(settings.sources_file),
        emitted=EmittedKeys(settings.data_dir / "emitted"),
    )
    # How events, reads and peer calls are checked is logged by web/access.py at start.
    worker = ctx.worker
    ctx.metrics.registry.register(
        LedgerCollector(lambda: (ob for led in worker.ledgers.values() for ob in led.obligations()))
    )
    from agents import ingest, ledger, sweeper
    from streams import web

    ingest.register(ctx)
    ledger.register(ctx)
    sweeper.register(ctx)

    # -- escalation: the live notifier (agents/notifier.py, docs/escalation.md) ----------
    # Roster, policies and the SMS channel from settings; off without a roster. The
    # embedded broker always starts empty (docs/broker.md), so its state is re-seeded.
    from agents import notifier

    ctx.notifier = notifier.setup(ctx, fresh=embedded)
    # ---------------------------------------------------------------------------------

    web.register(ctx)
    return ctx
