"""The composition root: the Faust app, its topics and table, agents and routes attached.

``create_app(settings, bootstrap)`` builds everything from settings (no import-time app),
so tests and ``govclock run`` each make their own.
"""

from __future__ import annotations

import logging
from typing import Any

import faust

from agents import compactor, heap, ingest, ledger, notifier, sweeper
from archive.store import Archive
from config.settings import Settings
from config.sources import load_sources
from metrics.collectors import LedgerCollector
from streams.emitted import EmittedKeys
from streams.journal import Journal
from streams.table import rows_table
from streams.topics import (
    APP_ID,
    DEAD_LETTERS,
    EVENTS,
    NOTIFICATIONS,
    SUBJECT_EVENTS,
    SUBJECTS_TABLE,
)
from web import routes
from worker.context import Context, load_worker

log = logging.getLogger("govclock")

#: Faust settings the embedded broker needs (docs/broker.md in ../shared, measured).
EMBEDDED_BROKER_SETTINGS: dict[str, Any] = {
    "broker_session_timeout": 6.0,
    "broker_heartbeat_interval": 2.0,
    "recovery_consistency_check": False,
}


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
    archive = Archive.open(settings.archive_database_url)  # migrated to the current schema
    log.info("govclock: archive %s", archive.url)  # the password masked
    worker = load_worker(settings, n, settings.retention)
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
        archive=archive,
    )
    # How events, reads and peer calls are checked is logged by web/access.py at start.
    worker = ctx.worker
    ctx.metrics.registry.register(
        LedgerCollector(lambda: (ob for led in worker.ledgers.values() for ob in led.obligations()))
    )
    ingest.register(ctx)
    ledger.register(ctx)
    sweeper.register(ctx)
    compactor.register(ctx)
    heap.register(ctx)

    # -- escalation: the live notifier (agents/notifier.py, docs/escalation.md) ----------
    # Roster, policies and the SMS channel from settings; off without a roster. The
    # embedded broker always starts empty (docs/broker.md), so its state is re-seeded.
    ctx.notifier = notifier.setup(ctx, fresh=embedded)
    # ---------------------------------------------------------------------------------

    routes.register(ctx)
    return ctx
