"""``govclock run``: the live monitor.

1. Connect to ``KAFKA_BROKER``, or start the embedded broker (127.0.0.1, memory only).
2. Create the topics (idempotent).
3. If the broker started empty (always, for the embedded one): clear the worker's local
   table state (it would be stale), compact the journal to what the open state still needs
   (worker/compaction.py; the rest is in the archive) and produce it into the ingest topic,
   so the worker rebuilds its hot state.
4. Run the Faust worker until Ctrl-C / SIGTERM; then stop the worker, then the broker.
"""

from __future__ import annotations

import gc
import logging
import shutil
from pathlib import Path

from archive.store import Archive
from config.settings import Settings
from streams.broker import open_broker
from streams.journal import Journal
from streams.topics import EVENTS, all_topic_specs, create_topics
from worker.compaction import compact_journal

log = logging.getLogger("govclock")


def replay_journal(journal: Journal, bootstrap: str) -> int:
    """Produce every journaled event into the ingest topic; returns how many."""
    from kafka import KafkaProducer  # type: ignore[import-untyped]

    producer = KafkaProducer(bootstrap_servers=bootstrap, acks="all", linger_ms=5)
    count = 0
    try:
        for line in journal.read():
            event_id = _event_id(line)
            producer.send(EVENTS, key=event_id, value=line)
            count += 1
        producer.flush(timeout=60)
    finally:
        producer.close(timeout=10)
    return count


def _event_id(line: bytes) -> bytes | None:
    import json

    try:
        value = json.loads(line).get("event_id")
    except (ValueError, AttributeError):
        return None
    return value.encode() if isinstance(value, str) else None


def clear_local_state(data_dir: Path) -> None:
    """The worker's table files belong to a broker that is gone: remove them."""
    shutil.rmtree(data_dir / "faust", ignore_errors=True)


#: Allocations between young collections (CPython's default is 700), and the older
#: generations' multipliers. A worker allocates a few hundred objects per event and keeps
#: hundreds of thousands alive (the ledgers): with the default, collections took ~20% of
#: the pipeline (bench: 9.7k → 11.7k events/s with these). Full collections still run
#: whenever a quarter of the long-lived objects is new (CPython's own rule).
GC_THRESHOLDS = (50_000, 50, 100)


def tune_gc() -> None:
    """Collect less often, and never scan the objects that exist at start (modules,
    settings, the rule book): :func:`gc.freeze` moves them out of the collector's sight."""
    gc.collect()
    gc.freeze()
    gc.set_threshold(*GC_THRESHOLDS)


def run(settings: Settings) -> int:
    import faust

    from monitor.app import create_app
    from web.access import check_start

    check_start(settings)  # closed by default off loopback (docs/security.md)
    settings.data_dir.mkdir(parents=True, exist_ok=True)
    with open_broker(settings) as endpoint:
        created = create_topics(
            endpoint.bootstrap, all_topic_specs(settings.partitions, settings.replication_factor)
        )
        log.info("govclock: topics %s", created)
        replayed = 0
        if endpoint.fresh:
            clear_local_state(settings.data_dir)
            journal = Journal(settings.data_dir / "journal")
            with Archive.open(settings.archive_database_url) as archive:
                done = compact_journal(journal, settings, archive)  # what open state needs
            log.info(
                "govclock: journal compacted in %.1f s: %d lines kept, %d dropped, "
                "%d settled obligations archived (%d subjects in the hot state)",
                done.seconds,
                done.kept,
                done.dropped,
                done.archived,
                done.live_subjects,
            )
            replayed = replay_journal(journal, endpoint.bootstrap)
            log.info("govclock: replayed %d journaled events into a fresh broker", replayed)
        ctx = create_app(settings, endpoint.bootstrap, embedded=endpoint.embedded)
        ctx.backlog = replayed  # not ready before these are through the pipeline
        worker = faust.Worker(
            ctx.app,
            loglevel=settings.log_level,
            quiet=False,
            override_logging=True,
        )
        # Faust's start-up spinner puts the root logger at DEBUG (to spin on every record)
        # whenever the level is WARNING or above, and leaves it there: every debug line of
        # aiokafka and Faust then builds a LogRecord (measured: ~10% of the worker's CPU).
        worker.spinner = None
        tune_gc()
        try:
            worker.execute_from_commandline()
        except SystemExit as exc:
            return int(exc.code or 0) if isinstance(exc.code, int | None) else 1
    return 0
