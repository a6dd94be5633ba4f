"""The obligation ledger: every default-pack rule, clock semantics, out-of-order and duplicate
events, date-only evidence, warnings, incident updates, calendar reloads and the audit trail.

Expected deadlines are worked out by hand from the 2026 State Council holiday notice (March 2026
has no holidays; Qingming is Apr 4-6) and docs/rules.md, never from the code under test.
"""

from __future__ import annotations

import itertools
from collections.abc import Callable, Iterable
from dataclasses import dataclass, field
from datetime import date, datetime
from typing import Any

import pytest

from config.packs import load_rulebook
from deadlines.calendar import CalendarYear, WorkCalendar
from deadlines.ledger import Ledger
from deadlines.obligations import Effect, Obligation
from deadlines.rules import RuleBook
from schemas.events import Event, parse_event

BOOK = load_rulebook()
CAL = WorkCalendar.official()
U = "u1"
HOUR = 3600


# --- helpers -----------------------------------------------------------------------------------


def ts(text: str) -> int:
    """Epoch seconds of an RFC 3339 timestamp (an offset is required)."""
    value = datetime.fromisoformat(text)
    assert value.tzinfo is not None, f"{text} has no offset"
    return int(value.timestamp())


def end_of(day: str) -> int:
    """The deadline instant of a day window ending on ``day``: 23:59:59 Asia/Shanghai."""
    return ts(f"{day}T23:59:59+08:00")


def ev(etype: str, eid: str, unit: str = U, **fields: Any) -> Event:
    return parse_event({"type": etype, "event_id": eid, "unit": unit, **fields})


def incident(
    eid: str,
    iid: str,
    at: str,
    severity: str,
    *,
    updated: bool = False,
    unit: str = U,
    **facts: Any,
) -> Event:
    etype = "incident.updated" if updated else "incident.reported"
    return ev(
        etype, eid, unit, incident_id=iid, occurred_at=at, title="t", severity=severity, **facts
    )


def pub(eid: str, at: str, kind: str, *, unit: str = U, **refs: str) -> Event:
    return ev(
        "document.published",
        eid,
        unit,
        publication_id=eid,
        published_at=at,
        kind=kind,
        channel="portal",
        url=f"https://gov.example/{eid}",
        refs=refs,
    )


def issued(eid: str, doc: str, at: str, disclosure: str = "proactive", *, unit: str = U) -> Event:
    return ev(
        "document.issued",
        eid,
        unit,
        document_id=doc,
        issued_at=at,
        kind="normative",
        disclosure=disclosure,
        title="t",
    )


def opinion(
    eid: str, oid: str, at: str, topic: str, *, incident_id: str | None = None, unit: str = U
) -> Event:
    refs = {"incident_id": incident_id} if incident_id else {}
    return ev(
        "opinion.detected",
        eid,
        unit,
        opinion_id=oid,
        detected_at=at,
        topic=topic,
        title="t",
        url=f"https://weibo.example/{oid}",
        refs=refs,
    )


def received(eid: str, app: str, at: str, *, unit: str = U) -> Event:
    return ev("application.received", eid, unit, application_id=app, received_at=at)


def step(what: str, eid: str, app: str, at: str, **extra: Any) -> Event:
    """``application.<what>`` (correction_requested, corrected, consultation_*, extended)."""
    return ev(f"application.{what}", eid, U, application_id=app, at=at, **extra)


def decided(eid: str, dec: str, at: str) -> Event:
    return ev("decision.made", eid, U, decision_id=dec, decided_at=at, kind="penalty")


def org_changed(eid: str, change: str, at: str) -> Event:
    return ev("org.changed", eid, U, change_id=change, completed_at=at)


def ledger(book: RuleBook = BOOK, cal: WorkCalendar = CAL) -> Ledger:
    return Ledger(book, cal)


def feed(led: Ledger, events: Iterable[Event]) -> list[Effect]:
    out: list[Effect] = []
    for e in events:
        out.extend(led.apply(e))
    return out


def kinds(fx: Iterable[Effect], ob_id: str | None = None) -> list[str]:
    return [f.kind for f in fx if ob_id is None or f.obligation_id == ob_id]


def must(led: Ledger, ob_id: str) -> Obligation:
    ob = led.get(ob_id)
    assert ob is not None, f"{ob_id} not opened; have {[o.id for o in led.obligations()]}"
    return ob


def ids(led: Ledger) -> set[str]:
    return {ob.id for ob in led.obligations()}


FR = "first_release_5h:I1"


# --- 1. every default-pack rule: opening, deadline, evidence -----------------------------------

INC_AT = "2026-03-01T10:00:00+08:00"  # a Sunday; hour windows do not care
MAJOR = incident("inc", "I1", INC_AT, "II", deaths=12)


@dataclass(frozen=True)
class RuleCase:
    name: str
    triggers: list[Event]
    ob_id: str
    due: int
    good: list[Event]  # each one alone fulfils the obligation
    bad: list[Event] = field(default_factory=list)  # none of these fulfils it


RULE_CASES = [
    RuleCase(
        "first_release_5h",
        [MAJOR],
        "first_release_5h:I1",
        ts("2026-03-01T15:00:00+08:00"),
        good=[
            pub("g1", "2026-03-01T12:00:00+08:00", "press_release", incident_id="I1"),
            pub("g2", "2026-03-01T12:00:00+08:00", "press_conference", incident_id="I1"),
            pub("g3", "2026-03-01T12:00:00+08:00", "update", incident_id="I1"),
        ],
        bad=[
            pub("b1", "2026-03-01T11:00:00+08:00", "news", incident_id="I1"),
            pub("b2", "2026-03-01T11:00:00+08:00", "press_release", incident_id="I2"),
            pub("b3", "2026-03-01T11:00:00+08:00", "press_release"),
        ],
    ),
    RuleCase(
        "press_conference_24h",
        [MAJOR],
        "press_conference_24h:I1",
        ts("2026-03-02T10:00:00+08:00"),
        good=[pub("g1", "2026-03-02T09:00:00+08:00", "press_conference", incident_id="I1")],
        bad=[
            pub("b1", "2026-03-01T11:00:00+08:00", "press_release", incident_id="I1"),
            pub("b2", "2026-03-01T11:00:00+08:00", "update", incident_id="I1"),
            pub("b3", "2026-03-01T11:00:00+08:00", "press_conference", incident_id="I2"),
        ],
    ),
    RuleCase(
        "online_posting_10wd (rules.md: Thu 02-12 -> Wed 03-04)",
        [issued("iss", "D1", "2026-02-12")],
        "online_posting_10wd:D1",
        end_of("2026-03-04"),
        good=[
            pub("g1", "2026-03-04T18:00:00+08:00", "document", document_id="D1"),
            pub("g2", "2026-03-04", "document", document_id="D1"),
        ],
        bad=[
            pub("b1", "2026-02-13T10:00:00+08:00", "document", document_id="D2"),
            pub("b2", "2026-02-13T10:00:00+08:00", "news", document_id="D1"),
            pub("b3", "2026-02-13T10:00:00+08:00", "interpretation", document_id="D1"),
        ],
    ),
    RuleCase(
        "online_posting_10wd (rules.md: Sat 03-07 -> Fri 03-20)",
        [issued("iss", "D1", "2026-03-07")],
        "online_posting_10wd:D1",
        end_of("2026-03-20"),
        good=[pub("g1", "2026-03-20T23:59:59+08:00", "document", document_id="D1")],
        bad=[pub("b1", "2026-03-09T10:00:00+08:00", "document", document_id="D9")],
    ),
    RuleCase(
        "power_list_10wd",
        [org_changed("chg", "C1", "2026-03-02")],
        "power_list_10wd:C1",
        end_of("2026-03-16"),
        good=[pub("g1", "2026-03-16T17:00:00+08:00", "power_list", change_id="C1")],
        bad=[
            pub("b1", "2026-03-03T10:00:00+08:00", "power_list", change_id="C2"),
            pub("b2", "2026-03-03T10:00:00+08:00", "news", change_id="C1"),
        ],
    ),
    RuleCase(
        "double_publicity_7wd",
        [decided("dec", "X1", "2026-03-02")],
        "double_publicity_7wd:X1",
        end_of("2026-03-11"),
        good=[pub("g1", "2026-03-11", "decision_publicity", decision_id="X1")],
        bad=[
            pub("b1", "2026-03-03T10:00:00+08:00", "decision_publicity", decision_id="X2"),
            pub("b2", "2026-03-03T10:00:00+08:00", "document", decision_id="X1"),
        ],
    ),
    RuleCase(
        "interpretation_same_day",
        [pub("pol", "2026-03-02T09:00:00+08:00", "policy", document_id="D1")],
        "interpretation_same_day:D1",
        end_of("2026-03-02"),
        good=[
            pub("g1", "2026-03-02T21:00:00+08:00", "interpretation", document_id="D1"),
            pub("g2", "2026-03-02", "interpretation", document_id="D1"),
        ],
        bad=[
            pub("b1", "2026-03-02T10:00:00+08:00", "interpretation", document_id="D2"),
            pub("b2", "2026-03-02T10:00:00+08:00", "news", document_id="D1"),
            pub("b3", "2026-03-02T10:00:00+08:00", "policy", document_id="D1"),
        ],
    ),
    RuleCase(
        "application_reply_20wd",
        [received("rcv", "A1", "2026-03-02")],
        "application_reply_20wd:A1",
        end_of("2026-03-30"),
        good=[pub("g1", "2026-03-30T16:00:00+08:00", "reply", application_id="A1")],
        bad=[
            pub("b1", "2026-03-03T10:00:00+08:00", "reply", application_id="A2"),
            pub("b2", "2026-03-03T10:00:00+08:00", "response", application_id="A1"),
        ],
    ),
    RuleCase(
        "opinion_response_48h",
        [opinion("op", "O1", "2026-03-01T11:00:00+08:00", "livelihood")],
        "opinion_response_48h:O1",
        ts("2026-03-03T11:00:00+08:00"),
        good=[
            pub(f"g{i}", "2026-03-03T10:00:00+08:00", kind, opinion_id="O1")
            for i, kind in enumerate(
                ["response", "press_release", "press_conference", "update", "rebuttal"]
            )
        ],
        bad=[
            pub("b1", "2026-03-01T12:00:00+08:00", "response", opinion_id="O2"),
            pub("b2", "2026-03-01T12:00:00+08:00", "news", opinion_id="O1"),
        ],
    ),
    RuleCase(
        "rumor_rebuttal",
        [opinion("op", "O1", "2026-03-01T11:00:00+08:00", "rumor")],
        "rumor_rebuttal:O1",
        ts("2026-03-02T11:00:00+08:00"),
        good=[
            pub(f"g{i}", "2026-03-02T10:00:00+08:00", kind, opinion_id="O1")
            for i, kind in enumerate(["rebuttal", "response", "press_release"])
        ],
        bad=[
            pub("b1", "2026-03-01T12:00:00+08:00", "rebuttal", opinion_id="O2"),
            pub("b2", "2026-03-01T12:00:00+08:00", "update", opinion_id="O1"),
        ],
    ),
    RuleCase(
        "opinion_major_5h",
        [MAJOR, opinion("op", "O1", "2026-03-01T12:00:00+08:00", "emergency", incident_id="I1")],
        "opinion_major_5h:O1",
        ts("2026-03-01T17:00:00+08:00"),
        good=[
            pub(f"g{i}", "2026-03-01T16:00:00+08:00", kind, incident_id="I1")
            for i, kind in enumerate(["press_release", "press_conference", "update", "response"])
        ],
        bad=[
            pub("b1", "2026-03-01T13:00:00+08:00", "response", opinion_id="O1"),
            pub("b2", "2026-03-01T13:00:00+08:00", "press_release", incident_id="I2"),
            pub("b3", "2026-03-01T13:00:00+08:00", "news", incident_id="I1"),
        ],
    ),
    RuleCase(
        "opinion_major_24h",
        [MAJOR, opinion("op", "O1", "2026-03-01T12:00:00+08:00", "emergency", incident_id="I1")],
        "opinion_major_24h:O1",
        ts("2026-03-02T12:00:00+08:00"),
        good=[pub("g1", "2026-03-02T11:00:00+08:00", "press_conference", incident_id="I1")],
        bad=[pub("b1", "2026-03-01T13:00:00+08:00", "press_release", incident_id="I1")],
    ),
]


@pytest.mark.parametrize("case", RULE_CASES, ids=lambda c: c.name)
def test_rule_opens_with_the_right_deadline(case: RuleCase) -> None:
    led = ledger()
    fx = feed(led, case.triggers)
    opened = [f for f in fx if f.kind == "opened" and f.obligation_id == case.ob_id]
    assert len(opened) == 1
    assert opened[0].due_at == case.due
    ob = must(led, case.ob_id)
    assert (ob.status, ob.due_at) == ("pending", case.due)


@pytest.mark.parametrize("case", RULE_CASES, ids=lambda c: c.name)
def test_rule_ignores_the_wrong_evidence(case: RuleCase) -> None:
    led = ledger()
    feed(led, case.triggers)
    fx = feed(led, case.bad)
    assert kinds(fx, case.ob_id) == []
    assert must(led, case.ob_id).status == "pending"
    assert must(led, case.ob_id).fulfilled_by is None


@pytest.mark.parametrize(
    ("case", "good"),
    [(c, g) for c in RULE_CASES for g in c.good],
    ids=lambda x: x.name if isinstance(x, RuleCase) else getattr(x, "kind", str(x)),
)
def test_rule_is_met_by_the_right_evidence(case: RuleCase, good: Event) -> None:
    led = ledger()
    feed(led, case.triggers)
    feed(led, case.bad)
    fx = feed(led, [good])
    assert kinds(fx, case.ob_id) == ["met"]
    ob = must(led, case.ob_id)
    assert (ob.status, ob.fulfilled_by) == ("met", good.event_id)


@pytest.mark.parametrize(
    ("facts", "opens"),
    [
        ({"severity": "I"}, False),  # severity alone does not trigger it in the default pack
        ({"severity": "II", "deaths": 9, "injured": 49}, False),
        ({"severity": "II", "deaths": 10}, True),
        ({"severity": "III", "injured": 50}, True),
        ({"severity": "IV", "social_impact": "significant"}, True),
    ],
)
def test_default_press_conference_needs_casualties_or_impact(
    facts: dict[str, Any], opens: bool
) -> None:
    led = ledger()
    feed(led, [incident("inc", "I1", INC_AT, **facts)])
    assert ("press_conference_24h:I1" in ids(led)) is opens


@pytest.mark.parametrize(
    ("severity", "opens"), [("I", True), ("II", True), ("III", False), ("IV", False)]
)
def test_national_press_conference_on_severity(
    units_book: Callable[..., RuleBook], severity: str, opens: bool
) -> None:
    led = ledger(units_book([{"id": "u-nat", "pack": "national"}]))
    # Casualties are given to show they do not matter in the national pack.
    feed(led, [incident("inc", "I1", INC_AT, severity, unit="u-nat", deaths=12)])
    assert ("press_conference_24h:I1" in ids(led)) is opens
    if opens:
        assert must(led, "press_conference_24h:I1").due_at == ts("2026-03-02T10:00:00+08:00")


def test_national_pack_posts_documents_within_20_working_days(
    units_book: Callable[..., RuleBook],
) -> None:
    led = ledger(units_book([{"id": "u-nat", "pack": "national"}]))
    feed(led, [issued("iss", "D1", "2026-03-02", unit="u-nat")])
    assert ids(led) == {"online_posting_20wd:D1"}
    assert must(led, "online_posting_20wd:D1").due_at == end_of("2026-03-30")


@pytest.mark.parametrize("severity", ["III", "IV"])
def test_first_release_only_for_severity_i_and_ii(severity: str) -> None:
    led = ledger()
    feed(led, [incident("inc", "I1", INC_AT, severity)])
    assert "first_release_5h:I1" not in ids(led)


@pytest.mark.parametrize("disclosure", ["on_application", "not_disclosed"])
def test_document_not_proactive_opens_nothing(disclosure: str) -> None:
    led = ledger()
    assert feed(led, [issued("iss", "D1", "2026-03-02", disclosure)]) == []
    assert ids(led) == set()


@pytest.mark.parametrize(
    ("published", "status"),
    [
        ("2026-03-02T08:00:00+08:00", "met"),  # released together, a little earlier
        ("2026-03-02T23:59:59+08:00", "met"),
        ("2026-03-02", "met"),
        ("2026-03-03T00:00:00+08:00", "late"),
        ("2026-03-03", "late"),
    ],
)
def test_interpretation_same_day(published: str, status: str) -> None:
    led = ledger()
    feed(led, [pub("pol", "2026-03-02T09:00:00+08:00", "policy", document_id="D1")])
    feed(led, [pub("int", published, "interpretation", document_id="D1")])
    ob = must(led, "interpretation_same_day:D1")
    assert (ob.status, ob.fulfilled_by) == (status, "int")


def test_policy_without_document_ref_opens_no_interpretation_duty() -> None:
    led = ledger()
    feed(led, [pub("pol", "2026-03-02T09:00:00+08:00", "policy")])
    assert not any(ob.rule.id == "interpretation_same_day" for ob in led.obligations())


@pytest.mark.parametrize(
    ("published", "status"),
    [
        ("2026-03-05T23:59:59+08:00", "met"),  # Mon 03-02 + 3 WD = Thu 03-05
        ("2026-03-05", "met"),
        ("2026-03-06T00:00:01+08:00", "late"),
    ],
)
def test_zhengzhou_interpretation_within_3_working_days(
    units_book: Callable[..., RuleBook], published: str, status: str
) -> None:
    led = ledger(units_book([{"id": "u-zz", "pack": "zhengzhou"}]))
    feed(led, [pub("pol", "2026-03-02T09:00:00+08:00", "policy", unit="u-zz", document_id="D1")])
    assert "interpretation_same_day:D1" not in ids(led)
    ob = must(led, "interpretation_3wd:D1")
    assert ob.due_at == end_of("2026-03-05")
    feed(led, [pub("int", published, "interpretation", unit="u-zz", document_id="D1")])
    assert (ob.status, ob.fulfilled_by) == (status, "int")


def test_opinion_response_not_for_rumours_and_rebuttal_only_for_rumours() -> None:
    led = ledger()
    feed(led, [opinion("o1", "O1", "2026-03-01T11:00:00+08:00", "rumor")])
    feed(led, [opinion("o2", "O2", "2026-03-01T11:00:00+08:00", "policy")])
    assert ids(led) == {"rumor_rebuttal:O1", "opinion_response_48h:O2"}


@pytest.mark.parametrize("opinion_first", [False, True], ids=["incident-first", "opinion-first"])
def test_major_incident_opinion_in_either_order(opinion_first: bool) -> None:
    op = opinion("op", "O1", "2026-03-01T12:00:00+08:00", "emergency", incident_id="I1")
    inc = incident("inc", "I1", INC_AT, "I")
    led = ledger()
    feed(led, [op, inc] if opinion_first else [inc, op])
    assert must(led, "opinion_major_5h:O1").due_at == ts("2026-03-01T17:00:00+08:00")
    assert must(led, "opinion_major_24h:O1").due_at == ts("2026-03-02T12:00:00+08:00")
    assert must(led, "opinion_response_48h:O1").due_at == ts("2026-03-03T12:00:00+08:00")


@pytest.mark.parametrize("opinion_first", [False, True], ids=["incident-first", "opinion-first"])
def test_no_major_opinion_duty_for_a_severity_iii_incident(opinion_first: bool) -> None:
    op = opinion("op", "O1", "2026-03-01T12:00:00+08:00", "emergency", incident_id="I1")
    inc = incident("inc", "I1", INC_AT, "III")
    led = ledger()
    feed(led, [op, inc] if opinion_first else [inc, op])
    assert ids(led) == {"opinion_response_48h:O1"}


def test_no_major_opinion_duty_without_the_incident() -> None:
    led = ledger()
    feed(led, [opinion("op", "O1", "2026-03-01T12:00:00+08:00", "emergency", incident_id="I1")])
    assert ids(led) == {"opinion_response_48h:O1"}


# --- annual reports ----------------------------------------------------------------------------

UNITS = [
    {"id": "u-dept", "pack": "default"},
    {"id": "u-gov", "pack": "default", "kind": "government"},
    {"id": "u-county", "pack": "default", "kind": "county_government"},
    {"id": "u-nat-county", "pack": "national", "kind": "county_government"},
]


def _across_new_year(led: Ledger) -> list[Effect]:
    before = led.tick(ts("2026-12-31T12:00:00+08:00"))
    assert [f for f in before if f.rule_id == "annual_report"] == []  # 2025's are past due
    return led.tick(ts("2027-01-01T00:00:01+08:00"))


@pytest.mark.parametrize(
    ("unit", "due"),
    [
        ("u-dept", "2027-01-31"),
        ("u-gov", "2027-03-31"),
        ("u-county", "2027-02-20"),
        ("u-nat-county", "2027-03-31"),
    ],
)
def test_annual_report_opens_on_new_year_per_unit_kind(
    units_book: Callable[..., RuleBook], unit: str, due: str
) -> None:
    led = ledger(units_book(UNITS))
    fx = _across_new_year(led)
    ob_id = f"annual_report:{unit}/2026"
    assert [f.due_at for f in fx if f.kind == "opened" and f.obligation_id == ob_id] == [
        end_of(due)
    ]
    ob = must(led, ob_id)
    assert (ob.status, ob.unit, ob.due_at) == ("pending", unit, end_of(due))


def test_annual_report_for_a_unit_seen_in_events() -> None:
    led = ledger()
    feed(led, [issued("iss", "D1", "2026-06-01", unit="jiaoyu-ju")])
    fx = _across_new_year(led)
    assert "annual_report:jiaoyu-ju/2026" in {f.obligation_id for f in fx if f.kind == "opened"}


def test_annual_report_for_units_first_seen_after_new_year(
    units_book: Callable[..., RuleBook],
) -> None:
    """A ledger started on 5 January still owes this year's reports; a unit first seen after
    its deadline is not judged on it, one whose deadline is ahead is."""
    led = ledger(units_book([{"id": "u-dept", "pack": "default"}]))
    fx = led.tick(ts("2027-01-05T08:00:00+08:00"))
    assert [(f.kind, f.obligation_id) for f in fx] == [("opened", "annual_report:u-dept/2026")]
    feed(led, [issued("a", "D1", "2027-02-09", unit="late-dept")])
    feed(led, [org_changed("b", "C1", "2027-02-09")])  # unit u1
    fx = led.tick(ts("2027-02-10T08:00:00+08:00"))
    assert [f.obligation_id for f in fx if f.rule_id == "annual_report"] == [
        "annual_report:u-dept/2026"  # its breach; nothing opened for late-dept or u1
    ]
    assert fx[0].kind == "breached"
    assert not any(
        ob.unit in ("late-dept", U) for ob in led.obligations() if ob.rule.id == "annual_report"
    )


def test_annual_report_deadline_ahead_for_a_government_seen_late(
    units_book: Callable[..., RuleBook],
) -> None:
    led = ledger(units_book([{"id": "u-gov", "pack": "default", "kind": "government"}]))
    led.tick(ts("2027-02-10T08:00:00+08:00"))
    assert must(led, "annual_report:u-gov/2026").due_at == end_of("2027-03-31")


def test_annual_report_met_by_this_years_report_only(units_book: Callable[..., RuleBook]) -> None:
    led = ledger(units_book(UNITS))
    old = pub("old", "2026-12-20T10:00:00+08:00", "annual_report", unit="u-dept")
    other = pub("other", "2027-01-10T10:00:00+08:00", "annual_report", unit="u-gov")
    feed(led, [old, other])
    _across_new_year(led)
    ob = must(led, "annual_report:u-dept/2026")
    assert (ob.status, ob.fulfilled_by) == ("pending", None)
    fx = feed(led, [pub("new", "2027-01-20T10:00:00+08:00", "annual_report", unit="u-dept")])
    assert kinds(fx, ob.id) == ["met"]
    assert (ob.status, ob.fulfilled_by) == ("met", "new")


def test_annual_report_breached_after_its_day(units_book: Callable[..., RuleBook]) -> None:
    led = ledger(units_book(UNITS))
    _across_new_year(led)
    fx = led.tick(ts("2027-02-01T00:00:00+08:00"))
    assert kinds(fx, "annual_report:u-dept/2026") == ["breached"]
    assert kinds(fx, "annual_report:u-gov/2026") == []


def test_trigger_in_another_offset_counts_the_shanghai_date() -> None:
    led = ledger()
    # 2026-03-06T20:00Z is Saturday 03-07 04:00 in Shanghai: 10 WD -> Fri 03-20 (not Thu 03-19).
    feed(led, [issued("iss", "D1", "2026-03-06T20:00:00Z")])
    assert must(led, "online_posting_10wd:D1").due_at == end_of("2026-03-20")
    feed(led, [pub("pol", "2026-03-02T17:00:00Z", "policy", document_id="D2")])
    assert must(led, "interpretation_same_day:D2").due_at == end_of("2026-03-03")


def test_trigger_arriving_after_its_deadline_is_opened_then_breached() -> None:
    led = ledger()
    led.tick(ts("2026-03-02T00:00:00+08:00"))
    fx = feed(led, [incident("inc", "I1", INC_AT, "II")])
    assert [(f.kind, f.due_at) for f in fx] == [("opened", ts("2026-03-01T15:00:00+08:00"))]
    fx = led.tick(ts("2026-03-02T00:01:00+08:00"))
    assert [(f.kind, f.obligation_id) for f in fx] == [("breached", FR)]


def test_news_naming_a_policy_does_not_withdraw_its_interpretation_duty() -> None:
    led = ledger()
    feed(led, [pub("pol", "2026-03-02T09:00:00+08:00", "policy", document_id="D1")])
    fx = feed(led, [pub("news", "2026-03-02T10:00:00+08:00", "news", document_id="D1")])
    assert fx == []
    assert must(led, "interpretation_same_day:D1").status == "pending"
    fx = led.tick(end_of("2026-03-02") + 1)
    assert kinds(fx, "interpretation_same_day:D1") == ["breached"]


# --- 2. application clock ----------------------------------------------------------------------

APP = "application_reply_20wd:A1"
RCV = received("rcv", "A1", "2026-03-02")  # due end of 2026-03-30


def test_correction_pauses_then_restarts_from_the_corrected_day() -> None:
    led = ledger()
    feed(led, [RCV])
    fx = feed(led, [step("correction_requested", "cr", "A1", "2026-03-04")])
    assert kinds(fx, APP) == ["paused"]
    assert must(led, APP).status == "paused"
    fx = feed(led, [step("corrected", "co", "A1", "2026-03-10")])
    assert kinds(fx, APP) == ["restarted"]
    ob = must(led, APP)
    assert (ob.status, ob.due_at) == ("pending", end_of("2026-04-08"))  # over Qingming (Apr 6)


def test_paused_application_is_not_breached() -> None:
    led = ledger()
    feed(led, [RCV, step("correction_requested", "cr", "A1", "2026-03-04")])
    assert led.tick(ts("2026-06-01T00:00:00+08:00")) == []
    assert must(led, APP).status == "paused"


def test_consultation_adds_its_working_days() -> None:
    led = ledger()
    feed(led, [RCV])
    fx = feed(led, [step("consultation_started", "cs", "A1", "2026-03-05")])
    assert kinds(fx, APP) == ["paused"]
    fx = feed(led, [step("consultation_ended", "ce", "A1", "2026-03-11")])
    assert kinds(fx, APP) == ["resumed"]
    # (Thu 03-05, Wed 03-11] holds 4 working days: 03-30 + 4 WD = Fri 04-03.
    ob = must(led, APP)
    assert (ob.status, ob.due_at) == ("pending", end_of("2026-04-03"))


def test_extension_adds_working_days_and_only_once() -> None:
    led = ledger()
    feed(led, [RCV])
    fx = feed(led, [step("extended", "x1", "A1", "2026-03-20", working_days=20)])
    assert kinds(fx, APP) == ["extended"]
    assert must(led, APP).due_at == end_of("2026-04-28")
    fx = feed(led, [step("extended", "x2", "A1", "2026-04-20", working_days=5)])
    assert kinds(fx, APP) == ["rejected"]
    assert fx[0].event_id == "x2"
    assert must(led, APP).due_at == end_of("2026-04-28")


def test_reply_fulfils_the_extended_application() -> None:
    led = ledger()
    feed(led, [RCV, step("extended", "x1", "A1", "2026-03-20", working_days=20)])
    fx = feed(led, [pub("rep", "2026-04-20T10:00:00+08:00", "reply", application_id="A1")])
    assert kinds(fx, APP) == ["met"]
    assert must(led, APP).fulfilled_by == "rep"
    assert led.tick(ts("2026-05-01T00:00:00+08:00")) == []


def test_extension_after_breach_reopens_the_window() -> None:
    led = ledger()
    feed(led, [RCV])
    assert kinds(led.tick(end_of("2026-03-30") + 1), APP) == ["breached"]
    feed(led, [step("extended", "x1", "A1", "2026-03-25", working_days=20)])
    ob = must(led, APP)
    assert ob.due_at == end_of("2026-04-28")
    feed(led, [pub("rep", "2026-04-20T10:00:00+08:00", "reply", application_id="A1")])
    assert ob.status == "met"


CLOCK_HISTORIES = {
    "extension": (
        [RCV, step("extended", "x1", "A1", "2026-03-20", working_days=20)],
        end_of("2026-04-28"),
    ),
    "consultation+extension": (
        [
            RCV,
            step("consultation_started", "cs", "A1", "2026-03-05"),
            step("consultation_ended", "ce", "A1", "2026-03-11"),
            step("extended", "x1", "A1", "2026-03-20", working_days=2),
        ],
        end_of("2026-04-08"),  # 03-30 + 4 WD = 04-03, + 2 WD = 04-08 (04-06 is Qingming)
    ),
    "correction+two extensions": (
        [
            RCV,
            step("correction_requested", "cr", "A1", "2026-03-04"),
            step("corrected", "co", "A1", "2026-03-10"),
            step("extended", "x1", "A1", "2026-03-20", working_days=1),
            step("extended", "x2", "A1", "2026-03-25", working_days=20),
        ],
        end_of("2026-04-09"),  # 04-08 + 1 WD; the second extension is rejected
    ),
}


@pytest.mark.parametrize("name", list(CLOCK_HISTORIES))
def test_clock_events_in_any_arrival_order_give_the_same_deadline(name: str) -> None:
    events, due = CLOCK_HISTORIES[name]
    for order in itertools.permutations(events):
        led = ledger()
        feed(led, order)
        ob = must(led, APP)
        assert (ob.status, ob.due_at) == ("pending", due), [e.event_id for e in order]


def test_clock_event_before_its_application_is_in_the_timeline() -> None:
    led = ledger()
    feed(led, [step("extended", "x1", "A1", "2026-03-20", working_days=20), RCV])
    ob = must(led, APP)
    assert ob.due_at == end_of("2026-04-28")
    entries = [(at, kind, eid) for at, kind, eid, _ in ob.full_timeline()]
    assert entries == [
        (ts("2026-03-02T00:00:00+08:00"), "opened", "rcv"),
        (ts("2026-03-20T00:00:00+08:00"), "extended", "x1"),
    ]


# --- 3. out of order and idempotency -----------------------------------------------------------


def test_publication_before_trigger_is_met_when_trigger_arrives() -> None:
    led = ledger()
    early = pub("p1", "2026-03-01T12:00:00+08:00", "press_release", incident_id="I1")
    assert feed(led, [early]) == []
    fx = feed(led, [incident("inc", "I1", INC_AT, "II")])
    assert kinds(fx, FR) == ["opened", "met"]
    assert (must(led, FR).status, must(led, FR).fulfilled_by) == ("met", "p1")


@pytest.mark.parametrize(
    "events",
    [
        [incident("inc", "I1", INC_AT, "II", deaths=12)],
        [opinion("op", "O1", "2026-03-01T12:00:00+08:00", "emergency", incident_id="I1")],
        [pub("p1", "2026-03-01T12:00:00+08:00", "press_release", incident_id="I1")],
        [pub("p2", "2026-03-01T12:00:00+08:00", "update", incident_id="I1", opinion_id="O1")],
    ],
    ids=["incident", "opinion", "publication", "publication-two-refs"],
)
def test_same_event_twice_counts_once(events: list[Event]) -> None:
    base = [
        incident("inc", "I1", INC_AT, "II", deaths=12),
        opinion("op", "O1", "2026-03-01T12:00:00+08:00", "emergency", incident_id="I1"),
    ]
    led = ledger()
    feed(led, [e for e in base if e not in events])
    first = feed(led, events)
    assert first, "the first delivery must have an effect"
    before = {(o.id, o.status, o.due_at, o.fulfilled_by) for o in led.obligations()}
    assert feed(led, events) == []
    assert led.duplicates == len(events)
    assert {(o.id, o.status, o.due_at, o.fulfilled_by) for o in led.obligations()} == before


def test_repeated_extension_extends_once() -> None:
    led = ledger()
    x = step("extended", "x1", "A1", "2026-03-20", working_days=20)
    feed(led, [RCV, x])
    assert feed(led, [x]) == []
    assert led.duplicates == 1
    assert must(led, APP).due_at == end_of("2026-04-28")


@pytest.mark.parametrize(
    ("published", "status", "timeline"),
    [
        ("2026-03-01T14:59:00+08:00", "met", ["opened", "met", "breached"]),
        ("2026-03-01T16:00:00+08:00", "late", ["opened", "breached", "late"]),
    ],
)
def test_fulfilment_by_published_at_not_arrival(
    published: str, status: str, timeline: list[str]
) -> None:
    led = ledger()
    feed(led, [incident("inc", "I1", INC_AT, "II")])
    due = ts("2026-03-01T15:00:00+08:00")
    breach = [f for f in led.tick(due + 3 * HOUR) if f.obligation_id == FR]
    assert [(f.kind, f.at, f.detected_at) for f in breach] == [("breached", due, due + 3 * HOUR)]
    assert must(led, FR).status == "missed"
    fx = feed(led, [pub("p1", published, "press_release", incident_id="I1")])
    assert kinds(fx, FR) == [status]
    ob = must(led, FR)
    assert (ob.status, ob.fulfilled_by, ob.fulfilled_at) == (status, "p1", ts(published))
    # The breach that was reported stays on the record, in time order.
    assert [k for _, k, _, _ in ob.full_timeline()] == timeline


def test_earliest_trigger_sets_the_window_whatever_the_arrival_order() -> None:
    """A policy published on two channels: the interpretation is due the day of the first."""
    portal = pub("portal", "2026-03-02T09:00:00+08:00", "policy", document_id="D1")
    wechat = pub("wechat", "2026-03-03T09:00:00+08:00", "policy", document_id="D1")
    interp = pub("int", "2026-03-03T10:00:00+08:00", "interpretation", document_id="D1")
    results = set()
    for order in itertools.permutations([portal, wechat, interp]):
        led = ledger()
        feed(led, order)
        ob = must(led, "interpretation_same_day:D1")
        results.add((ob.opened_at, ob.due_at, ob.status))
    assert results == {(ts("2026-03-02T09:00:00+08:00"), end_of("2026-03-02"), "late")}


# --- 4. date-only publications -----------------------------------------------------------------


@pytest.mark.parametrize(
    ("occurred", "published", "status"),
    [
        (INC_AT, "2026-03-01", "unverifiable"),  # same day, maybe after 15:00
        (INC_AT, "2026-03-02", "late"),
        (INC_AT, "2026-02-28", "met"),  # the whole day is before the deadline
        ("2026-03-01T22:00:00+08:00", "2026-03-01", "met"),  # due 03:00 next day
        ("2026-03-01T22:00:00+08:00", "2026-03-02", "unverifiable"),
        ("2026-03-01T22:00:00+08:00", "2026-03-03", "late"),
    ],
)
def test_date_only_publication_against_an_hour_window(
    occurred: str, published: str, status: str
) -> None:
    led = ledger()
    feed(led, [incident("inc", "I1", occurred, "II")])
    fx = feed(led, [pub("p1", published, "press_release", incident_id="I1")])
    assert kinds(fx, FR) == [status]
    assert must(led, FR).status == status


def test_unverifiable_is_upgraded_by_a_timed_publication_in_time() -> None:
    led = ledger()
    feed(led, [incident("inc", "I1", INC_AT, "II")])
    feed(led, [pub("p1", "2026-03-01", "press_release", incident_id="I1")])
    fx = feed(led, [pub("p2", "2026-03-01T14:00:00+08:00", "update", incident_id="I1")])
    assert kinds(fx, FR) == ["met"]
    assert (must(led, FR).status, must(led, FR).fulfilled_by) == ("met", "p2")


def test_unverifiable_obligation_is_not_breached() -> None:
    led = ledger()
    feed(led, [incident("inc", "I1", INC_AT, "II")])
    feed(led, [pub("p1", "2026-03-01", "press_release", incident_id="I1")])
    assert kinds(led.tick(ts("2026-03-02T00:00:00+08:00")), FR) == []


@pytest.mark.parametrize(("published", "status"), [("2026-03-04", "met"), ("2026-03-05", "late")])
def test_date_only_publication_against_a_working_day_window(published: str, status: str) -> None:
    led = ledger()
    feed(led, [issued("iss", "D1", "2026-02-12")])
    feed(led, [pub("p1", published, "document", document_id="D1")])
    assert must(led, "online_posting_10wd:D1").status == status


# --- 5. warnings -------------------------------------------------------------------------------

T = ts(INC_AT)
DUE = T + 5 * HOUR


def _opened() -> Ledger:
    led = ledger()
    feed(led, [incident("inc", "I1", INC_AT, "II")])
    assert ids(led) == {FR}
    return led


def test_warnings_then_breach() -> None:
    led = _opened()
    assert led.next_due() == T + 9000
    fx = led.tick(T + 9000)
    assert [(f.kind, f.at) for f in fx] == [("warned", T + 9000)]
    assert led.tick(T + 9000) == []
    assert led.next_due() == T + 4 * HOUR
    fx = led.tick(T + 4 * HOUR)
    assert [(f.kind, f.at) for f in fx] == [("warned", T + 4 * HOUR)]
    assert led.next_due() == DUE + 1
    assert led.tick(DUE) == []  # due_at itself is still in time
    fx = led.tick(DUE + 1)
    assert [(f.kind, f.at, f.status) for f in fx] == [("breached", DUE, "missed")]
    assert led.tick(DUE + 10 * HOUR) == []


def test_one_tick_past_both_warning_points_warns_once() -> None:
    led = _opened()
    fx = led.tick(T + 4 * HOUR + 60)
    assert [(f.kind, f.at) for f in fx] == [("warned", T + 4 * HOUR)]
    assert "folded" in fx[0].detail
    assert led.tick(T + 4 * HOUR + 120) == []


def test_one_tick_past_due_only_breaches() -> None:
    led = _opened()
    fx = led.tick(DUE + 60)
    assert [(f.kind, f.at, f.detected_at) for f in fx] == [("breached", DUE, DUE + 60)]


def test_met_obligation_never_warns_or_breaches() -> None:
    led = _opened()
    feed(led, [pub("p1", "2026-03-01T11:00:00+08:00", "press_release", incident_id="I1")])
    for now in (T + 9000, T + 4 * HOUR, DUE + 1, DUE + 48 * HOUR):
        assert led.tick(now) == []
    assert must(led, FR).status == "met"


def test_met_obligation_leaves_nothing_to_wake_for() -> None:
    led = _opened()
    feed(led, [pub("p1", "2026-03-01T11:00:00+08:00", "press_release", incident_id="I1")])
    assert led.next_due() is None


def test_met_between_warnings_stops_the_rest() -> None:
    led = _opened()
    assert kinds(led.tick(T + 9000)) == ["warned"]
    feed(led, [pub("p1", "2026-03-01T13:00:00+08:00", "press_release", incident_id="I1")])
    assert led.tick(DUE + 1) == []


def test_working_day_window_warns_at_nine_on_the_last_day() -> None:
    led = ledger()
    feed(led, [issued("iss", "D1", "2026-02-12")])
    assert led.next_due() == ts("2026-03-04T09:00:00+08:00")
    fx = led.tick(ts("2026-03-04T09:30:00+08:00"))
    assert [(f.kind, f.at) for f in fx] == [("warned", ts("2026-03-04T09:00:00+08:00"))]


# --- 6. incident updates -----------------------------------------------------------------------


def test_upgrade_opens_with_the_window_from_occurred_at() -> None:
    led = ledger()
    feed(led, [incident("inc", "I1", INC_AT, "III")])
    assert ids(led) == set()
    fx = feed(led, [incident("upd", "I1", INC_AT, "II", updated=True)])
    assert [(f.kind, f.obligation_id, f.due_at) for f in fx] == [("opened", FR, DUE)]


def test_downgrade_cancels_a_pending_obligation() -> None:
    led = ledger()
    feed(led, [incident("inc", "I1", INC_AT, "II")])
    fx = feed(led, [incident("upd", "I1", INC_AT, "III", updated=True)])
    assert kinds(fx, FR) == ["cancelled"]
    assert must(led, FR).status == "cancelled"
    assert led.tick(DUE + 1) == []
    fx = feed(led, [pub("p1", "2026-03-01T11:00:00+08:00", "press_release", incident_id="I1")])
    assert must(led, FR).status == "cancelled"


def test_downgrade_cancels_even_a_met_obligation_and_keeps_the_record() -> None:
    # The final facts decide whether the duty applied at all; otherwise the outcome would
    # depend on whether the release arrived before or after the downgrade.
    led = ledger()
    feed(led, [incident("inc", "I1", INC_AT, "II")])
    feed(led, [pub("p1", "2026-03-01T11:00:00+08:00", "press_release", incident_id="I1")])
    led.tick(ts("2026-03-01T12:00:00+08:00"))  # the update arrives at noon
    feed(led, [incident("upd", "I1", INC_AT, "III", updated=True)])
    ob = must(led, FR)
    assert ob.status == "cancelled"
    assert ob.full_timeline()[-1][0] == ts("2026-03-01T12:00:00+08:00")
    assert [k for _, k, _, _ in ob.full_timeline()] == ["opened", "met", "cancelled"]
    assert ob.fulfilled_by == "p1"


def test_re_upgrade_reopens() -> None:
    led = ledger()
    feed(led, [incident("inc", "I1", INC_AT, "II")])
    feed(led, [incident("upd", "I1", INC_AT, "III", updated=True)])
    fx = feed(led, [incident("upd2", "I1", INC_AT, "I", updated=True)])
    assert kinds(fx, FR) == ["reopened"]
    assert (must(led, FR).status, must(led, FR).due_at) == ("pending", DUE)


@pytest.mark.parametrize(
    ("update", "report", "expected"),
    [
        ("II", "III", {FR}),
        ("III", "II", set()),
    ],
)
def test_update_before_report_is_not_overwritten(
    update: str, report: str, expected: set[str]
) -> None:
    led = ledger()
    feed(led, [incident("upd", "I1", INC_AT, update, updated=True)])
    feed(led, [incident("inc", "I1", INC_AT, report)])
    assert {o.id for o in led.obligations() if o.status != "cancelled"} == expected
    assert {f.obligation_id for f in led.tick(DUE + 1) if f.kind == "breached"} == expected


def test_update_correcting_occurred_at_moves_the_deadline() -> None:
    led = ledger()
    feed(led, [incident("inc", "I1", INC_AT, "II")])
    fx = feed(led, [incident("upd", "I1", "2026-03-01T08:00:00+08:00", "II", updated=True)])
    assert [(f.kind, f.due_at) for f in fx if f.obligation_id == FR] == [
        ("rescheduled", ts("2026-03-01T13:00:00+08:00"))
    ]


# --- 7. calendar -------------------------------------------------------------------------------


def _days(*spans: tuple[str, str]) -> frozenset[date]:
    out: set[date] = set()
    for first, last in spans:
        a, b = date.fromisoformat(first).toordinal(), date.fromisoformat(last).toordinal()
        out.update(date.fromordinal(o) for o in range(a, b + 1))
    return frozenset(out)


#: An illustrative 2027 table (docs/calendar.md's example, not the real notice).
TABLE_2027 = CalendarYear(
    year=2027,
    holidays=_days(("2027-01-01", "2027-01-03"), ("2027-02-05", "2027-02-13")),
    workdays=frozenset({date(2027, 1, 31), date(2027, 2, 20)}),
    source="test example",
)


def test_window_into_an_unknown_year_is_assumed_then_recomputed() -> None:
    led = ledger()
    # Issued Fri 2027-01-29: assumed 10 WD = Feb 1-5, 8-12 -> Fri 02-12.
    # With the table: Sun 01-31 (make-up), Feb 1-4, then the break; Feb 15-19 -> Fri 02-19.
    feed(led, [issued("iss", "D1", "2027-01-29")])
    ob = must(led, "online_posting_10wd:D1")
    assert (ob.due_at, ob.calendar_assumed) == (end_of("2027-02-12"), True)
    fx = led.set_calendar(CAL.with_years([TABLE_2027]))
    assert [(f.kind, f.obligation_id, f.due_at) for f in fx] == [
        ("rescheduled", ob.id, end_of("2027-02-19"))
    ]
    assert (ob.due_at, ob.calendar_assumed) == (end_of("2027-02-19"), False)
    assert led.next_due() == ts("2027-02-19T09:00:00+08:00")


def test_window_from_2026_into_2027_loses_the_flag_even_if_the_day_stays() -> None:
    led = ledger()
    feed(led, [issued("iss", "D1", "2026-12-28")])  # 12-29..31, 01-04..08, 01-11..12
    ob = must(led, "online_posting_10wd:D1")
    assert (ob.due_at, ob.calendar_assumed) == (end_of("2027-01-12"), True)
    fx = led.set_calendar(CAL.with_years([TABLE_2027]))
    assert kinds(fx, ob.id) == ["rescheduled"]
    assert (ob.due_at, ob.calendar_assumed) == (end_of("2027-01-12"), False)


def test_calendar_reload_leaves_known_year_obligations_alone() -> None:
    led = ledger()
    feed(led, [issued("iss", "D1", "2026-03-02")])
    assert must(led, "online_posting_10wd:D1").calendar_assumed is False
    assert led.set_calendar(CAL.with_years([TABLE_2027])) == []


def test_calendar_reload_can_turn_met_into_late_or_back() -> None:
    led = ledger()
    feed(led, [issued("iss", "D1", "2027-01-29")])
    feed(led, [pub("p1", "2027-02-18T10:00:00+08:00", "document", document_id="D1")])
    ob = must(led, "online_posting_10wd:D1")
    assert ob.status == "late"  # assumed deadline 02-12
    fx = led.set_calendar(CAL.with_years([TABLE_2027]))
    assert kinds(fx, ob.id) == ["rescheduled", "met"]
    assert ob.status == "met"


# --- 8. timeline -------------------------------------------------------------------------------


def test_timeline_of_an_incident_obligation() -> None:
    led = _opened()
    led.tick(T + 9000)
    feed(led, [pub("p1", "2026-03-01T13:00:00+08:00", "press_release", incident_id="I1")])
    entries = [(at, kind, eid) for at, kind, eid, _ in must(led, FR).full_timeline()]
    assert entries == [
        (T, "opened", "inc"),
        (T + 9000, "warned", None),
        (ts("2026-03-01T13:00:00+08:00"), "met", "p1"),
    ]


def test_timeline_of_an_application() -> None:
    led = ledger()
    feed(
        led,
        [
            RCV,
            step("correction_requested", "cr", "A1", "2026-03-04"),
            step("corrected", "co", "A1", "2026-03-10"),
            step("extended", "x1", "A1", "2026-03-20", working_days=20),
            step("extended", "x2", "A1", "2026-03-25", working_days=20),
            pub("rep", "2026-04-20T10:00:00+08:00", "reply", application_id="A1"),
        ],
    )
    entries = [(at, kind, eid) for at, kind, eid, _ in must(led, APP).full_timeline()]
    day = "T00:00:00+08:00"
    assert entries == [
        (ts("2026-03-02" + day), "opened", "rcv"),
        (ts("2026-03-04" + day), "paused", "cr"),
        (ts("2026-03-10" + day), "restarted", "co"),
        (ts("2026-03-20" + day), "extended", "x1"),
        (ts("2026-03-25" + day), "rejected", "x2"),
        (ts("2026-04-20T10:00:00+08:00"), "met", "rep"),
    ]


def test_timeline_records_breach_then_late_fulfilment() -> None:
    led = _opened()
    led.tick(DUE + 1)
    feed(led, [pub("p1", "2026-03-01T18:00:00+08:00", "update", incident_id="I1")])
    entries = [(at, kind, eid) for at, kind, eid, _ in must(led, FR).full_timeline()]
    assert entries == [
        (T, "opened", "inc"),
        (DUE, "breached", None),
        (DUE + 3 * HOUR, "late", "p1"),
    ]
