"""The escalation policy document, and the policies compiled from it.

The policy file (``deadlines/policies/default.yaml``, docs/escalation.md) has a default
policy, overrides matched by rule id and/or unit, and the rules' short names for messages.
:func:`parse_policies` validates it (:class:`PolicySetSpec` and its parts) and
:func:`build_policies` compiles it into a :class:`PolicyBook`, which layers the overrides over
the default for each rule and unit into a frozen :class:`Policy`: an escalation keeps the one
it started under for good. :func:`policy_problems` lists the targets a roster does not have.
"""

from __future__ import annotations

import re
from collections.abc import Mapping, Sequence
from dataclasses import dataclass, field
from typing import Annotated, Any, Literal

from pydantic import (
    BaseModel,
    ConfigDict,
    Field,
    StringConstraints,
    ValidationError,
    field_validator,
    model_validator,
)

from deadlines.roster import EMERGENCY_OFFICE, Roster
from deadlines.spec_errors import describe_errors

__all__ = [
    "OWNER",
    "Policy",
    "PolicyBook",
    "PolicyError",
    "PolicySetSpec",
    "Target",
    "build_policies",
    "parse_policies",
    "policy_problems",
]

#: The target unit that means "the unit that owns the obligation".
OWNER = "owner"


# ---------------------------------------------------------------------------------------
# The policy document


class _Spec(BaseModel):
    model_config = ConfigDict(extra="forbid", frozen=True, populate_by_name=True)


RuleId = Annotated[str, StringConstraints(pattern=r"^[a-z][a-z0-9_]*$", max_length=64)]
UnitRef = Annotated[str, StringConstraints(min_length=1, max_length=200, pattern=r"^\S+$")]
Channel = Literal["sms", "voice"]


class TargetSpec(_Spec):
    unit: UnitRef = Field(
        default=OWNER,
        description=f"{OWNER} (the obligation's unit), {EMERGENCY_OFFICE}, or a unit id.",
    )
    level: int = Field(default=1, ge=1, le=9, description="The roster level of that unit.")


class RungSpec(_Spec):
    notify: list[TargetSpec] = Field(min_length=1)


def _unique_channels(value: list[str] | None) -> list[str] | None:
    if value is not None:
        dup = [c for i, c in enumerate(value) if c in value[:i]]
        if dup:
            raise ValueError(f"{dup[0]!r} is listed twice")
    return value


class PolicyFields(_Spec):
    """The fields of a policy; in ``overrides`` every field is optional (layered)."""

    warn: list[TargetSpec] | None = Field(default=None, description="Told at each warning.")
    breach: list[RungSpec] | None = Field(
        default=None, min_length=1, description="The ladder: rung 1, 2, … paged in turn."
    )
    channels: list[Channel] | None = Field(
        default=None, min_length=1, description="Channels in fallback order."
    )
    # Minutes; fractions are allowed (0.1 = 6 s) for tests and drills, down to 3 s.
    repeat_minutes: float | None = Field(default=None, ge=0.05, le=24 * 60)
    max_repeats: int | None = Field(default=None, ge=0, le=20)
    escalate_after_minutes: float | None = Field(default=None, ge=0.05, le=7 * 24 * 60)

    _channels = field_validator("channels")(_unique_channels)


class DefaultPolicySpec(PolicyFields):
    warn: list[TargetSpec] | None = Field(default_factory=lambda: [TargetSpec()])
    breach: list[RungSpec] | None = Field(
        default_factory=lambda: [
            RungSpec(notify=[TargetSpec(), TargetSpec(unit=EMERGENCY_OFFICE)]),
            RungSpec(notify=[TargetSpec(level=2)]),
        ],
        min_length=1,
    )
    channels: list[Channel] | None = Field(
        default_factory=lambda: list[Channel](["sms", "voice"]), min_length=1
    )
    repeat_minutes: float | None = Field(default=30, ge=0.05, le=24 * 60)
    max_repeats: int | None = Field(default=3, ge=0, le=20)
    escalate_after_minutes: float | None = Field(default=60, ge=0.05, le=7 * 24 * 60)

    @model_validator(mode="after")
    def _complete(self) -> DefaultPolicySpec:
        missing = [n for n in PolicyFields.model_fields if getattr(self, n) is None]
        if missing:
            raise ValueError(f"the default policy cannot leave {', '.join(missing)} empty")
        return self


class Match(_Spec):
    rule: RuleId | None = None
    unit: UnitRef | None = None

    @model_validator(mode="after")
    def _something(self) -> Match:
        if self.rule is None and self.unit is None:
            raise ValueError("give rule, unit or both")
        return self


class PolicyOverride(PolicyFields):
    match: Match

    @model_validator(mode="after")
    def _no_nulls(self) -> PolicyOverride:
        empty = sorted(n for n in self.model_fields_set if getattr(self, n) is None)
        if empty:
            raise ValueError(f"{', '.join(empty)}: give a value or leave the key out")
        return self


class PolicySetSpec(_Spec):
    name: str = Field(min_length=1, description="A name for the policy set.")
    description: str | None = None
    short_names: dict[RuleId, Annotated[str, StringConstraints(min_length=1, max_length=12)]] = (
        Field(default_factory=dict, description="Rule id -> short name used in messages.")
    )
    default: DefaultPolicySpec = Field(default_factory=DefaultPolicySpec)
    overrides: list[PolicyOverride] = Field(default_factory=list)

    @field_validator("overrides")
    @classmethod
    def _distinct(cls, items: list[PolicyOverride]) -> list[PolicyOverride]:
        seen: dict[tuple[str | None, str | None], int] = {}
        for i, item in enumerate(items):
            key = (item.match.rule, item.match.unit)
            if key in seen:
                raise ValueError(
                    f"overrides[{i}] and overrides[{seen[key]}] have the same match "
                    f"(rule={key[0]}, unit={key[1]}); merge them"
                )
            seen[key] = i
        return items


# ---------------------------------------------------------------------------------------
# Compiled policies


@dataclass(frozen=True, slots=True)
class Target:
    unit: str  # OWNER, EMERGENCY_OFFICE or a unit id
    level: int

    def resolve(self, owner: str) -> str:
        return owner if self.unit == OWNER else self.unit


@dataclass(frozen=True, slots=True)
class Policy:
    """One escalation policy, compiled; an obligation keeps the one it opened under."""

    name: str  # which layers made it: "default", "default+rule:first_release_5h", …
    warn: tuple[Target, ...]
    breach: tuple[tuple[Target, ...], ...]  # rung k is breach[k - 1]
    channels: tuple[str, ...]
    repeat_seconds: int
    max_repeats: int
    escalate_after_seconds: int


def _targets(specs: Sequence[TargetSpec]) -> tuple[Target, ...]:
    return tuple(Target(t.unit, t.level) for t in specs)


def _compile(name: str, fields: Mapping[str, Any]) -> Policy:
    spec = DefaultPolicySpec.model_validate(fields)
    assert spec.warn is not None and spec.breach is not None and spec.channels is not None
    assert spec.repeat_minutes is not None and spec.max_repeats is not None
    assert spec.escalate_after_minutes is not None
    return Policy(
        name=name,
        warn=_targets(spec.warn),
        breach=tuple(_targets(r.notify) for r in spec.breach),
        channels=tuple(spec.channels),
        repeat_seconds=round(spec.repeat_minutes * 60),
        max_repeats=spec.max_repeats,
        escalate_after_seconds=round(spec.escalate_after_minutes * 60),
    )


# ---------------------------------------------------------------------------------------
# The policy book: the default and the overrides, layered per rule and unit


class PolicyError(ValueError):
    """A malformed policy file: the message names the file and the field."""


def parse_policies(data: object, source: str) -> PolicySetSpec:
    try:
        return PolicySetSpec.model_validate(data)
    except ValidationError as exc:
        raise PolicyError(describe_errors(exc, data, source)) from None


@dataclass(frozen=True, slots=True)
class PolicyBook:
    """The default policy, the overrides by rule and/or unit, and the messages' short names."""

    source: str
    name: str
    default: Mapping[str, Any]  # the default's fields
    overrides: Mapping[tuple[str | None, str | None], Mapping[str, Any]]  # (rule, unit) -> set
    short_names: Mapping[str, str]
    _memo: dict[tuple[str, str], Policy] = field(default_factory=dict, compare=False, repr=False)

    def policy_for(self, rule_id: str, unit: str) -> Policy:
        """The default, then the unit's override, then the rule's, then the rule-and-unit
        one, each replacing the fields it sets."""
        memo = self._memo.get((rule_id, unit))
        if memo is not None:
            return memo
        fields = dict(self.default)
        names = ["default"]
        for key, label in (
            ((None, unit), f"unit:{unit}"),
            ((rule_id, None), f"rule:{rule_id}"),
            ((rule_id, unit), f"rule:{rule_id}+unit:{unit}"),
        ):
            layer = self.overrides.get(key)
            if layer is not None:
                fields.update(layer)
                names.append(label)
        policy = _compile("+".join(names), fields)
        if len(self._memo) < 10_000:
            self._memo[(rule_id, unit)] = policy
        return policy

    def short_name(self, rule_id: str, title: str | None = None) -> str:
        """The rule's name in messages: configured, else the Chinese head of its title."""
        name = self.short_names.get(rule_id)
        if name:
            return name
        if title:
            head = re.split(r"[A-Za-z(]", title, maxsplit=1)[0].replace(" ", "").strip()
            if head:
                return head if len(head) <= 10 else head[:9] + "…"
        return rule_id


def build_policies(spec: PolicySetSpec, source: str) -> PolicyBook:
    """Compile a validated policy document; each layered policy is checked once here."""
    default = spec.default.model_dump(exclude={"match"})
    overrides = {
        (o.match.rule, o.match.unit): o.model_dump(exclude_unset=True, exclude={"match"})
        for o in spec.overrides
    }
    book = PolicyBook(source, spec.name, default, overrides, dict(spec.short_names))
    for i, o in enumerate(spec.overrides):
        try:  # every layering this override takes part in must make a valid policy
            book.policy_for(o.match.rule or "\x00rule", o.match.unit or "\x00unit")
        except ValidationError as exc:
            raise PolicyError(f"{source}: overrides[{i}]: {exc}") from None
    return book


def policy_problems(book: PolicyBook, roster: Roster) -> list[str]:
    """Targets of the default and the overrides that name a unit the roster does not have
    (each page would be a :class:`NoOnCall`). A level the roster lacks is not a problem: that
    target is skipped, and a rung with no level left is the top of the ladder."""
    out: list[str] = []
    layers: list[tuple[str, Mapping[str, Any]]] = [("default", book.default)]
    layers += [(f"overrides (rule={r}, unit={u})", f) for (r, u), f in book.overrides.items()]
    for where, fields in layers:
        groups = [("warn", fields.get("warn") or [])]
        groups += [
            (f"breach[{i}].notify", rung["notify"])
            for i, rung in enumerate(fields.get("breach") or [])
        ]
        for what, targets in groups:
            for j, t in enumerate(targets):
                unit = t.get("unit", OWNER)
                if unit != OWNER and not roster.has_unit(unit):
                    out.append(
                        f"{book.source}: {where}: {what}[{j}].unit: {unit!r} is not in the "
                        f"roster {roster.source}"
                    )
    return out
