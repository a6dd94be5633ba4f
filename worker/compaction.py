"""Journal compaction at start: restart work follows what is open, not all history.

The embedded broker keeps nothing across its restart, so every start produces the journal
into the fresh broker and the pipeline applies it all. Before that, the journal goes once
through the pure core here (no broker, no tables: a few microseconds per event), with the
same retention as the live worker (deadlines/retention.py), up to a tick at ``now``. A line
is kept when one of the subjects its event names is still in the hot state then (an open
obligation, one settling, evidence inside its window, a unit's yearly duties); every other
line names only subjects whose obligations have all settled and whose evidence has expired,
and is dropped — but only after those settled obligations are written to the archive (the
live worker wrote most of them already; the archive keeps one row per id and version), so
nothing a dropped line decided is lost. Lines that do not parse are kept (the pipeline
dead-letters them as before). So the pipeline replays only what the open state needs, and
the journal on disk stops growing with history.
"""

from __future__ import annotations

import logging
import multiprocessing
import time
from concurrent.futures import ProcessPoolExecutor
from dataclasses import dataclass
from pathlib import Path

import orjson

from archive.store import Archive
from config.settings import Settings
from deadlines.ledger import Ledger, route
from deadlines.retention import Retirer, Settled
from schemas.events import EventError, parse_event
from streams.journal import Journal
from worker.archiving import records_of
from worker.context import load_worker

#: Archive rows per transaction while compacting.
ARCHIVE_BATCH = 2000

log = logging.getLogger("govclock")


@dataclass(frozen=True)
class Compaction:
    """What a compaction did: lines kept and dropped, subjects live, obligations archived,
    seconds taken."""

    kept: int
    dropped: int
    live_subjects: int
    archived: int
    seconds: float
    upto: int = 0  # the journal's bytes that were filtered


def live_lines(
    journal: Journal, settings: Settings, now: int, upto: int | None = None
) -> tuple[list[bool], int, list[Settled]]:
    """For each complete line, whether it names a subject still hot at ``now``; how many
    subjects are; and the obligations that settled on the way."""
    core = load_worker(settings, 1)
    ledger = Ledger(core.book, core.calendar)
    retirer = ledger.retirer = Retirer(settings.retention)
    unit_kinds = core.book.all_ref_kinds()
    routes: list[tuple[str, ...] | None] = []
    for line in journal.read(upto):
        try:
            event = parse_event(orjson.loads(line))
        except (orjson.JSONDecodeError, EventError):
            routes.append(None)  # not an event: kept, the pipeline dead-letters it
            continue
        routes.append(tuple(f"{ref}={value}" for ref, value in route(event, unit_kinds)))
        ledger.apply(event)
    ledger.tick(now)
    live = ledger.subjects
    keep = [keys is None or any(k in live for k in keys) for keys in routes]
    settled, _ = retirer.take()
    return keep, len(live), settled


def compact_journal(
    journal: Journal, settings: Settings, archive: Archive, now: int | None = None
) -> Compaction:
    """Archive what settled, then drop the journal lines no open state needs (see the
    module's docstring). Appends may go on meanwhile: only the journal as it was when this
    began is filtered, what came after is kept as it is."""
    began = time.monotonic()
    at = int(time.time()) if now is None else now
    upto = journal.end()
    keep, live, settled = live_lines(journal, settings, at, upto)
    _archive(archive, settled)
    kept, dropped = journal.compact(lambda index, _: index >= len(keep) or keep[index], upto)
    return Compaction(kept, dropped, live, len(settled), round(time.monotonic() - began, 3), upto)


def _archive(archive: Archive, settled: list[Settled]) -> None:
    """Write what settled, in transactions of :data:`ARCHIVE_BATCH` rows (idempotent)."""
    records = records_of(settled)
    for start in range(0, len(records), ARCHIVE_BATCH):
        archive.write(records[start : start + ARCHIVE_BATCH])


def compact_in_child(journal: Journal, settings: Settings, now: int) -> Compaction:
    """Compact a running worker's journal in a child process (the pure pass takes seconds of
    CPU per million lines, which the worker's event loop must not wait for). Only the
    replacement of the file happens here, under the journal's lock, with the lines appended
    meanwhile copied over."""
    context = multiprocessing.get_context("spawn")
    with ProcessPoolExecutor(max_workers=1, mp_context=context) as pool:
        # the child filters and archives, and leaves the new file beside the journal
        done: Compaction = pool.submit(_filter_only, journal.directory, settings, now).result()
    if journal.compacting.exists():
        journal.install(journal.compacting, done.upto)
    return done


def _filter_only(directory: Path, settings: Settings, now: int) -> Compaction:
    """The child's part: archive what settled and write the kept lines of the journal as it
    is now to ``events.compacting``; the parent installs it."""
    began = time.monotonic()
    journal = Journal(directory)
    if not journal.path.exists():
        return Compaction(0, 0, 0, 0, 0.0)
    upto = journal.end()
    keep, live, settled = live_lines(journal, settings, now, upto)
    with Archive.open(settings.archive_database_url) as archive:
        _archive(archive, settled)
    kept, dropped = journal.write_kept(lambda index, _: index >= len(keep) or keep[index], upto)
    return Compaction(kept, dropped, live, len(settled), round(time.monotonic() - began, 3), upto)
