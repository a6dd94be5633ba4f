"""An obligation and what the ledger keeps about it: the records, and the names they use.

An :class:`Obligation` is one duty opened by one trigger under one frozen rule version; a
:class:`Subject` is everything the ledger knows about one identifier (its obligations, the
publications and clock events that named it); an :class:`Effect` is something that happened
to an obligation. With them, the status names of an obligation (pending, paused, met, late,
missed, unverifiable, cancelled), the kinds of the effects (opened, warned, breached, …), and
the tuples kept as records: timeline entries, evidence and clock events.
"""

from __future__ import annotations

from typing import Any, NamedTuple

from deadlines.calendar import day_of, day_start
from deadlines.rules import Rule

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


#: One audit entry: (at, kind, event_id, detail).
TimelineEntry = tuple[int, str, str | None, str]
#: One publication remembered by a subject: (published_at, event_id, kind, date_only, url).
Evidence = tuple[int, str, str, bool, str]
#: One clock event remembered by a subject: (at, event_id, type, date_only, working_days).
ClockEvent = tuple[int, str, str, bool, int]

#: The ref of a unit's own subject (``unit=<id>``), where its yearly duties live.
UNIT_REF = "unit"


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

    def effect(
        self,
        kind: str,
        at: int,
        event_id: str | None,
        detail: str = "",
        detected_at: int | None = None,
    ) -> Effect:
        """An effect of this obligation, with its deadline and status as they are now."""
        rule_id = self.rule.id
        return Effect(
            kind,
            f"{rule_id}:{self.subject_id}",
            rule_id,
            self.subject_id,
            self.unit,
            at,
            self.due_at,
            self.status,
            event_id,
            detail,
            detected_at,
        )

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
