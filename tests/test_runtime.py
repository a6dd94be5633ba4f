"""The worker core (no broker): partitioned delivery gives the same outcome as the plain
ledger, and table rows restore a partition exactly."""

from __future__ import annotations

import json
from pathlib import Path

import pytest

from config.packs import load_rulebook
from deadlines.calendar import WorkCalendar
from deadlines.ledger import Ledger, instant
from deadlines.replay import replay
from deadlines.timefmt import rfc3339
from govclock.history import read_history
from schemas.events import event_time
from worker.ledgers import (
    RecordError,
    Worker,
    accept,
    effect_record,
    encode_record,
    partition_of,
)

ROOT = Path(__file__).resolve().parent.parent
HISTORY = ROOT / "examples" / "sample-history.jsonl"
BOOK = load_rulebook(units_file=ROOT / "examples" / "units.yaml")
CAL = WorkCalendar.official()
N = 4


def outcome(obligations: object) -> set[tuple[object, ...]]:
    return {(o.id, o.status, o.due_at, o.fulfilled_by) for o in obligations}  # type: ignore[attr-defined]


def run_partitioned(worker: Worker) -> tuple[int, list[bytes]]:
    """Deliver the sample as ingest and the sweeper would; return the final time and
    the notification records."""
    unit_kinds = BOOK.all_ref_kinds()
    notes: list[bytes] = []
    seen_units: set[str] = set()
    lines = [line for line in HISTORY.read_bytes().splitlines() if line.strip()]
    events, _ = read_history(HISTORY)
    clock = min(instant(event_time(e))[0] for _, e in events)  # start watching, as replay
    for p in range(N):
        worker.handle(p, None, encode_record("tick", clock))
    for raw in lines:
        try:
            routed = accept(raw, unit_kinds)
        except RecordError:
            continue
        at = instant(event_time(routed.event))[0]
        if clock is None or at > clock:
            clock = at
            for p in range(N):  # the sweeper ticks every partition
                for fx in worker.handle(p, None, encode_record("tick", at)):
                    notes.append(effect_record(fx))
        unit = routed.event.unit
        if unit not in seen_units:
            seen_units.add(unit)
            key = f"unit={unit}"
            worker.handle(partition_of(key, N), key, encode_record("unit", unit))
        for key in routed.keys:
            record = encode_record("event", routed.event.model_dump(mode="json"))
            for fx in worker.handle(partition_of(key, N), key, record):
                notes.append(effect_record(fx))
    assert clock is not None
    return clock, notes


def test_partitioned_delivery_matches_the_plain_ledger() -> None:
    worker = Worker(BOOK, CAL, N)
    clock, notes = run_partitioned(worker)
    partitioned = [ob for led in worker.ledgers.values() for ob in led.obligations()]
    events, _ = read_history(HISTORY)
    plain = replay(Ledger(BOOK, CAL), events, clock).ledger
    assert outcome(partitioned) == outcome(plain.obligations())
    assert len(partitioned) > 15
    assert {json.loads(n)["kind"] for n in notes} >= {"opened", "met", "breached", "warned"}
    keys = [json.loads(n)["key"] for n in notes]
    assert len(keys) == len(set(keys))  # every effect once


def test_each_obligation_lives_on_its_subjects_partition() -> None:
    worker = Worker(BOOK, CAL, N)
    run_partitioned(worker)
    for p, led in worker.ledgers.items():
        for key in led.subjects:
            assert partition_of(key, N) == p, key


def test_table_rows_restore_each_partition() -> None:
    worker = Worker(BOOK, CAL, N)
    run_partitioned(worker)
    rows = {p: dict(worker.changed(p)) for p in range(N)}
    fresh = Worker(BOOK, CAL, N)
    for p in range(N):
        fresh.restore(p, rows[p].items())
    before = [ob for led in worker.ledgers.values() for ob in led.obligations()]
    after = [ob for led in fresh.ledgers.values() for ob in led.obligations()]
    assert outcome(after) == outcome(before)
    assert worker.changed(0) == []  # taken already


def test_bad_records_are_refused_with_a_reason() -> None:
    worker = Worker(BOOK, CAL, N)
    with pytest.raises(RecordError, match="not valid JSON"):
        worker.handle(0, "x=1", b"{nope")
    with pytest.raises(RecordError, match="expected"):
        worker.handle(0, None, b'{"something": 1}')
    with pytest.raises(RecordError, match="does not name subject"):
        event = {
            "event_id": "e",
            "type": "decision.made",
            "unit": "u",
            "decision_id": "X1",
            "decided_at": "2026-03-02",
            "kind": "licensing",
        }
        worker.handle(0, "decision_id=OTHER", encode_record("event", event))
    with pytest.raises(RecordError, match="severity"):
        accept(
            b'{"event_id":"e","type":"incident.reported","unit":"u","incident_id":"I",'
            b'"occurred_at":"2026-03-01T10:00:00+08:00","title":"t","severity":"V"}',
            frozenset(),
        )


def test_breaches_the_sweeper_could_not_have_seen_sooner_are_marked_late_known() -> None:
    book = load_rulebook()
    worker = Worker(book, WorkCalendar.official(), 1)
    t0 = 1_772_330_400  # 2026-03-01T10:00+08:00

    def incident(event_id: str, incident_id: str, occurred: int) -> bytes:
        event = {
            "event_id": event_id,
            "type": "incident.reported",
            "unit": "u1",
            "incident_id": incident_id,
            "occurred_at": rfc3339(occurred),
            "title": "t",
            "severity": "II",
        }
        return encode_record("event", event)

    worker.handle(0, "incident_id=I-KNOWN", incident("e1", "I-KNOWN", t0))
    worker.handle(0, None, encode_record("tick", t0 + 60))  # first tick: nothing due yet
    # arrives long after its 5-hour window closed
    worker.handle(0, "incident_id=I-LATE", incident("e2", "I-LATE", t0 - 10 * 3600))
    effects = worker.handle(0, None, encode_record("tick", t0 + 5 * 3600 + 2))
    breached = {fx.subject_id: fx.key for fx in effects if fx.kind == "breached"}
    assert set(breached) == {"I-KNOWN", "I-LATE"}
    assert worker.late_known == {breached["I-LATE"]}
