"""What the agents and routes of one worker process share: the :class:`Context`.

Built by the composition root (:func:`monitor.app.create_app`); agents and routes receive it
and never import the root, so the root can import them.
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

from archive.store import Archive
from config.calendar_files import load_calendar
from config.packs import load_rulebook
from config.settings import Settings
from config.sources import Source
from deadlines.retention import Retention
from deadlines.rules import RuleBook
from escalation.service import NotifierService
from metrics.collectors import Metrics
from streams.emitted import EmittedKeys
from streams.journal import Journal
from streams.publish import aiokafka_producer, publish_batches
from streams.topics import SUBJECT_EVENTS
from worker.ledgers import Worker


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
    archive: Archive | None = None  # settled obligations (worker/archiving.py); None: kept hot
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


def load_worker(settings: Settings, partitions: int, retention: Retention | None = None) -> Worker:
    """The core a worker runs: the rule packs and units file, and the calendars, of
    ``settings``, over ``partitions`` ledgers (``retention``: settled obligations leave)."""
    book = load_rulebook(packs_dir=settings.packs_dir, units_file=settings.units_file)
    return Worker(book, load_calendar(settings.calendar_files), partitions, retention)
