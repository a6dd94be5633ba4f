"""Rules as data: rule packs (YAML) per jurisdiction, validated and compiled.

A *rule* says which events open an obligation (``trigger``), what publication fulfils it
(``evidence``: publication kinds and the ``refs`` field that links them), the window
(``hours``, ``working_days``, ``same_day`` or a ``fixed_date``), warning points, and how the
clock pauses, resumes, restarts or is extended. Each rule carries its citations and an
effective period; one id may have several versions with disjoint periods.

A *pack* is one jurisdiction's rule set; it may ``extends`` another pack, override rules by
id and ``remove`` rules. Units are mapped to packs by a :class:`RuleBook`.

This module holds the pack document (a rule's own document is :mod:`deadlines.rule_spec`),
the rules compiled for the ledger, the packs and the rule book. It is pure: it takes
already-parsed documents (``dict``) and returns frozen objects. Reading files is
:mod:`config.packs`' job.
"""

from __future__ import annotations

import itertools
from collections.abc import Callable, Mapping, Sequence
from dataclasses import dataclass, field
from typing import Annotated, Any

from pydantic import Field, StringConstraints, ValidationError, field_validator

from deadlines.rule_spec import (
    FACT_PREFIX,
    ClockStep,
    Conditions,
    Predicate,
    RuleId,
    RuleSpec,
    Spec,
    Window,
    condition_paths,
)
from deadlines.spec_errors import yaml_message

#: Pack ids may also contain hyphens (``shanghai-pudong``), like unit ids.
PackId = Annotated[str, StringConstraints(pattern=r"^[a-z][a-z0-9_-]*$", max_length=64)]
#: The kinds a unit may be (those of :data:`deadlines.rule_spec.UnitKind`).
UNIT_KINDS: tuple[str, ...] = ("department", "government", "county_government")


# ---------------------------------------------------------------------------------------
# The pack document


class PackSpec(Spec):
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
        uses_facts=any(p.startswith(FACT_PREFIX) for p in condition_paths(spec.trigger.when)),
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
