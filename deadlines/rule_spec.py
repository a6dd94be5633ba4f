"""The rule document: the pydantic models one rule of a rule pack is validated with.

A :class:`RuleSpec` is one rule as written in a pack (YAML): its trigger, evidence, window,
warning points and clock steps, with citations and an effective period. Besides each field's
shape, a rule is checked against the event schemas of :mod:`schemas.events`: every field its
trigger, evidence link and conditions name must exist on the events that open it, and a
condition on an enumerated field must use one of its values.

The pack document (:class:`~deadlines.rules.PackSpec`) and the compiled rules are in
:mod:`deadlines.rules`.
"""

from __future__ import annotations

import re
from datetime import date
from types import UnionType
from typing import Annotated, Any, Literal, Union, get_args, get_origin

from pydantic import (
    BaseModel,
    ConfigDict,
    Field,
    StringConstraints,
    field_validator,
    model_validator,
)

from schemas.events import (
    EVENT_MODELS,
    REF_FIELDS,
    TIME_FIELD,
    EventType,
    PublicationKind,
    RefField,
)

RuleId = Annotated[str, StringConstraints(pattern=r"^[a-z][a-z0-9_]*$", max_length=64)]
UnitKind = Literal["department", "government", "county_government"]

#: The subject facts a condition may read with an ``incident.`` prefix (the latest
#: incident report or update for the subject the rule lives on).
FACT_PREFIX = "incident."

_MMDD = re.compile(r"^(0[1-9]|1[0-2])-(0[1-9]|[12][0-9]|3[01])$")
_HHMM = re.compile(r"^([01][0-9]|2[0-3]):([0-5][0-9])$")


def _every_year(mmdd: str) -> bool:
    """``MM-DD`` names a day that every year has (not 02-30, 04-31 or 02-29)."""
    try:
        date(2001, int(mmdd[:2]), int(mmdd[3:]))
    except ValueError:
        return False
    return True


class Spec(BaseModel):
    """Base of the pack document's models: unknown keys are errors, values are frozen."""

    model_config = ConfigDict(extra="forbid", frozen=True, populate_by_name=True)


class Citation(Spec):
    source: str = Field(min_length=1, description="Document: 国办发〔2016〕61号, seed 003, …")
    section: str | None = Field(default=None, description="Article, item or paragraph.")
    quote: str | None = Field(default=None, description="The words the rule rests on.")


class Effective(Spec):
    from_: date = Field(alias="from", description="First day the rule applies (trigger date).")
    until: date | None = Field(default=None, description="Last day it applies; open if absent.")

    @model_validator(mode="after")
    def _ordered(self) -> Effective:
        if self.until is not None and self.until < self.from_:
            raise ValueError(f"until {self.until} is before from {self.from_}")
        return self


class Predicate(Spec):
    eq: str | int | None = None
    ne: str | int | None = None
    in_: list[str | int] | None = Field(default=None, alias="in")
    gte: int | None = None
    lte: int | None = None
    present: bool | None = None

    @field_validator("eq", "ne", "in_", "gte", "lte", mode="before")
    @classmethod
    def _no_yaml_bool(cls, value: Any) -> Any:
        values = value if isinstance(value, list) else [value]
        if any(isinstance(v, bool) for v in values):
            raise ValueError(
                f"{value!r} is a YAML boolean (yes/no/on/off/true/false unquoted): "
                'quote the string, e.g. "no"'
            )
        return value

    @model_validator(mode="after")
    def _one(self) -> Predicate:
        if not self.model_fields_set:
            raise ValueError("a predicate needs one of eq, ne, in, gte, lte, present")
        if self.present is not None and len(self.model_fields_set) > 1:
            raise ValueError("present cannot be combined with eq, ne, in, gte or lte")
        return self


Conditions = dict[str, Predicate]


class When(Spec):
    """All of ``all`` and at least one of ``any`` (if given) must hold."""

    all: Conditions = Field(default_factory=dict)
    any: list[Conditions] = Field(default_factory=list)


class Trigger(Spec):
    events: list[EventType] = Field(default_factory=list, description="Event types that open it.")
    when: When = Field(default_factory=When)
    start: str | None = Field(
        default=None, description="Field of the trigger holding the window start."
    )
    id: str | None = Field(
        default=None, description="Field holding the trigger's id (the reported subject_id)."
    )
    calendar: Literal["yearly"] | None = Field(
        default=None, description="Opened on 1 January for every unit instead of by an event."
    )

    @model_validator(mode="after")
    def _event_or_calendar(self) -> Trigger:
        if bool(self.events) == bool(self.calendar):
            raise ValueError("give either events or calendar: yearly")
        return self


class Evidence(Spec):
    kinds: list[PublicationKind] = Field(min_length=1)
    ref: Literal[RefField, "unit"]  # one Literal, so a bad value gets one error naming all
    link: str | None = Field(
        default=None,
        description="Where the trigger holds the id that evidence must carry in refs.<ref> "
        "(default: the trigger's own <ref> field).",
    )


class Window(Spec):
    hours: float | None = Field(default=None, gt=0, le=24 * 366)
    working_days: int | None = Field(default=None, gt=0, le=366)
    same_day: Literal[True] | None = None
    fixed_date: str | None = Field(default=None, description="MM-DD in the trigger's year.")
    by_unit_kind: dict[UnitKind, str] = Field(
        default_factory=dict, description="fixed_date per unit kind (MM-DD)."
    )

    @model_validator(mode="after")
    def _exactly_one(self) -> Window:
        given = [
            n
            for n in ("hours", "working_days", "same_day", "fixed_date")
            if getattr(self, n) is not None
        ]
        if len(given) != 1:
            raise ValueError(
                "give exactly one of hours, working_days, same_day, fixed_date"
                + (f" (got {', '.join(given)})" if given else "")
            )
        for value in [self.fixed_date, *self.by_unit_kind.values()]:
            if value is not None and not _MMDD.match(value):
                raise ValueError(f"fixed dates are MM-DD, got {value!r}")
            if value is not None and not _every_year(value):
                raise ValueError(f"fixed date {value!r} is not a day of every year")
        if self.by_unit_kind and self.fixed_date is None:
            raise ValueError("by_unit_kind needs fixed_date")
        return self

    @property
    def unit(self) -> Literal["hours", "working_days", "same_day", "fixed_date"]:
        if self.hours is not None:
            return "hours"
        if self.working_days is not None:
            return "working_days"
        if self.same_day is not None:
            return "same_day"
        return "fixed_date"


class WarningPoint(Spec):
    fraction: float | None = Field(default=None, gt=0, lt=1, description="Of the window.")
    before_hours: float | None = Field(default=None, gt=0, description="Before the deadline.")
    last_day_at: str | None = Field(
        default=None, description="HH:MM on the deadline's own day (day windows)."
    )

    @field_validator("last_day_at", mode="before")
    @classmethod
    def _quoted(cls, value: Any) -> Any:
        if isinstance(value, int) and not isinstance(value, bool):
            raise ValueError(
                f"got the number {value}: YAML reads an unquoted 17:30 as minutes "
                '(sexagesimal); write last_day_at: "17:30"'
            )
        return value

    @model_validator(mode="after")
    def _exactly_one(self) -> WarningPoint:
        given = [n for n in ("fraction", "before_hours", "last_day_at") if getattr(self, n)]
        if len(given) != 1:
            raise ValueError("give exactly one of fraction, before_hours, last_day_at")
        if self.last_day_at is not None and not _HHMM.match(self.last_day_at):
            raise ValueError(f"last_day_at is HH:MM, got {self.last_day_at!r}")
        return self


class ClockStep(Spec):
    event: EventType
    do: Literal["pause", "resume", "restart", "extend"]
    max_times: int | None = Field(default=None, ge=1)
    max_working_days: int | None = Field(default=None, ge=1)


class RuleSpec(Spec):
    id: RuleId
    title: str = Field(min_length=1)
    citations: list[Citation] = Field(min_length=1)
    effective: Effective
    trigger: Trigger
    evidence: Evidence
    window: Window
    warnings: list[WarningPoint] = Field(default_factory=list)
    clock: list[ClockStep] = Field(default_factory=list)
    notes: str | None = None

    @model_validator(mode="after")
    def _coherent(self) -> RuleSpec:
        if (self.evidence.ref == "unit") != bool(self.trigger.calendar):
            raise ValueError(
                "evidence.ref: 'unit' goes with trigger.calendar: yearly, and a calendar "
                "rule needs ref: unit (events reach a rule through the id it lives on)"
            )
        for ev in self.trigger.events:
            fields = _fields_of(ev)
            start = self.trigger.start or TIME_FIELD[ev]
            if start not in fields:
                raise ValueError(f"trigger.start: {ev} has no field {start!r}")
            if start != TIME_FIELD[ev]:
                raise ValueError(
                    f"trigger.start: {start!r} is not a time; {ev}'s time is {TIME_FIELD[ev]!r}"
                )
            link = self.evidence.link or self.evidence.ref
            if not _has_path(ev, link):
                raise ValueError(f"evidence.link: {ev} has no field {link!r}")
            if link not in (self.evidence.ref, f"refs.{self.evidence.ref}"):
                raise ValueError(
                    f"evidence.link: give {self.evidence.ref!r} or 'refs.{self.evidence.ref}' "
                    f"(the trigger must name the id in evidence.ref), not {link!r}"
                )
            if self.trigger.id is not None and not _has_path(ev, self.trigger.id):
                raise ValueError(f"trigger.id: {ev} has no field {self.trigger.id!r}")
            for path in condition_paths(self.trigger.when):
                if not path.startswith(FACT_PREFIX) and not _has_path(ev, path):
                    raise ValueError(f"trigger.when: {ev} has no field {path!r}")
        for path in condition_paths(self.trigger.when):
            if not path.startswith(FACT_PREFIX):
                continue
            if path[len(FACT_PREFIX) :] not in _fields_of("incident.reported"):
                raise ValueError(f"trigger.when: {path!r}: incidents have no such field")
            if self.evidence.ref != "incident_id":
                raise ValueError(
                    f"trigger.when: {path!r} reads the incident's facts, so the rule must live "
                    "on the incident (evidence.ref: incident_id)"
                )
        for path, pred in _conditions(self.trigger.when):
            fact = path.startswith(FACT_PREFIX)
            name = path[len(FACT_PREFIX) :] if fact else path
            types: list[str] = ["incident.reported"] if fact else list(self.trigger.events)
            for etype in types:
                allowed = _literal_values(etype, name)
                wanted = [v for v in (pred.eq, pred.ne, *(pred.in_ or ())) if v is not None]
                bad = [v for v in wanted if allowed is not None and v not in allowed]
                if bad:
                    raise ValueError(
                        f"trigger.when: {path}: {bad[0]!r} is never a value of {etype} {name} "
                        f"(values: {', '.join(map(repr, allowed or ()))})"
                    )
        if self.trigger.calendar and self.window.unit != "fixed_date":
            raise ValueError("window: a calendar trigger needs a fixed_date window")
        if self.window.unit == "fixed_date" and not self.trigger.calendar:
            raise ValueError("window.fixed_date only works with trigger.calendar")
        day_window = self.window.unit in ("working_days", "same_day", "fixed_date")
        for i, w in enumerate(self.warnings):
            if w.last_day_at is not None and not day_window:
                raise ValueError(f"warnings[{i}].last_day_at needs a day window")
        for i, step in enumerate(self.clock):
            first = next(j for j, other in enumerate(self.clock) if other.event == step.event)
            if first != i:
                raise ValueError(
                    f"clock[{i}].event: {step.event} already has a step (clock[{first}])"
                )
            if self.evidence.ref not in _fields_of(step.event):
                raise ValueError(
                    f"clock[{i}].event: {step.event} does not carry {self.evidence.ref!r}, "
                    "so it cannot reach this rule's obligations"
                )
            if step.do == "extend" and "working_days" not in _fields_of(step.event):
                raise ValueError(f"clock[{i}]: extend needs an event with working_days")
        return self


def _fields_of(event_type: str) -> set[str]:
    return set(EVENT_MODELS[event_type].model_fields)


def _has_path(event_type: str, path: str) -> bool:
    head, _, rest = path.partition(".")
    if head not in _fields_of(event_type):
        return False
    if not rest:
        return True
    if head == "refs":
        if event_type == "opinion.detected":
            return rest == "incident_id"
        return rest in REF_FIELDS
    return False


def _literal_values(event_type: str, name: str) -> tuple[Any, ...] | None:
    """The values an enumerated field (``severity``, ``kind``…) can take; None otherwise."""
    info = EVENT_MODELS[event_type].model_fields.get(name)
    if info is None:
        return None
    ann = info.annotation
    members = get_args(ann) if get_origin(ann) in (Union, UnionType) else (ann,)
    values: list[Any] = []
    for m in members:
        if m is type(None):
            continue
        if get_origin(m) is not Literal:
            return None
        values.extend(get_args(m))
    return tuple(values) or None


def _conditions(when: When) -> list[tuple[str, Predicate]]:
    out = list(when.all.items())
    for alt in when.any:
        out.extend(alt.items())
    return out


def condition_paths(when: When) -> list[str]:
    paths = list(when.all)
    for alt in when.any:
        paths.extend(alt)
    return paths
