"""Rules as data: rule packs (YAML) per jurisdiction, validated and compiled.

A *rule* says which events open an obligation (``trigger``), what publication fulfils it
(``evidence``: publication kinds and the ``refs`` field that links them), the window
(``hours``, ``working_days``, ``same_day`` or a ``fixed_date``), warning points, and how the
clock pauses, resumes, restarts or is extended. Each rule carries its citations and an
effective period; one id may have several versions with disjoint periods.

A *pack* is one jurisdiction's rule set; it may ``extends`` another pack, override rules by
id and ``remove`` rules. Units are mapped to packs by a :class:`RuleBook`.

This module is pure: it takes already-parsed documents (``dict``) and returns frozen objects.
Reading files is :mod:`deadlines.packs`' job.
"""

from __future__ import annotations

import itertools
import re
from collections.abc import Callable, Mapping, Sequence
from dataclasses import dataclass, field
from datetime import date
from types import UnionType
from typing import Annotated, Any, Literal, Union, get_args, get_origin

from pydantic import (
    BaseModel,
    ConfigDict,
    Field,
    StringConstraints,
    ValidationError,
    field_validator,
    model_validator,
)

from deadlines.spec_errors import yaml_message
from schemas.events import (
    EVENT_MODELS,
    REF_FIELDS,
    TIME_FIELD,
    EventType,
    PublicationKind,
    RefField,
)

RuleId = Annotated[str, StringConstraints(pattern=r"^[a-z][a-z0-9_]*$", max_length=64)]
#: Pack ids may also contain hyphens (``shanghai-pudong``), like unit ids.
PackId = Annotated[str, StringConstraints(pattern=r"^[a-z][a-z0-9_-]*$", max_length=64)]
UnitKind = Literal["department", "government", "county_government"]
UNIT_KINDS: tuple[str, ...] = ("department", "government", "county_government")

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


class _Spec(BaseModel):
    model_config = ConfigDict(extra="forbid", frozen=True, populate_by_name=True)


class Citation(_Spec):
    source: str = Field(min_length=1, description="Document: 国办发〔2016〕61号, seed 003, …")
    section: str | None = Field(default=None, description="Article, item or paragraph.")
    quote: str | None = Field(default=None, description="The words the rule rests on.")


class Effective(_Spec):
    from_: date = Field(alias="from", description="First day the rule applies (trigger date).")
    until: date | None = Field(default=None, description="Last day it applies; open if absent.")

    @model_validator(mode="after")
    def _ordered(self) -> Effective:
        if self.until is not None and self.until < self.from_:
            raise ValueError(f"until {self.until} is before from {self.from_}")
        return self


class Predicate(_Spec):
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


class When(_Spec):
    """All of ``all`` and at least one of ``any`` (if given) must hold."""

    all: Conditions = Field(default_factory=dict)
    any: list[Conditions] = Field(default_factory=list)


class Trigger(_Spec):
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


class Evidence(_Spec):
    kinds: list[PublicationKind] = Field(min_length=1)
    ref: Literal[RefField, "unit"]  # one Literal, so a bad value gets one error naming all
    link: str | None = Field(
        default=None,
        description="Where the trigger holds the id that evidence must carry in refs.<ref> "
        "(default: the trigger's own <ref> field).",
    )


class Window(_Spec):
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


class WarningPoint(_Spec):
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


class ClockStep(_Spec):
    event: EventType
    do: Literal["pause", "resume", "restart", "extend"]
    max_times: int | None = Field(default=None, ge=1)
    max_working_days: int | None = Field(default=None, ge=1)


class RuleSpec(_Spec):
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
            for path in _condition_paths(self.trigger.when):
                if not path.startswith(FACT_PREFIX) and not _has_path(ev, path):
                    raise ValueError(f"trigger.when: {ev} has no field {path!r}")
        for path in _condition_paths(self.trigger.when):
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


class PackSpec(_Spec):
    pack: PackId
    title: str = Field(min_length=1)
    extends: PackId | None = None
    description: str | None = None
    rules: list[RuleSpec] = Field(default_factory=list)
    remove: list[RuleId] = Field(default_factory=list)

    @field_validator("rules")
    @classmethod
    def _no_overlap(cls, rules: list[RuleSpec]) -> list[RuleSpec]:
        by_id: dict[str, list[tuple[int, RuleSpec]]] = {}
        for i, r in enumerate(rules):
            by_id.setdefault(r.id, []).append((i, r))
        for rid, versions in by_id.items():
            versions.sort(key=lambda ir: ir[1].effective.from_)
            for (i, a), (j, b) in itertools.pairwise(versions):
                if a.effective.until is None or a.effective.until >= b.effective.from_:
                    raise ValueError(
                        f"rule {rid!r} (rules[{i}] and rules[{j}]): effective: versions from "
                        f"{a.effective.from_} and {b.effective.from_} overlap "
                        "(give the first an 'until' before the second's 'from')"
                    )
        return rules


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


def _condition_paths(when: When) -> list[str]:
    paths = list(when.all)
    for alt in when.any:
        paths.extend(alt)
    return paths


# ---------------------------------------------------------------------------------------
# Compiled, frozen rules


@dataclass(frozen=True, slots=True)
class Rule:
    """One version of one rule, as compiled from a pack. Immutable: obligations keep it."""

    id: str
    pack: str
    version: str  # the first day of its effective period, ISO
    spec: RuleSpec = field(repr=False, compare=False)
    effective_from: int  # ordinal
    effective_until: int | None  # ordinal, inclusive
    events: frozenset[str]
    start_field: str | None
    id_path: tuple[str, ...]
    ref: str
    link_path: tuple[str, ...]
    evidence_kinds: frozenset[str]
    uses_facts: bool
    clock: Mapping[str, ClockStep]
    # Compiled for the hot path: each condition as (path, is_fact, test) ...
    all_of: tuple[Check, ...]
    any_of: tuple[tuple[Check, ...], ...]
    # ... and the warning points: fractions of the window, seconds before the deadline,
    # seconds after 00:00 of the deadline's day.
    warn_fractions: tuple[float, ...]
    warn_before: tuple[int, ...]
    warn_day_offsets: tuple[int, ...]

    @property
    def title(self) -> str:
        return self.spec.title

    @property
    def window(self) -> Window:
        return self.spec.window

    @property
    def key(self) -> str:
        """``pack/id@version``: which text an obligation was opened under."""
        return f"{self.pack}/{self.id}@{self.version}"

    def applies_on(self, day_ordinal: int) -> bool:
        return self.effective_from <= day_ordinal and (
            self.effective_until is None or day_ordinal <= self.effective_until
        )

    def condition_holds(self, event: Any, facts: Any) -> bool:
        for check in self.all_of:
            if not _check(check, event, facts):
                return False
        if not self.any_of:
            return True
        return any(all(_check(check, event, facts) for check in alt) for alt in self.any_of)


#: A compiled condition: the attribute path, whether it reads the subject's facts, the test.
Check = tuple[tuple[str, ...], bool, Callable[[Any], bool]]


def _check(check: Check, event: Any, facts: Any) -> bool:
    path, is_fact, test = check
    obj = facts if is_fact else event
    for part in path:
        if obj is None:
            break
        obj = getattr(obj, part, None)
    return test(obj)


def _compile_predicate(pred: Predicate) -> Callable[[Any], bool]:
    """A predicate as one function of the value (None when the field is absent)."""
    if pred.present is not None:
        wanted = pred.present
        return lambda v: (v is not None) == wanted
    tests: list[Callable[[Any], bool]] = []
    if pred.eq is not None:
        eq = pred.eq
        tests.append(lambda v: v == eq)
    if pred.ne is not None:
        ne = pred.ne
        tests.append(lambda v: v != ne)
    if pred.in_ is not None:
        allowed = frozenset(pred.in_)
        tests.append(lambda v: v in allowed)
    if pred.gte is not None:
        lo = pred.gte
        tests.append(lambda v: isinstance(v, int) and v >= lo)
    if pred.lte is not None:
        hi = pred.lte
        tests.append(lambda v: isinstance(v, int) and v <= hi)
    if len(tests) == 1:
        only = tests[0]
        return lambda v: v is not None and only(v)
    return lambda v: v is not None and all(t(v) for t in tests)


def _compile_conditions(conds: Conditions) -> tuple[Check, ...]:
    out = []
    for path, pred in conds.items():
        is_fact = path.startswith(FACT_PREFIX)
        parts = tuple((path[len(FACT_PREFIX) :] if is_fact else path).split("."))
        out.append((parts, is_fact, _compile_predicate(pred)))
    return tuple(out)


def compile_rule(spec: RuleSpec, pack: str) -> Rule:
    link = spec.evidence.link or spec.evidence.ref
    id_field = spec.trigger.id
    if id_field is None:
        id_field = link if not spec.trigger.calendar else "unit"
    return Rule(
        id=spec.id,
        pack=pack,
        version=spec.effective.from_.isoformat(),
        spec=spec,
        effective_from=spec.effective.from_.toordinal(),
        effective_until=spec.effective.until.toordinal() if spec.effective.until else None,
        events=frozenset(spec.trigger.events),
        start_field=spec.trigger.start,
        id_path=tuple(id_field.split(".")),
        ref=spec.evidence.ref,
        link_path=tuple(link.split(".")),
        evidence_kinds=frozenset(spec.evidence.kinds),
        uses_facts=any(p.startswith(FACT_PREFIX) for p in _condition_paths(spec.trigger.when)),
        clock={step.event: step for step in spec.clock},
        all_of=_compile_conditions(spec.trigger.when.all),
        any_of=tuple(_compile_conditions(alt) for alt in spec.trigger.when.any),
        warn_fractions=tuple(w.fraction for w in spec.warnings if w.fraction is not None),
        warn_before=tuple(
            int(w.before_hours * 3600) for w in spec.warnings if w.before_hours is not None
        ),
        warn_day_offsets=tuple(
            int(w.last_day_at[:2]) * 3600 + int(w.last_day_at[3:]) * 60
            for w in spec.warnings
            if w.last_day_at is not None
        ),
    )


# ---------------------------------------------------------------------------------------
# Packs and the rule book


@dataclass(frozen=True, slots=True)
class Pack:
    id: str
    title: str
    description: str | None
    rules: tuple[Rule, ...]  # every version of every rule, by id then version
    source: str  # file the pack came from (and its parents)
    by_event: Mapping[str, tuple[Rule, ...]]
    by_kind: Mapping[str, tuple[Rule, ...]]  # publication kind -> rules it is evidence for
    by_clock_event: Mapping[str, tuple[Rule, ...]]
    calendar_rules: tuple[Rule, ...]

    def rule_ids(self) -> list[str]:
        return sorted({r.id for r in self.rules})

    def versions(self, rule_id: str) -> list[Rule]:
        return [r for r in self.rules if r.id == rule_id]


class RulePackError(ValueError):
    """A malformed pack: the message names the file, the rule and the field."""


def _index(rules: Sequence[Rule], key: Any) -> dict[str, tuple[Rule, ...]]:
    out: dict[str, list[Rule]] = {}
    for r in rules:
        for k in key(r):
            out.setdefault(k, []).append(r)
    return {k: tuple(v) for k, v in out.items()}


def build_pack(spec: PackSpec, source: str, parent: Pack | None) -> Pack:
    own_ids = {r.id for r in spec.rules}
    inherited: list[Rule] = []
    if parent is not None:
        missing = [rid for rid in spec.remove if rid not in parent.rule_ids()]
        if missing:
            raise RulePackError(
                f"{source}: remove: {', '.join(missing)} not in parent pack {parent.id!r}"
            )
        dropped = own_ids | set(spec.remove)
        inherited = [compile_rule(r.spec, spec.pack) for r in parent.rules if r.id not in dropped]
    elif spec.remove:
        raise RulePackError(f"{source}: remove needs extends")
    rules = sorted(
        inherited + [compile_rule(r, spec.pack) for r in spec.rules],
        key=lambda r: (r.id, r.effective_from),
    )
    return Pack(
        id=spec.pack,
        title=spec.title,
        description=spec.description,
        rules=tuple(rules),
        source=source if parent is None else f"{source} (extends {parent.source})",
        by_event=_index(rules, lambda r: r.events),
        by_kind=_index(rules, lambda r: r.evidence_kinds),
        by_clock_event=_index(rules, lambda r: r.clock.keys()),
        calendar_rules=tuple(r for r in rules if r.spec.trigger.calendar),
    )


def parse_pack(data: object, source: str) -> PackSpec:
    """Validate one pack document; errors name the file, the rule and the field."""
    try:
        return PackSpec.model_validate(data)
    except ValidationError as exc:
        raise RulePackError(_describe(exc, data, source)) from None


def _describe(exc: ValidationError, data: object, source: str) -> str:
    lines = []
    rules = data.get("rules") if isinstance(data, dict) else None
    for err in exc.errors(include_url=False):
        loc, msg = yaml_message(err)
        where = ""
        if len(loc) >= 2 and loc[0] == "rules" and isinstance(loc[1], int):
            idx = loc[1]
            rid = None
            if isinstance(rules, list) and idx < len(rules) and isinstance(rules[idx], dict):
                rid = rules[idx].get("id")
            where = f"rule {rid!r} (rules[{idx}])" if rid else f"rules[{idx}]"
            loc = loc[2:]
        field_path = ""
        for p in loc:
            if isinstance(p, int):
                field_path += f"[{p}]"  # list positions as in the messages above: clock[0]
            elif not p.startswith("function-"):
                field_path += f".{p}" if field_path else p
        parts = [p for p in (where, field_path) if p]
        lines.append(f"{source}: {': '.join(parts) or '(pack)'}: {msg}")
    return "\n".join(lines)


@dataclass(frozen=True, slots=True)
class UnitConfig:
    id: str
    pack: str
    kind: str = "department"
    name: str | None = None


@dataclass(frozen=True, slots=True)
class RuleBook:
    """Every loaded pack, which pack each unit uses, and the default for other units."""

    packs: Mapping[str, Pack]
    default_pack: str
    units: Mapping[str, UnitConfig] = field(default_factory=dict)

    def __post_init__(self) -> None:
        if self.default_pack not in self.packs:
            raise RulePackError(
                f"default pack {self.default_pack!r} is not loaded "
                f"(have: {', '.join(sorted(self.packs))})"
            )
        for unit in self.units.values():
            if unit.pack not in self.packs:
                raise RulePackError(f"unit {unit.id!r}: pack {unit.pack!r} is not loaded")
            if unit.kind not in UNIT_KINDS:
                raise RulePackError(
                    f"unit {unit.id!r}: kind {unit.kind!r} is not one of {', '.join(UNIT_KINDS)}"
                )

    def pack_for(self, unit: str) -> Pack:
        cfg = self.units.get(unit)
        return self.packs[cfg.pack if cfg else self.default_pack]

    def unit_kind(self, unit: str) -> str:
        cfg = self.units.get(unit)
        return cfg.kind if cfg else "department"

    def find(self, rule_id: str, pack: str | None = None) -> list[Rule]:
        packs = [self.packs[pack]] if pack else list(self.packs.values())
        return [r for p in packs for r in p.rules if r.id == rule_id]

    def all_ref_kinds(self) -> frozenset[str]:
        """Publication kinds that some rule matches by unit rather than by refs."""
        return frozenset(
            kind
            for p in self.packs.values()
            for r in p.rules
            if r.ref == "unit"
            for kind in r.evidence_kinds
        )
