"""The obligation ledger: a pure, deterministic state machine.

``Ledger.apply(event)`` and ``Ledger.tick(now)`` return the effects (opened, warned,
breached, met, late, …) of an event or of time passing; ``next_due()`` says when the ledger
next wants to wake. No wall clock and no I/O: time comes only from ``tick(now)`` and from
the events themselves. The module-level :func:`apply` and :func:`tick` give the same in the
``(state, input) -> (state, effects)`` shape; the state is updated in place for speed.

State is kept per *subject*: every identifier an event names (``incident_id=I1``,
``document_id=D7``, ``unit=jiaoyu-ju`` for unit-level duties). An event is applied to each
subject it names, once (idempotent by ``event_id``). A subject remembers the publications
that referenced it, so evidence that arrives before its trigger closes the obligation when
the trigger arrives; fulfilment is judged by ``published_at``, never by arrival.

Times are integer epoch seconds. Deadlines of day windows are the last second (23:59:59,
Asia/Shanghai) of the last day; a publication is in time if ``published_at <= due_at``.
"""

from __future__ import annotations

import heapq
from collections.abc import Callable, Iterator
from dataclasses import dataclass
from datetime import date, datetime
from typing import Any, NamedTuple

from deadlines.calendar import WorkCalendar, day_end, day_of, day_start
from deadlines.rules import Pack, Rule, RuleBook
from deadlines.timefmt import rfc3339
from schemas.events import OWN_REF_FIELDS, TIME_FIELD, Event

# Obligation statuses.
PENDING = "pending"
PAUSED = "paused"
MET = "met"
LATE = "late"
MISSED = "missed"
UNVERIFIABLE = "unverifiable"
CANCELLED = "cancelled"
STATUSES = (PENDING, PAUSED, MET, LATE, MISSED, UNVERIFIABLE, CANCELLED)
OPEN_STATUSES = frozenset({PENDING, PAUSED, MISSED})
FULFILLED_STATUSES = frozenset({MET, LATE, UNVERIFIABLE})

# Effect (and timeline) kinds.
OPENED = "opened"
WARNED = "warned"
BREACHED = "breached"
FULFILLED = {MET: "met", LATE: "late", UNVERIFIABLE: "unverifiable"}
PAUSED_FX = "paused"
RESUMED = "resumed"
RESTARTED = "restarted"
EXTENDED = "extended"
REJECTED = "rejected"
CANCELLED_FX = "cancelled"
REOPENED = "reopened"
RESCHEDULED = "rescheduled"
EFFECT_KINDS = (
    OPENED,
    WARNED,
    BREACHED,
    "met",
    "late",
    "unverifiable",
    PAUSED_FX,
    RESUMED,
    RESTARTED,
    EXTENDED,
    REJECTED,
    CANCELLED_FX,
    REOPENED,
    RESCHEDULED,
)

_INCIDENT_TYPES = frozenset({"incident.reported", "incident.updated"})
_UNIT = "unit"


class Effect(NamedTuple):
    """Something that happened to an obligation; ``key`` is deterministic (idempotent)."""

    kind: str
    obligation_id: str
    rule_id: str
    subject_id: str
    unit: str
    at: int  # when it happened (the warning point or deadline for warned/breached)
    due_at: int
    status: str
    event_id: str | None = None
    detail: str = ""
    detected_at: int | None = None  # for warned/breached: the tick that noticed it

    @property
    def key(self) -> str:
        return f"{self.obligation_id}|{self.kind}|{self.at}|{self.event_id or ''}"


#: One audit entry: (at, kind, event_id, detail).
TimelineEntry = tuple[int, str, str | None, str]
#: One publication remembered by a subject: (published_at, event_id, kind, date_only, url).
Evidence = tuple[int, str, str, bool, str]
#: One clock event remembered by a subject: (at, event_id, type, date_only, working_days).
ClockEvent = tuple[int, str, str, bool, int]


class Obligation:
    """One duty opened by one trigger under one frozen rule version."""

    __slots__ = (
        "calendar_assumed",
        "due_at",
        "fulfilled_at",
        "fulfilled_by",
        "fulfilled_date_only",
        "home",
        "opened_at",
        "opened_by",
        "opened_date_only",
        "rule",
        "start",
        "status",
        "subject_id",
        "timeline",
        "unit",
        "unit_kind",
        "wake",
        "warned_until",
    )

    def __init__(
        self,
        rule: Rule,
        subject_id: str,
        unit: str,
        unit_kind: str,
        home: str,
        opened_at: int,
        opened_date_only: bool,
        opened_by: str,
    ) -> None:
        self.rule = rule
        self.subject_id = subject_id
        self.unit = unit
        self.unit_kind = unit_kind
        self.home = home
        self.opened_at = opened_at
        self.opened_date_only = opened_date_only
        self.opened_by = opened_by
        self.start = opened_at
        self.due_at = opened_at
        self.status = PENDING
        self.fulfilled_at: int | None = None
        self.fulfilled_by: str | None = None
        self.fulfilled_date_only = False
        self.calendar_assumed = False
        self.warned_until = opened_at
        self.wake: int | None = None  # the wheel slot it is filed under, if any
        self.timeline: tuple[TimelineEntry, ...] = ()  # after the opening, oldest first

    @property
    def id(self) -> str:
        return f"{self.rule.id}:{self.subject_id}"

    def log(self, at: int, kind: str, event_id: str | None, detail: str = "") -> None:
        self.timeline += ((at, kind, event_id, detail),)

    def full_timeline(self) -> list[TimelineEntry]:
        """The audit trail, oldest first, including the opening."""
        opened: TimelineEntry = (self.opened_at, OPENED, self.opened_by, "")
        return sorted([opened, *self.timeline], key=lambda e: e[0])  # stable

    def warning_times(self) -> list[int]:
        """The warning points of the current window, in order, strictly inside it."""
        rule, start, due = self.rule, self.start, self.due_at
        out = [start + int((due - start) * f) for f in rule.warn_fractions]
        for b in rule.warn_before:
            out.append(due - b)
        if rule.warn_day_offsets:
            day0 = day_start(day_of(due))
            for o in rule.warn_day_offsets:
                out.append(day0 + o)
        if len(out) > 1:
            out.sort()
        return [t for t in out if start < t < due]

    def next_wake(self) -> int | None:
        """When the sweeper must look at this obligation next (None: nothing to wait for)."""
        if self.status != PENDING:
            return None
        # The earliest warning point after the last one handled, else just past the deadline
        # (the same points as warning_times(), without building the list).
        rule, start, due, after = self.rule, self.start, self.due_at, self.warned_until
        lo = after if after > start else start
        best = due + 1
        for f in rule.warn_fractions:
            t = start + int((due - start) * f)
            if lo < t < best and t < due:
                best = t
        for b in rule.warn_before:
            t = due - b
            if lo < t < best:
                best = t
        if rule.warn_day_offsets:
            day0 = day_start(day_of(due))
            for o in rule.warn_day_offsets:
                t = day0 + o
                if lo < t < best and t < due:
                    best = t
        return best


class Subject:
    """Everything the ledger knows about one identifier."""

    __slots__ = ("clock", "evidence", "facts", "key", "obligations", "seen", "triggers")

    def __init__(self, key: str) -> None:
        self.key = key
        self.seen: tuple[str, ...] = ()  # event ids applied here (few per subject)
        self.facts: Any = None  # the latest incident report/update for incident subjects
        self.triggers: list[Any] | None = None  # triggers whose rules read the facts
        # Tuples, not lists: smaller, and the collector stops tracking tuples of atoms.
        self.evidence: tuple[Evidence, ...] = ()
        self.clock: tuple[ClockEvent, ...] = ()
        self.obligations: list[Obligation] | None = None

    def find(self, rule_id: str, subject_id: str) -> Obligation | None:
        for ob in self.obligations or ():
            if ob.subject_id == subject_id and ob.rule.id == rule_id:
                return ob
        return None


def instant(value: datetime | date) -> tuple[int, bool]:
    """Epoch seconds of a timestamp, or of 00:00 Asia/Shanghai of a bare date (flagged)."""
    if isinstance(value, datetime):
        return int(value.timestamp()), False
    return day_start(value.toordinal()), True


class Ledger:
    """All subjects, their obligations, and a timer wheel of when each next needs a look."""

    def __init__(self, book: RuleBook, calendar: WorkCalendar) -> None:
        self.book = book
        self.calendar = calendar
        self.subjects: dict[str, Subject] = {}
        self.clock: int | None = None  # the latest tick
        # Every unit known (configured or seen), with its pack: the hot path looks it up here.
        self.units: dict[str, Pack] = {u: book.pack_for(u) for u in book.units}
        self._new_units: list[str] = list(book.units)
        self._calendar_year: int | None = None
        self._next_year_at = -(2**62)  # the next 1 January 00:00 to open yearly duties at
        #: Subjects changed since the runtime last took them (to write to its table).
        self.dirty: set[str] = set()
        #: Whether this ledger owns a subject key (a partitioned runtime opens yearly duties
        #: only for the unit subjects of its own partitions).
        self.owns: Callable[[str], bool] = lambda key: True
        self._wheel: dict[int, list[Obligation]] = {}
        self._times: list[int] = []
        self._unit_kinds = book.all_ref_kinds()
        self.duplicates = 0
        self.unrouted = 0

    # -- routing ----------------------------------------------------------------------

    def route(self, event: Event) -> list[tuple[str, str]]:
        """The subjects an event names, as (ref, value) pairs, in a fixed order."""
        return route(event, self._unit_kinds)

    # -- events -----------------------------------------------------------------------

    def apply(self, event: Event, own_time: tuple[int, bool] | None = None) -> list[Effect]:
        """Apply one event to every subject it names; a repeated event_id does nothing.

        ``own_time`` is the event's own time as :func:`instant` gives it, if the caller has
        it already (replay does)."""
        effects: list[Effect] = []
        routes = self.route(event)
        if not routes:
            self.note_unit(event.unit)
            self.unrouted += 1
            return effects
        own = own_time or instant(getattr(event, TIME_FIELD[event.type]))
        fresh = False
        for ref, value in routes:
            fresh = self._apply_one(ref, value, event, own, effects) or fresh
        if not fresh:
            self.duplicates += 1
        return effects

    def apply_to_subject(
        self, key: str, event: Event, own_time: tuple[int, bool] | None = None
    ) -> list[Effect]:
        """Apply an event to one of the subjects it names (``ref=value``, as :meth:`route`
        gives them): the partitioned runtime delivers an event once per subject."""
        ref, _, value = key.partition("=")
        if (ref, value) not in self.route(event):
            raise ValueError(f"event {event.event_id} does not name subject {key!r}")
        effects: list[Effect] = []
        own = own_time or instant(getattr(event, TIME_FIELD[event.type]))
        if not self._apply_one(ref, value, event, own, effects):
            self.duplicates += 1
        return effects

    def _apply_one(
        self, ref: str, value: str, event: Event, own: tuple[int, bool], fx: list[Effect]
    ) -> bool:
        """Apply to the subject ``ref=value``; False if it had seen this event already."""
        self.note_unit(event.unit)
        key = f"{ref}={value}"
        subject = self.subjects.get(key)
        if subject is None:
            subject = self.subjects[key] = Subject(key)
        if event.event_id in subject.seen:
            return False
        subject.seen += (event.event_id,)
        self.dirty.add(key)
        self._apply_to(subject, ref, value, event, own, fx)
        return True

    def note_unit(self, unit: str) -> None:
        """Remember a unit (its yearly duties are opened on 1 January). A unit is remembered
        durably by its subject ``unit=…``, which the owner of that key keeps."""
        if unit not in self.units:
            self.units[unit] = self.book.pack_for(unit)
            self._new_units.append(unit)
            key = f"{_UNIT}={unit}"
            if key not in self.subjects and self.owns(key):
                self.subjects[key] = Subject(key)
                self.dirty.add(key)

    def _apply_to(
        self,
        subject: Subject,
        ref: str,
        value: str,
        event: Any,
        own: tuple[int, bool],
        fx: list[Effect],
    ) -> None:
        etype = event.type
        if etype in _INCIDENT_TYPES:
            if subject.facts is None or not (
                etype == "incident.reported" and subject.facts.type == "incident.updated"
            ):
                subject.facts = event
            self._evaluate_facts(subject, ref, value, fx)
            return
        if etype == "document.published":
            at, date_only = own
            item: Evidence = (at, event.event_id, event.kind, date_only, event.url)
            subject.evidence += (item,)
            for ob in subject.obligations or ():
                if ob.rule.ref == ref and event.kind in ob.rule.evidence_kinds:
                    self._judge(subject, ob, fx)
        pack = self.units[event.unit]
        clock_rules = pack.by_clock_event.get(etype)
        if clock_rules is not None:
            at, date_only = own
            step: ClockEvent = (
                at,
                event.event_id,
                etype,
                date_only,
                getattr(event, "working_days", 0),
            )
            subject.clock += (step,)
            for ob in subject.obligations or ():
                if etype in ob.rule.clock and ob.rule.ref == ref:
                    self._clock_changed(subject, ob, step, fx)
        for rule in pack.by_event.get(etype, ()):
            if rule.ref != ref or _path(event, rule.link_path) != value:
                continue
            if rule.uses_facts:
                if subject.triggers is None:
                    subject.triggers = []
                if event not in subject.triggers:
                    subject.triggers.append(event)
            self._evaluate(subject, rule, event, fx, own)

    def _evaluate_facts(self, subject: Subject, ref: str, value: str, fx: list[Effect]) -> None:
        facts = subject.facts
        for rule in self.units[facts.unit].by_event.get(facts.type, ()):
            if rule.ref == ref and _path(facts, rule.link_path) == value:
                self._evaluate(subject, rule, facts, fx)
        for trig in subject.triggers or ():
            for rule in self.units[trig.unit].by_event.get(trig.type, ()):
                if rule.uses_facts and rule.ref == ref and _path(trig, rule.link_path) == value:
                    self._evaluate(subject, rule, trig, fx)

    def _evaluate(
        self,
        subject: Subject,
        rule: Rule,
        trig: Any,
        fx: list[Effect],
        own: tuple[int, bool] | None = None,
    ) -> None:
        """Open, keep, re-time, cancel or reopen the obligation ``rule`` x ``trig``.

        ``own`` is the trigger's own time if already known."""
        if not rule.uses_facts and trig.type not in _INCIDENT_TYPES:
            # A plain trigger is judged once, when it arrives (a repeat is ignored upstream):
            # if it does not meet the condition there is nothing to open or withdraw.
            holds = rule.condition_holds(trig, None)
            if not holds:
                return
        else:
            holds = rule.condition_holds(trig, subject.facts)
        if own is not None and rule.start_field is None:
            start, start_date_only = own
        else:
            start, start_date_only = instant(
                getattr(trig, rule.start_field or TIME_FIELD[trig.type])
            )
        if not rule.applies_on(day_of(start)):
            return
        subject_id = _path(trig, rule.id_path)
        if subject_id is None:
            return
        ob = subject.find(rule.id, subject_id)
        if ob is None:
            if holds:
                self._open(subject, rule, str(subject_id), trig, start, start_date_only, fx)
            return
        earlier = (start, trig.event_id) < (ob.opened_at, ob.opened_by)
        if ob.rule is not rule and ob.rule.key != rule.key:
            # Another pack's or period's version of this rule: the earliest trigger governs.
            if trig.type in _INCIDENT_TYPES or not earlier or not holds:
                return
            ob.rule, ob.unit, ob.unit_kind = rule, trig.unit, self.book.unit_kind(trig.unit)
        if not holds:
            # Only the facts, or the very event that opened it, can withdraw a trigger: another
            # event on the subject that does not match (a news item naming the policy) cannot.
            if trig.type in _INCIDENT_TYPES or trig.event_id == ob.opened_by:
                self._cancel(ob, trig, "trigger no longer holds", fx)
            return
        if ob.status == CANCELLED:
            ob.status = PENDING
            ob.opened_at, ob.opened_date_only = start, start_date_only
            self._reschedule(subject, ob)
            at = self._arrival(trig)
            ob.log(at, REOPENED, trig.event_id, "trigger holds again")
            fx.append(self._effect(ob, REOPENED, at, trig.event_id))
            self._judge(subject, ob, fx)
            self._schedule(ob)
        elif (start, trig.event_id) != (ob.opened_at, ob.opened_by) and (
            trig.type in _INCIDENT_TYPES or trig.event_id == ob.opened_by or earlier
        ):
            # Incident facts re-time the window; of several trigger events (a policy published
            # on two channels) the earliest starts it, whatever the order of arrival.
            if trig.type not in _INCIDENT_TYPES:
                ob.opened_by = trig.event_id
            ob.opened_at, ob.opened_date_only = start, start_date_only
            old_due = ob.due_at
            self._reschedule(subject, ob)
            if ob.due_at != old_due:
                detail = f"window start moved; due {rfc3339(old_due)} -> {rfc3339(ob.due_at)}"
                ob.log(_event_at(trig), RESCHEDULED, trig.event_id, detail)
                fx.append(self._effect(ob, RESCHEDULED, _event_at(trig), trig.event_id, detail))
            self._judge(subject, ob, fx)
            self._schedule(ob)

    def _open(
        self,
        subject: Subject,
        rule: Rule,
        subject_id: str,
        trig: Any,
        start: int,
        start_date_only: bool,
        fx: list[Effect],
    ) -> Obligation:
        unit = trig.unit
        ob = Obligation(
            rule,
            subject_id,
            unit,
            self.book.unit_kind(unit),
            subject.key,
            start,
            start_date_only,
            trig.event_id,
        )
        for step, action, note in self._reschedule(subject, ob):
            ob.log(step[0], action, step[1], note)  # clock events that arrived before the trigger
        if subject.obligations is None:
            subject.obligations = []
        subject.obligations.append(ob)
        fx.append(self._effect(ob, OPENED, start, trig.event_id))
        self._judge(subject, ob, fx)
        self._schedule(ob)
        return ob

    def _cancel(self, ob: Obligation, trig: Any, why: str, fx: list[Effect]) -> None:
        """The trigger no longer holds (e.g. an incident downgraded): the duty does not apply,
        whatever happened before; the timeline keeps any earlier fulfilment."""
        if ob.status != CANCELLED:
            ob.status = CANCELLED
            at = self._arrival(trig)
            ob.log(at, CANCELLED_FX, trig.event_id, why)
            fx.append(self._effect(ob, CANCELLED_FX, at, trig.event_id, why))

    def _arrival(self, trig: Any) -> int:
        """When a re-evaluation happened: the ledger's clock, or the trigger's own time if
        later (an incident update carries only the incident's time)."""
        at = _event_at(trig)
        return at if self.clock is None or at > self.clock else self.clock

    # -- windows ----------------------------------------------------------------------

    def _window_end(self, ob: Obligation, start: int) -> tuple[int, bool]:
        """The deadline of a window starting at ``start``, and whether it rests on an
        assumed (not yet published) holiday calendar."""
        window = ob.rule.window
        if window.hours is not None:
            return start + int(window.hours * 3600), False
        if window.working_days is not None:
            day, assumed = self.calendar.add_working_days_ord(day_of(start), window.working_days)
            return day_end(day), assumed
        if window.same_day:
            return day_end(day_of(start)), False
        mmdd = window.by_unit_kind.get(ob.unit_kind, window.fixed_date)  # type: ignore[call-overload]
        assert mmdd is not None
        year = date.fromordinal(day_of(start)).year
        month, day_ = (int(x) for x in mmdd.split("-"))
        return day_end(date(year, month, day_).toordinal()), False

    def _add_working_days(self, due: int, n: int) -> tuple[int, bool]:
        day, assumed = self.calendar.add_working_days_ord(day_of(due), n)
        return day_end(day), assumed

    def _reschedule(self, subject: Subject, ob: Obligation) -> list[tuple[ClockEvent, str, str]]:
        """Recompute start, due and pause state from the trigger and every clock event,
        in time order. Returns, per clock event, the action taken and a note."""
        start = ob.opened_at
        due, assumed = self._window_end(ob, start)
        if not subject.clock or not ob.rule.clock:  # nothing can move this clock
            self._settle(ob, start, due, assumed, paused=False)
            return []
        paused_since: int | None = None
        extensions = 0
        day_window = ob.rule.window.unit in ("working_days",)
        log: list[tuple[ClockEvent, str, str]] = []
        steps = sorted(s for s in subject.clock if s[2] in ob.rule.clock and s[1] != ob.opened_by)
        for step in steps:
            at, _eid, etype, _date_only, working_days = step
            spec = ob.rule.clock[etype]
            if spec.do == "pause":
                if paused_since is None:
                    paused_since = at
                    log.append((step, PAUSED_FX, "clock stopped"))
                else:
                    log.append((step, REJECTED, "already paused"))
            elif spec.do == "resume":
                if paused_since is None:
                    log.append((step, REJECTED, "not paused"))
                    continue
                if day_window:
                    n, a = self.calendar.working_days_between_ord(day_of(paused_since), day_of(at))
                    if n:
                        due, a2 = self._add_working_days(due, n)
                        assumed = assumed or a2
                    assumed = assumed or a
                    note = f"+{n} working days paused"
                else:
                    due += at - paused_since
                    note = f"+{at - paused_since} s paused"
                paused_since = None
                log.append((step, RESUMED, note))
            elif spec.do == "restart":
                start = at
                due, assumed = self._window_end(ob, start)
                paused_since = None
                extensions = 0
                log.append((step, RESTARTED, "window restarts from this day"))
            else:  # extend
                if spec.max_times is not None and extensions >= spec.max_times:
                    log.append((step, REJECTED, f"only {spec.max_times} extension(s) allowed"))
                    continue
                if spec.max_working_days is not None and working_days > spec.max_working_days:
                    log.append((step, REJECTED, f"at most {spec.max_working_days} working days"))
                    continue
                extensions += 1
                due, a = self._add_working_days(due, working_days)
                assumed = assumed or a
                log.append((step, EXTENDED, f"+{working_days} working days"))
        self._settle(ob, start, due, assumed, paused=paused_since is not None)
        return log

    def _settle(self, ob: Obligation, start: int, due: int, assumed: bool, paused: bool) -> None:
        """Store a recomputed window and the open status that follows from it."""
        ob.start, ob.due_at, ob.calendar_assumed = start, due, assumed
        if ob.warned_until < start:
            ob.warned_until = start
        if ob.status in OPEN_STATUSES:
            if paused:
                ob.status = PAUSED
            elif ob.status != MISSED or self.clock is None or due >= self.clock:
                ob.status = PENDING  # a missed one stays missed: its breach was reported

    def _clock_changed(
        self, subject: Subject, ob: Obligation, step: ClockEvent, fx: list[Effect]
    ) -> None:
        old_due = ob.due_at
        log = self._reschedule(subject, ob)
        action, note = next(((a, n) for s, a, n in log if s[1] == step[1]), (REJECTED, "no effect"))
        if ob.due_at != old_due:
            note += f"; due {rfc3339(old_due)} -> {rfc3339(ob.due_at)}"
        ob.log(step[0], action, step[1], note)
        fx.append(self._effect(ob, action, step[0], step[1], note))
        self._judge(subject, ob, fx)  # fulfilment is judged against the new deadline
        self._schedule(ob)

    # -- evidence ---------------------------------------------------------------------

    def _judge(self, subject: Subject, ob: Obligation, fx: list[Effect]) -> None:
        """Decide fulfilment from every matching publication the subject has seen."""
        if ob.status == CANCELLED or not subject.evidence:
            return
        best: tuple[int, int, str, bool] | None = None  # (rank, at, event_id, date_only)
        due = ob.due_at
        only_after_start = ob.rule.ref == _UNIT
        for at, eid, kind, date_only, _url in subject.evidence:
            if kind not in ob.rule.evidence_kinds:
                continue
            if only_after_start and at < ob.start:
                continue  # last year's report does not fulfil this year's duty
            if date_only:
                end = at + 86399
                rank = 0 if end <= due else (2 if at > due else 1)
            else:
                rank = 0 if at <= due else 2
            cand = (rank, at, eid, date_only)
            if best is None or cand < best:
                best = cand
        if best is None:
            return
        status = (MET, UNVERIFIABLE, LATE)[best[0]]
        if status == ob.status and ob.fulfilled_by == best[2]:
            return
        ob.status, ob.fulfilled_at, ob.fulfilled_by = status, best[1], best[2]
        ob.fulfilled_date_only = best[3]
        if best[0] == 1:
            detail = "published with a date only; cannot tell if within the window"
        else:
            detail = "published with a date only" if best[3] else ""
        ob.log(best[1], FULFILLED[status], best[2], detail)
        fx.append(self._effect(ob, FULFILLED[status], best[1], best[2], detail))

    # -- time -------------------------------------------------------------------------

    def _schedule(self, ob: Obligation) -> None:
        t = ob.next_wake()
        if t == ob.wake or t is None:
            ob.wake = t
            return
        ob.wake = t
        bucket = self._wheel.get(t)
        if bucket is None:
            self._wheel[t] = [ob]
            heapq.heappush(self._times, t)
        else:
            bucket.append(ob)

    def tick(self, now: int, exact: bool = False) -> list[Effect]:
        """Let time pass up to ``now``: warnings, breaches, yearly duties. O(due), not O(open).

        Live (``exact=False``), what fell due while the sweeper slept is judged as of ``now``:
        several warning points passed meanwhile give one warning. A simulation passes
        ``exact=True``: every wake-up is judged as of its own instant, as if the clock had
        stopped there."""
        fx: list[Effect] = []
        self._open_calendar_duties(now, fx)
        times, wheel = self._times, self._wheel
        while times and times[0] <= now:
            t = heapq.heappop(times)
            bucket = wheel.pop(t, ())
            if len(bucket) > 1:  # a canonical order, whatever the order of scheduling
                bucket.sort(key=_by_id)
            for ob in bucket:
                if ob.wake == t:
                    ob.wake = None
                    if ob.status == PENDING:
                        self._fire(ob, t if exact else now, fx)
        if self.clock is None or now > self.clock:
            self.clock = now
        return fx

    def _fire(self, ob: Obligation, now: int, fx: list[Effect]) -> None:
        self.dirty.add(ob.home)
        if now > ob.due_at:
            ob.status = MISSED
            ob.warned_until = ob.due_at
            ob.log(ob.due_at, BREACHED, None, "")
            fx.append(self._effect(ob, BREACHED, ob.due_at, None, "", detected_at=now))
            return
        passed = [t for t in ob.warning_times() if ob.warned_until < t <= now]
        if passed:
            t = passed[-1]  # earlier points missed while asleep are folded into this one
            ob.warned_until = t
            detail = f"{len(passed) - 1} earlier warning point(s) folded" if len(passed) > 1 else ""
            ob.log(t, WARNED, None, detail)
            fx.append(self._effect(ob, WARNED, t, None, detail, detected_at=now))
        self._schedule(ob)

    def _open_calendar_duties(self, now: int, fx: list[Effect]) -> None:
        """Open yearly duties (annual reports) for every unit when a year begins.

        A duty is opened for a unit the ledger watched across 1 January. A unit first seen
        later in the year (or a ledger started later) gets this year's duty only if its
        deadline is still ahead: a deadline that passed before we watched is not judged.
        """
        if now < self._next_year_at and not self._new_units:
            return
        year = date.fromordinal(day_of(now)).year
        self._next_year_at = day_start(date(year + 1, 1, 1).toordinal())
        year_changed = year != self._calendar_year
        if not year_changed and not self._new_units:
            return
        watched_new_year = year_changed and self._calendar_year is not None
        newcomers = set(self._new_units)
        units = list(self.units) if year_changed else self._new_units
        self._calendar_year, self._new_units = year, []
        jan1 = day_start(date(year, 1, 1).toordinal())
        trig = _CalendarTrigger(unit="", event_id=f"calendar:{year}")
        for unit in units:
            key = f"{_UNIT}={unit}"
            if not self.owns(key):
                continue
            for rule in self.units[unit].calendar_rules:
                subject = self.subjects.get(key) or self.subjects.setdefault(key, Subject(key))
                if not rule.applies_on(day_of(jan1)) or subject.find(rule.id, f"{unit}/{year - 1}"):
                    continue
                ob = Obligation(
                    rule,
                    f"{unit}/{year - 1}",
                    unit,
                    self.book.unit_kind(unit),
                    key,
                    jan1,
                    True,
                    trig.event_id,
                )
                due, _ = self._window_end(ob, jan1)
                if due < now and not (watched_new_year and unit not in newcomers):
                    continue
                self.dirty.add(key)
                self._open(
                    subject,
                    rule,
                    ob.subject_id,
                    _CalendarTrigger(unit, trig.event_id),
                    jan1,
                    True,
                    fx,
                )

    def next_due(self) -> int | None:
        """The earliest instant at which :meth:`tick` has something to do."""
        times, wheel = self._times, self._wheel
        while times:  # drop wake-ups left behind by obligations met or re-timed since
            t = times[0]
            bucket = wheel.get(t, ())
            if any(ob.wake == t and ob.status == PENDING for ob in bucket):
                break
            heapq.heappop(times)
            wheel.pop(t, None)
            for ob in bucket:
                if ob.wake == t:
                    ob.wake = None
        wake = times[0] if times else None
        if self._calendar_year is not None and any(
            p.calendar_rules for p in self.book.packs.values()
        ):
            wake = self._next_year_at if wake is None else min(wake, self._next_year_at)
        return wake

    # -- calendar updates ---------------------------------------------------------------

    def set_calendar(self, calendar: WorkCalendar) -> list[Effect]:
        """Use a new holiday table; obligations computed on an assumed calendar are redone."""
        self.calendar = calendar
        fx: list[Effect] = []
        for subject in self.subjects.values():
            for ob in subject.obligations or ():
                if not ob.calendar_assumed or ob.status == CANCELLED:
                    continue
                old_due = ob.due_at
                self._reschedule(subject, ob)
                self.dirty.add(subject.key)
                at = self.clock if self.clock is not None else ob.opened_at
                if ob.due_at != old_due or not ob.calendar_assumed:
                    detail = f"holiday table loaded; due {rfc3339(old_due)} -> {rfc3339(ob.due_at)}"
                    ob.log(at, RESCHEDULED, None, detail)
                    fx.append(self._effect(ob, RESCHEDULED, at, None, detail))
                if ob.status in FULFILLED_STATUSES:
                    self._judge(subject, ob, fx)
                self._schedule(ob)
        return fx

    # -- the runtime's table ------------------------------------------------------------

    def load_subject(self, subject: Subject) -> None:
        """Take a subject restored from durable state and file its obligations' wake-ups."""
        self.drop_subject(subject.key)
        self.subjects[subject.key] = subject
        if subject.key.startswith(f"{_UNIT}="):
            self.note_unit(subject.key[len(_UNIT) + 1 :])
            self.dirty.discard(subject.key)
        for ob in subject.obligations or ():
            self.note_unit(ob.unit)
            ob.wake = None
            self._schedule(ob)

    def drop_subject(self, key: str) -> None:
        """Forget a subject (its partition moved to another worker)."""
        subject = self.subjects.pop(key, None)
        self.dirty.discard(key)
        for ob in subject.obligations or () if subject else ():
            ob.wake = None  # its wheel entries are now stale and will be skipped

    def take_dirty(self) -> list[Subject]:
        """The subjects changed since the last call, to be written to durable state."""
        keys, self.dirty = self.dirty, set()
        return [self.subjects[k] for k in sorted(keys) if k in self.subjects]

    # -- reading ----------------------------------------------------------------------

    def obligations(self) -> Iterator[Obligation]:
        for subject in self.subjects.values():
            yield from subject.obligations or ()

    def get(self, obligation_id: str) -> Obligation | None:
        for ob in self.obligations():
            if ob.id == obligation_id:
                return ob
        return None

    def _effect(
        self,
        ob: Obligation,
        kind: str,
        at: int,
        event_id: str | None,
        detail: str = "",
        detected_at: int | None = None,
    ) -> Effect:
        rule_id = ob.rule.id
        return Effect(
            kind,
            f"{rule_id}:{ob.subject_id}",
            rule_id,
            ob.subject_id,
            ob.unit,
            at,
            ob.due_at,
            ob.status,
            event_id,
            detail,
            detected_at,
        )


@dataclass(frozen=True, slots=True)
class _CalendarTrigger:
    """Stands in for an event when the calendar opens a yearly duty."""

    unit: str
    event_id: str
    type: str = "calendar.yearly"


def route(event: Event, unit_kinds: frozenset[str]) -> list[tuple[str, str]]:
    """The subjects an event names, as (ref, value) pairs, in a fixed order: its own ids,
    the ids in its ``refs``, and its unit for publications of a kind judged per unit
    (``unit_kinds``, from :meth:`RuleBook.all_ref_kinds`)."""
    ev: Any = event  # one of the union; fields are looked up by type below
    etype = event.type
    out = [(name, getattr(ev, name)) for name in OWN_REF_FIELDS[etype]]
    if etype == "document.published" or etype == "opinion.detected":
        for name, value in ev.refs.__dict__.items():  # the refs model's fields
            if value is not None and (name, value) not in out:
                out.append((name, value))
        if etype == "document.published" and ev.kind in unit_kinds:
            out.append((_UNIT, ev.unit))
    return out


def _by_id(ob: Obligation) -> tuple[str, str]:
    return (ob.rule.id, ob.subject_id)


def _path(obj: Any, path: tuple[str, ...]) -> Any:
    for part in path:
        obj = getattr(obj, part, None)
        if obj is None:
            return None
    return obj


def _event_at(trig: Any) -> int:
    field = TIME_FIELD.get(trig.type)
    if field is None:
        return 0
    return instant(getattr(trig, field))[0]


def apply(state: Ledger, event: Event) -> tuple[Ledger, list[Effect]]:
    """``(state, event) -> (state, effects)``; the state is updated in place."""
    return state, state.apply(event)


def tick(state: Ledger, now: int) -> tuple[Ledger, list[Effect]]:
    """``(state, now) -> (state, effects)``; the state is updated in place."""
    return state, state.tick(now)
