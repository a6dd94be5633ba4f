"""Properties of the ledger over random, realistic event histories (Hypothesis).

A history draws a few incidents, documents, decisions, organisational changes, applications
with their clock steps, opinions and publications that reference any of them (with exact times
or bare dates), from three units on three packs, around a base day in March, late September
(National Day) or mid-December (the window runs into 2027, which has no holiday table).
"""

from __future__ import annotations

import itertools
from collections.abc import Callable, Iterable
from datetime import datetime, timedelta, timezone
from typing import Any

from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from config.packs import load_rulebook
from deadlines.calendar import WorkCalendar
from deadlines.ledger import Ledger
from deadlines.obligations import Effect
from deadlines.rules import RuleBook, UnitConfig
from schemas.events import Event, parse_event

CST = timezone(timedelta(hours=8))
DAY = 86_400
_BUNDLED = load_rulebook()
BOOK = RuleBook(
    packs=_BUNDLED.packs,
    default_pack="default",
    units={
        "u-nat": UnitConfig(id="u-nat", pack="national", kind="county_government"),
        "u-zz": UnitConfig(id="u-zz", pack="zhengzhou", kind="government"),
    },
)
CAL = WorkCalendar.official()
UNITS = ("u1", "u-nat", "u-zz")
BASES = tuple(
    int(datetime(y, m, d, tzinfo=CST).timestamp())
    for y, m, d in ((2026, 3, 2), (2026, 9, 21), (2026, 12, 14))
)
PUB_KINDS = (
    "press_release",
    "press_conference",
    "update",
    "document",
    "policy",
    "interpretation",
    "power_list",
    "decision_publicity",
    "reply",
    "response",
    "rebuttal",
    "annual_report",
    "news",
)
REF_CHOICES = {
    "incident_id": ("I1", "I2"),
    "document_id": ("D1", "D2"),
    "decision_id": ("X1",),
    "application_id": ("A1",),
    "opinion_id": ("O1", "O2"),
    "change_id": ("C1",),
}
#: The refs a publication of each kind usually carries.
KIND_REFS: dict[str, tuple[str, ...]] = {
    "press_release": ("incident_id", "opinion_id"),
    "press_conference": ("incident_id",),
    "update": ("incident_id", "opinion_id"),
    "document": ("document_id",),
    "policy": ("document_id",),
    "interpretation": ("document_id",),
    "power_list": ("change_id",),
    "decision_publicity": ("decision_id",),
    "reply": ("application_id",),
    "response": ("opinion_id",),
    "rebuttal": ("opinion_id",),
    "annual_report": (),
    "news": (),
}
FULFILLED = {"met", "late", "unverifiable"}

PROPS = settings(
    deadline=None,
    max_examples=120,
    suppress_health_check=[HealthCheck.too_slow, HealthCheck.data_too_large],
)

Snapshot = set[tuple[str, str, int, str | None]]


# --- history strategy --------------------------------------------------------------------------


def _instant(t: int) -> str:
    return datetime.fromtimestamp(t, tz=CST).isoformat()


def _day(t: int) -> str:
    return datetime.fromtimestamp(t, tz=CST).date().isoformat()


@st.composite
def histories(draw: Callable[..., Any]) -> tuple[int, list[Event]]:
    """(base instant, events in a plausible arrival order) with unique event ids."""
    base: int = draw(st.sampled_from(BASES))
    ids = itertools.count()
    raw: list[dict[str, Any]] = []
    minutes = st.integers(0, 20 * 24 * 60).map(lambda m: base + 60 * m)

    def add(etype: str, unit: str | None = None, **fields: Any) -> None:
        if unit is None:
            unit = draw(st.sampled_from(UNITS))
        raw.append({"type": etype, "event_id": f"e{next(ids)}", "unit": unit, **fields})

    def when(t: int, allow_date: bool = True) -> str:
        return _day(t) if allow_date and draw(st.booleans()) else _instant(t)

    def facts() -> dict[str, Any]:
        out: dict[str, Any] = {"severity": draw(st.sampled_from(("I", "II", "III", "IV")))}
        deaths = draw(st.none() | st.sampled_from((0, 3, 9, 10, 31)))
        injured = draw(st.none() | st.sampled_from((0, 49, 50, 120)))
        if deaths is not None:
            out["deaths"] = deaths
        if injured is not None:
            out["injured"] = injured
        if draw(st.booleans()):
            out["social_impact"] = "significant"
        return out

    for iid in ("I1", "I2"):
        if draw(st.booleans()):
            # One responsible unit per incident (see test_ledger.py on a change of unit).
            unit = draw(st.sampled_from(UNITS))
            occurred = _instant(draw(minutes))
            add(
                "incident.reported",
                unit,
                incident_id=iid,
                occurred_at=occurred,
                title="t",
                **facts(),
            )
            if draw(st.booleans()):
                # An update may correct the time of occurrence as well as the facts.
                if draw(st.booleans()):
                    occurred = _instant(draw(minutes))
                add(
                    "incident.updated",
                    unit,
                    incident_id=iid,
                    occurred_at=occurred,
                    title="t",
                    **facts(),
                )
    for doc in ("D1", "D2"):
        if draw(st.booleans()):
            disclosure = draw(st.sampled_from(("proactive", "proactive", "on_application")))
            add(
                "document.issued",
                document_id=doc,
                issued_at=when(draw(minutes)),
                kind=draw(st.sampled_from(("normative", "policy", "other"))),
                disclosure=disclosure,
                title="t",
            )
    if draw(st.booleans()):
        add("decision.made", decision_id="X1", decided_at=when(draw(minutes)), kind="licensing")
    if draw(st.booleans()):
        add("org.changed", change_id="C1", completed_at=when(draw(minutes)))
    if draw(st.booleans()):
        unit = draw(st.sampled_from(UNITS))
        received = draw(st.integers(0, 10)) * DAY + base
        add("application.received", unit, application_id="A1", received_at=_day(received))
        steps = draw(
            st.lists(
                st.tuples(
                    st.sampled_from(
                        (
                            "correction_requested",
                            "corrected",
                            "consultation_started",
                            "consultation_ended",
                            "extended",
                        )
                    ),
                    st.integers(0, 40),
                    st.integers(1, 20),
                ),
                max_size=5,
            )
        )
        for what, days, wd in steps:
            extra = {"working_days": wd} if what == "extended" else {}
            at = _day(received + days * DAY)
            add(f"application.{what}", unit, application_id="A1", at=at, **extra)
    for oid in ("O1", "O2"):
        if draw(st.booleans()):
            refs = (
                {"incident_id": draw(st.sampled_from(("I1", "I2")))} if draw(st.booleans()) else {}
            )
            add(
                "opinion.detected",
                opinion_id=oid,
                detected_at=_instant(draw(minutes)),
                topic=draw(
                    st.sampled_from(("emergency", "policy", "livelihood", "rumor", "other"))
                ),
                title="t",
                url="https://weibo.example/x",
                refs=refs,
            )
    for _ in range(draw(st.integers(0, 8))):
        kind = draw(st.sampled_from(PUB_KINDS))
        if KIND_REFS[kind] and draw(st.integers(0, 3)):  # mostly the ref the kind is for
            ref_names = [draw(st.sampled_from(KIND_REFS[kind]))]
        else:
            ref_names = draw(
                st.lists(st.sampled_from(sorted(REF_CHOICES)), max_size=2, unique=True)
            )
        refs = {name: draw(st.sampled_from(REF_CHOICES[name])) for name in ref_names}
        n = len(raw)
        add(
            "document.published",
            publication_id=f"p{n}",
            published_at=when(draw(minutes)),
            kind=kind,
            channel="portal",
            url=f"https://gov.example/p{n}",
            refs=refs,
        )
    events = [parse_event(r) for r in raw]
    order = draw(st.permutations(range(len(events))))
    return base, [events[i] for i in order]


# --- helpers -----------------------------------------------------------------------------------


def run(events: Iterable[Event], final_tick: int | None = None) -> Ledger:
    led = Ledger(BOOK, CAL)
    for e in events:
        led.apply(e)
    if final_tick is not None:
        led.tick(final_tick)
    return led


def snapshot(led: Ledger, *, drop_cancelled: bool = False) -> Snapshot:
    return {
        (ob.id, ob.status, ob.due_at, ob.fulfilled_by)
        for ob in led.obligations()
        if not (drop_cancelled and ob.status == "cancelled")
    }


def must_start(led: Ledger, ob_id: str) -> int:
    ob = led.get(ob_id)
    assert ob is not None
    return ob.opened_at


def _end(base: int) -> int:
    return base + 45 * DAY


# --- properties --------------------------------------------------------------------------------


@PROPS
@given(histories())
def test_deadline_is_never_before_the_trigger(history: tuple[int, list[Event]]) -> None:
    base, events = history
    led = run(events, _end(base))
    for ob in led.obligations():
        assert ob.due_at >= ob.opened_at, ob.id
        assert ob.due_at >= ob.start >= ob.opened_at, ob.id


@PROPS
@given(histories())
def test_every_event_twice_is_the_same_as_once(history: tuple[int, list[Event]]) -> None:
    base, events = history
    once, twice = Ledger(BOOK, CAL), Ledger(BOOK, CAL)
    fx_once = [f for e in events for f in once.apply(e)] + once.tick(_end(base))
    fx_twice = [f for e in events for _ in (0, 1) for f in twice.apply(e)]
    fx_twice += twice.tick(_end(base))
    assert fx_twice == fx_once
    assert snapshot(twice) == snapshot(once)
    assert {(o.id, o.calendar_assumed) for o in twice.obligations()} == {
        (o.id, o.calendar_assumed) for o in once.obligations()
    }
    assert twice.duplicates == sum(1 for e in events if once.route(e))


@PROPS
@given(histories(), st.data())
def test_fulfilled_obligations_never_warn_or_breach(
    history: tuple[int, list[Event]], data: st.DataObject
) -> None:
    base, events = history
    led = Ledger(BOOK, CAL)
    fulfilled: set[str] = set()
    now = base - DAY
    for e in events:
        ops: list[Effect] = list(led.apply(e))
        if data.draw(st.booleans()):
            now += data.draw(st.integers(0, 3 * DAY))
            ops += led.tick(now)
        for f in ops:
            if f.kind in ("warned", "breached"):
                assert f.obligation_id not in fulfilled, f
            if f.kind in FULFILLED:
                fulfilled.add(f.obligation_id)
    for f in led.tick(_end(base)):
        assert not (f.kind in ("warned", "breached") and f.obligation_id in fulfilled), f


@PROPS
@given(histories(), st.data())
def test_final_state_does_not_depend_on_arrival_order(
    history: tuple[int, list[Event]], data: st.DataObject
) -> None:
    base, events = history
    other = data.draw(st.permutations(events))
    now = data.draw(st.integers(base, _end(base)))
    a, b = run(events, now), run(other, now)
    # A trigger withdrawn before it was seen opens nothing, one withdrawn after is cancelled:
    # both mean "no duty", so cancelled obligations are left out of the comparison.
    assert snapshot(a, drop_cancelled=True) == snapshot(b, drop_cancelled=True)


@PROPS
@given(histories(), st.lists(st.integers(0, 50 * DAY), min_size=1, max_size=6))
def test_tick_effects_only_concern_points_already_passed(
    history: tuple[int, list[Event]], offsets: list[int]
) -> None:
    base, events = history
    led = run(events)
    for now in sorted(base - DAY + o for o in offsets):
        for f in led.tick(now):
            if f.kind == "breached":
                assert f.at == f.due_at < now, f
            elif f.kind == "warned":
                assert f.at <= now and f.at < f.due_at, f
            else:
                # Time also opens yearly duties (which evidence already seen may fulfil at once).
                assert f.rule_id == "annual_report", f
                assert f.kind in {"opened", *FULFILLED}, f
                assert must_start(led, f.obligation_id) <= now, f
        nxt = led.next_due()
        assert nxt is None or nxt > now


@PROPS
@given(histories())
def test_next_due_is_exact(history: tuple[int, list[Event]]) -> None:
    """Nothing happens before next_due(), and something happens at it (no idle wake-ups)."""
    base, events = history
    led = run(events)
    led.tick(base - DAY)
    for _ in range(40):
        nxt = led.next_due()
        if nxt is None or nxt > _end(base):
            break
        assert led.tick(nxt - 1) == []
        assert led.tick(nxt) != [], nxt


def test_history_strategy_reaches_the_interesting_cases() -> None:
    """Guard against a generator that never opens, fulfils or breaches anything."""
    seen: set[str] = set()

    @settings(max_examples=200, deadline=None, database=None, derandomize=True)
    @given(histories())
    def collect(history: tuple[int, list[Event]]) -> None:
        base, events = history
        led = Ledger(BOOK, CAL)
        for e in events:
            seen.update(f.kind for f in led.apply(e))
        seen.update(f.kind for f in led.tick(_end(base)))
        seen.update("assumed" for ob in led.obligations() if ob.calendar_assumed)

    collect()
    assert {"opened", "met", "late", "breached", "paused", "cancelled", "assumed"} <= seen


@PROPS
@given(histories())
def test_exact_tick_equals_stepping_through_every_wake_up(
    history: tuple[int, list[Event]],
) -> None:
    """One ``tick(now, exact=True)`` judges each wake-up as if the clock had stopped there."""
    base, events = history
    end = _end(base)
    one, many = Ledger(BOOK, CAL), Ledger(BOOK, CAL)
    fx_one = one.tick(base)  # both start watching at the same instant
    fx_many = many.tick(base)
    for e in events:
        fx_one += one.apply(e)
        fx_many += many.apply(e)
    fx_one += one.tick(end, exact=True)
    while (wake := many.next_due()) is not None and wake <= end:
        fx_many += many.tick(wake)
    fx_many += many.tick(end)
    assert sorted(fx_one) == sorted(fx_many)
