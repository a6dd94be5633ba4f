"""Retention in the core: settled obligations leave the ledger at a tick, quiet subjects are
forgotten, open ones and units' yearly duties stay (deadlines/retention.py)."""

from __future__ import annotations

from datetime import datetime
from typing import Any

from config.packs import load_rulebook
from deadlines.calendar import WorkCalendar
from deadlines.ledger import Ledger
from deadlines.retention import DAY, Retention, Retirer, closed_at, settles_at
from schemas.events import Event, parse_event

BOOK = load_rulebook()
CAL = WorkCalendar.official()
U = "u1"
POLICY = Retention(settle_s=7 * DAY, missed_s=30 * DAY, evidence_s=30 * DAY)


def ts(text: str) -> int:
    return int(datetime.fromisoformat(text).timestamp())


def ev(etype: str, eid: str, **fields: Any) -> Event:
    return parse_event({"type": etype, "event_id": eid, "unit": U, **fields})


def issued(eid: str, doc: str, at: str) -> Event:
    return ev(
        "document.issued",
        eid,
        document_id=doc,
        issued_at=at,
        kind="normative",
        disclosure="proactive",
        title="t",
    )


def pub(eid: str, at: str, **refs: str) -> Event:
    return ev(
        "document.published",
        eid,
        publication_id=eid,
        published_at=at,
        kind="document",
        channel="portal",
        url=f"https://gov.example/{eid}",
        refs=refs,
    )


def ledger() -> Ledger:
    led = Ledger(BOOK, CAL)
    led.retirer = Retirer(POLICY)
    return led


def doc_obligations(led: Ledger, doc: str) -> list[Any]:
    subject = led.subjects.get(f"document_id={doc}")
    return list(subject.obligations or ()) if subject else []


def test_a_met_obligation_leaves_at_the_first_tick_after_it_settles() -> None:
    led = ledger()
    led.apply(issued("i1", "D1", "2026-03-02T09:00:00+08:00"))
    led.apply(pub("p1", "2026-03-04T10:00:00+08:00", document_id="D1"))
    (ob,) = [o for o in doc_obligations(led, "D1") if o.status == "met"]
    closed = closed_at(ob)
    assert closed == ts("2026-03-04T10:00:00+08:00")
    assert settles_at(ob, POLICY) == closed + 7 * DAY
    led.tick(closed + 7 * DAY - 1)
    assert ob in doc_obligations(led, "D1") and led.retirer is not None
    assert led.retirer.take() == ([], [])
    led.tick(closed + 7 * DAY)
    retired, forgotten = led.retirer.take()
    assert [(s.obligation, s.closed_at) for s in retired] == [(ob, closed)]
    assert retired[0].evidence_url == "https://gov.example/p1"
    assert ob not in doc_obligations(led, "D1")
    # the publication is evidence on the document's subject: it stays 30 days after
    assert forgotten == [] and "document_id=D1" in led.subjects
    led.tick(closed + 30 * DAY)
    assert led.retirer.take() == ([], ["document_id=D1"])
    assert "document_id=D1" not in led.subjects


def test_a_missed_obligation_waits_for_late_evidence_then_leaves() -> None:
    led = ledger()
    led.apply(issued("i1", "D2", "2026-03-02T09:00:00+08:00"))
    (ob,) = doc_obligations(led, "D2")
    due = ob.due_at
    led.tick(due + DAY)
    assert ob.status == "missed"
    led.tick(due + 29 * DAY)
    assert ob in doc_obligations(led, "D2")
    led.apply(pub("p2", "2026-03-25T10:00:00+08:00", document_id="D2"))  # late, inside grace
    assert ob.status == "late"
    late_at = closed_at(ob)
    assert late_at == ts("2026-03-25T10:00:00+08:00")
    assert led.retirer is not None
    led.tick(late_at + 7 * DAY)
    retired, _ = led.retirer.take()
    assert [(o.id, o.status) for o, _, _ in retired] == [(ob.id, "late")]


def test_open_obligations_and_units_yearly_duties_stay() -> None:
    led = ledger()
    led.apply(issued("i1", "D3", "2026-03-02T09:00:00+08:00"))
    led.apply(issued("i2", "D5", "2027-05-28T09:00:00+08:00"))  # still open on 1 June 2027
    led.tick(ts("2026-03-03T00:00:00+08:00"))
    led.tick(ts("2027-06-01T00:00:00+08:00"))
    assert led.retirer is not None
    retired, _ = led.retirer.take()
    assert {o.subject_id for o, _, _ in retired} == {"D3"}
    assert [o.status for o in doc_obligations(led, "D5")] == ["pending"]
    unit = led.subjects[f"unit={U}"]
    assert unit.obligations and any(o.status == "missed" for o in unit.obligations)


def test_evidence_without_a_trigger_is_forgotten_after_the_window_and_closes_inside_it() -> None:
    led = ledger()
    led.apply(pub("p9", "2026-03-02T10:00:00+08:00", document_id="D9"))  # trigger not yet here
    led.tick(ts("2026-03-20T00:00:00+08:00"))
    led.apply(issued("i9", "D9", "2026-03-01T09:00:00+08:00"))  # arrives inside the window
    assert [o.status for o in doc_obligations(led, "D9")] == ["met"]
    other = ledger()
    other.apply(pub("p8", "2026-03-02T10:00:00+08:00", document_id="D8"))
    other.tick(ts("2026-04-01T10:00:00+08:00"))
    assert other.retirer is not None
    assert other.retirer.take() == ([], ["document_id=D8"])


def test_without_a_retirer_nothing_leaves() -> None:
    led = Ledger(BOOK, CAL)
    led.apply(issued("i1", "D4", "2026-03-02T09:00:00+08:00"))
    led.tick(ts("2027-06-01T00:00:00+08:00"))
    assert len(doc_obligations(led, "D4")) == 1
