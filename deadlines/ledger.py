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

The records (:class:`~deadlines.obligations.Obligation`, ``Subject``, ``Effect``) and the
status and effect names are in :mod:`deadlines.obligations`; computing an obligation's
window and judging its evidence, in :mod:`deadlines.windows`.
"""

from __future__ import annotations

import heapq
from collections.abc import Callable, Iterator
from dataclasses import dataclass
from datetime import date, datetime
from typing import Any

from deadlines.calendar import WorkCalendar, day_of, day_start
from deadlines.obligations import (
    BREACHED,
    CANCELLED,
    CANCELLED_FX,
    FULFILLED_STATUSES,
    MISSED,
    OPENED,
    PENDING,
    REJECTED,
    REOPENED,
    RESCHEDULED,
    UNIT_REF,
    WARNED,
    ClockEvent,
    Effect,
    Evidence,
    Obligation,
    Subject,
)
from deadlines.retention import Retirer
from deadlines.rules import Pack, Rule, RuleBook
from deadlines.timefmt import rfc3339
from deadlines.windows import judge, reschedule, window_end
from schemas.events import OWN_REF_FIELDS, TIME_FIELD, Event

_INCIDENT_TYPES = frozenset({"incident.reported", "incident.updated"})


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
        #: Retention (deadlines/retention.py): None keeps everything (replay, reports).
        self.retirer: Retirer | None = None

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
            key = f"{UNIT_REF}={unit}"
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
                    judge(subject, ob, fx)
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
            reschedule(subject, ob, self.calendar, self.clock)
            at = self._arrival(trig)
            ob.log(at, REOPENED, trig.event_id, "trigger holds again")
            fx.append(ob.effect(REOPENED, at, trig.event_id))
            judge(subject, ob, fx)
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
            reschedule(subject, ob, self.calendar, self.clock)
            if ob.due_at != old_due:
                detail = f"window start moved; due {rfc3339(old_due)} -> {rfc3339(ob.due_at)}"
                ob.log(_event_at(trig), RESCHEDULED, trig.event_id, detail)
                fx.append(ob.effect(RESCHEDULED, _event_at(trig), trig.event_id, detail))
            judge(subject, ob, fx)
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
        for step, action, note in reschedule(subject, ob, self.calendar, self.clock):
            ob.log(step[0], action, step[1], note)  # clock events that arrived before the trigger
        if subject.obligations is None:
            subject.obligations = []
        subject.obligations.append(ob)
        fx.append(ob.effect(OPENED, start, trig.event_id))
        judge(subject, ob, fx)
        self._schedule(ob)
        return ob

    def _cancel(self, ob: Obligation, trig: Any, why: str, fx: list[Effect]) -> None:
        """The trigger no longer holds (e.g. an incident downgraded): the duty does not apply,
        whatever happened before; the timeline keeps any earlier fulfilment."""
        if ob.status != CANCELLED:
            ob.status = CANCELLED
            at = self._arrival(trig)
            ob.log(at, CANCELLED_FX, trig.event_id, why)
            fx.append(ob.effect(CANCELLED_FX, at, trig.event_id, why))

    def _arrival(self, trig: Any) -> int:
        """When a re-evaluation happened: the ledger's clock, or the trigger's own time if
        later (an incident update carries only the incident's time)."""
        at = _event_at(trig)
        return at if self.clock is None or at > self.clock else self.clock

    def _clock_changed(
        self, subject: Subject, ob: Obligation, step: ClockEvent, fx: list[Effect]
    ) -> None:
        old_due = ob.due_at
        log = reschedule(subject, ob, self.calendar, self.clock)
        action, note = next(((a, n) for s, a, n in log if s[1] == step[1]), (REJECTED, "no effect"))
        if ob.due_at != old_due:
            note += f"; due {rfc3339(old_due)} -> {rfc3339(ob.due_at)}"
        ob.log(step[0], action, step[1], note)
        fx.append(ob.effect(action, step[0], step[1], note))
        judge(subject, ob, fx)  # fulfilment is judged against the new deadline
        self._schedule(ob)

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
        if self.retirer is not None:
            self.retirer.run(self, now)
        return fx

    def _fire(self, ob: Obligation, now: int, fx: list[Effect]) -> None:
        self.dirty.add(ob.home)
        if now > ob.due_at:
            ob.status = MISSED
            ob.warned_until = ob.due_at
            ob.log(ob.due_at, BREACHED, None, "")
            fx.append(ob.effect(BREACHED, ob.due_at, None, "", detected_at=now))
            return
        passed = [t for t in ob.warning_times() if ob.warned_until < t <= now]
        if passed:
            t = passed[-1]  # earlier points missed while asleep are folded into this one
            ob.warned_until = t
            detail = f"{len(passed) - 1} earlier warning point(s) folded" if len(passed) > 1 else ""
            ob.log(t, WARNED, None, detail)
            fx.append(ob.effect(WARNED, t, None, detail, detected_at=now))
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
            key = f"{UNIT_REF}={unit}"
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
                due, _ = window_end(ob, jan1, self.calendar)
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
        retire = self.retirer.next_due() if self.retirer is not None else None
        return retire if wake is None else wake if retire is None else min(wake, retire)

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
                reschedule(subject, ob, self.calendar, self.clock)
                self.dirty.add(subject.key)
                at = self.clock if self.clock is not None else ob.opened_at
                if ob.due_at != old_due or not ob.calendar_assumed:
                    detail = f"holiday table loaded; due {rfc3339(old_due)} -> {rfc3339(ob.due_at)}"
                    ob.log(at, RESCHEDULED, None, detail)
                    fx.append(ob.effect(RESCHEDULED, at, None, detail))
                if ob.status in FULFILLED_STATUSES:
                    judge(subject, ob, fx)
                self._schedule(ob)
        return fx

    # -- the runtime's table ------------------------------------------------------------

    def load_subject(self, subject: Subject) -> None:
        """Take a subject restored from durable state and file its obligations' wake-ups."""
        self.drop_subject(subject.key)
        self.subjects[subject.key] = subject
        if self.retirer is not None:
            self.retirer.schedule(self, (subject.key,))
        if subject.key.startswith(f"{UNIT_REF}="):
            self.note_unit(subject.key[len(UNIT_REF) + 1 :])
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
        if self.retirer is not None:
            self.retirer.schedule(self, keys)
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
            out.append((UNIT_REF, ev.unit))
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
