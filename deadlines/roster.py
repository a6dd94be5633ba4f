"""The on-call roster: who answers for each unit, at each escalation level, at any instant.

A roster document (YAML, parsed elsewhere; see docs/escalation.md) lists **people** (id, name,
E.164 phone, channels), **units** and the **emergency office** (a pseudo-unit with the fixed id
``emergency_office``), each with numbered **levels** 1, 2, … and per level a **rotation**: the
people who take turns, the day the first of them takes over, the handoff time (Asia/Shanghai)
and the period in days. **Overrides** put one person on call for a unit and level between two
instants; overrides of the same unit and level must not overlap.

:meth:`Roster.on_call` answers "who, at this instant": the primary first (an override, else the
rotation's current person), then the rest of that level in rotation order as fallbacks. An empty
answer means nobody is on call, which the escalation core reports as an alert.

This module is pure: it takes an already-parsed document (``dict``) and returns frozen objects;
time is integer epoch seconds, China Standard Time is the fixed UTC+8 (no DST since 1991).
Reading files is :mod:`config.escalation_files`' job.
"""

from __future__ import annotations

import itertools
import re
from collections.abc import Mapping, Sequence
from dataclasses import dataclass, field
from datetime import date, datetime, time
from typing import Annotated, Any, Literal

from pydantic import (
    BaseModel,
    BeforeValidator,
    ConfigDict,
    Field,
    StringConstraints,
    ValidationError,
    field_validator,
    model_validator,
)

from deadlines.calendar import day_start
from deadlines.spec_errors import describe_errors
from deadlines.timefmt import CST, rfc3339

__all__ = [
    "CHANNELS",
    "EMERGENCY_OFFICE",
    "PHONE_PATTERN",
    "Override",
    "Person",
    "Roster",
    "RosterError",
    "RosterSpec",
    "Rotation",
    "build_roster",
    "mask_phone",
    "parse_roster",
]

#: The id of the emergency office (应急办) pseudo-unit; a roster's units may not use it.
EMERGENCY_OFFICE = "emergency_office"
#: E.164: a plus, a country code not starting with 0, at most 15 digits in all.
PHONE_PATTERN = r"^\+[1-9]\d{6,14}$"
_PHONE = re.compile(PHONE_PATTERN)
Channel = Literal["sms", "voice"]
CHANNELS: tuple[str, ...] = ("sms", "voice")

_DAY = 86_400
_HHMM = re.compile(r"^([01][0-9]|2[0-3]):([0-5][0-9])$")
_WEEKDAYS = {
    name: i
    for i, names in enumerate(
        (
            ("monday", "mon"),
            ("tuesday", "tue"),
            ("wednesday", "wed"),
            ("thursday", "thu"),
            ("friday", "fri"),
            ("saturday", "sat"),
            ("sunday", "sun"),
        )
    )
    for name in names
}
_WEEKDAY_NAMES = ("Monday", "Tuesday", "Wednesday", "Thursday", "Friday", "Saturday", "Sunday")


def mask_phone(phone: str) -> str:
    """A phone number fit for logs: ``+8613800138000`` -> ``+86138****8000``.

    The last four digits stay, the four before them are masked, the rest (country code and
    carrier prefix) stays; short numbers keep less. Anything that is not E.164 is masked whole.
    """
    if not _PHONE.match(phone):
        return "****"
    digits = phone[1:]
    n = len(digits)
    tail = 4 if n >= 10 else 2
    hidden = min(4, n - tail - 1)
    head = n - tail - hidden
    return f"+{digits[:head]}{'*' * hidden}{digits[n - tail :]}"


# ---------------------------------------------------------------------------------------
# The document (validated with pydantic; cross-references are checked by build_roster)


def _phone(value: Any) -> Any:
    if isinstance(value, int) and not isinstance(value, bool):
        raise ValueError(
            f"got the number {value}: YAML reads an unquoted +86… as an integer and drops "
            'the plus; quote it: phone: "+86…"'
        )
    if isinstance(value, str) and not _PHONE.match(value):
        shown = re.sub(r"\d(?=(?:\D*\d){4})", "*", value)  # only the last 4 digits shown
        raise ValueError(
            f"{shown!r} is not an E.164 "
            "number (a plus, the country code, 7 to 15 digits in all, no spaces): "
            '"+8613800138000"'
        )
    return value


Phone = Annotated[str, BeforeValidator(_phone)]
PersonId = Annotated[str, StringConstraints(pattern=r"^[A-Za-z0-9][A-Za-z0-9_.-]*$", max_length=64)]
UnitId = Annotated[str, StringConstraints(min_length=1, max_length=200, pattern=r"^\S+$")]


def _epoch(value: Any) -> Any:
    """An instant: an aware timestamp, or a local (Asia/Shanghai) one, or a date (00:00 there)."""
    if isinstance(value, bool | int | float):
        raise ValueError(
            f"got the number {value!r}: give a timestamp such as 2026-03-01T09:00 "
            "(Asia/Shanghai) or 2026-03-01T09:00:00+08:00"
        )
    if isinstance(value, str):
        try:
            value = datetime.fromisoformat(value.strip())
        except ValueError:
            raise ValueError(
                f"{value!r} is not a timestamp: write 2026-03-01T09:00 (Asia/Shanghai) "
                "or 2026-03-01T09:00:00+08:00"
            ) from None
    if isinstance(value, datetime):
        if value.tzinfo is None or value.utcoffset() is None:
            value = value.replace(tzinfo=CST)  # local time in Asia/Shanghai
        return int(value.timestamp())
    if isinstance(value, date):
        return day_start(value.toordinal())
    return value


Instant = Annotated[int, BeforeValidator(_epoch)]


class _Spec(BaseModel):
    model_config = ConfigDict(extra="forbid", frozen=True, populate_by_name=True)


class PersonSpec(_Spec):
    id: PersonId
    name: str = Field(min_length=1, max_length=64)
    phone: Phone
    channels: list[Channel] = Field(
        default_factory=lambda: list[Channel](["sms"]),
        min_length=1,
        description="How the person can be reached (the policy orders channels).",
    )

    @field_validator("channels")
    @classmethod
    def _unique(cls, value: list[str]) -> list[str]:
        dup = [c for i, c in enumerate(value) if c in value[:i]]
        if dup:
            raise ValueError(f"{dup[0]!r} is listed twice")
        return value


class Handoff(_Spec):
    weekday: str | None = Field(default=None, description="monday…sunday (or mon…sun).")
    time: str = Field(default="09:00", description="HH:MM, Asia/Shanghai.")

    @field_validator("time", mode="before")
    @classmethod
    def _quoted(cls, value: Any) -> Any:
        if isinstance(value, int) and not isinstance(value, bool):
            raise ValueError(
                f"got the number {value}: YAML reads an unquoted 17:30 as minutes "
                '(sexagesimal); write time: "17:30"'
            )
        if isinstance(value, str) and not _HHMM.match(value):
            raise ValueError(f"time is HH:MM (00:00 to 23:59), got {value!r}")
        return value

    @field_validator("weekday")
    @classmethod
    def _weekday(cls, value: str | None) -> str | None:
        if value is not None and value.lower() not in _WEEKDAYS:
            raise ValueError(f"{value!r} is not a weekday (monday … sunday, or mon … sun)")
        return value


class RotationSpec(_Spec):
    people: list[PersonId] = Field(min_length=1, description="Person ids, in turn order.")
    start: date = Field(description="The day the first person in the list takes over.")
    handoff: Handoff = Field(default_factory=Handoff)
    period_days: int = Field(default=7, ge=1, le=366)

    @model_validator(mode="after")
    def _weekday_matches(self) -> RotationSpec:
        wd = self.handoff.weekday
        if wd is None:
            return self
        if self.period_days % 7:
            raise ValueError(
                f"handoff.weekday: a {self.period_days}-day period does not keep a weekday; "
                "drop weekday or use a multiple of 7 days"
            )
        want = _WEEKDAYS[wd.lower()]
        if self.start.weekday() != want:
            raise ValueError(
                f"start: {self.start} is a {_WEEKDAY_NAMES[self.start.weekday()]}, but "
                f"handoff.weekday is {_WEEKDAY_NAMES[want]}"
            )
        return self


class LevelSpec(_Spec):
    rotation: RotationSpec


class UnitSpec(_Spec):
    name: str | None = None
    levels: dict[int, LevelSpec] = Field(min_length=1)

    @field_validator("levels")
    @classmethod
    def _contiguous(cls, levels: dict[int, LevelSpec]) -> dict[int, LevelSpec]:
        have = sorted(levels)
        want = list(range(1, len(have) + 1))
        if have != want:
            missing = sorted(set(range(1, max(have) + 1)) - set(have))
            bad = [n for n in have if n < 1]
            if bad:
                raise ValueError(f"levels are numbered from 1, got {bad[0]}")
            raise ValueError(
                f"levels must be 1, 2, … without gaps; missing {', '.join(map(str, missing))}"
            )
        return levels


class OverrideSpec(_Spec):
    unit: UnitId = Field(description=f"A unit of the roster, or {EMERGENCY_OFFICE}.")
    level: int = Field(default=1, ge=1)
    person: PersonId
    from_: Instant = Field(alias="from")
    until: Instant
    reason: str | None = None

    @model_validator(mode="after")
    def _ordered(self) -> OverrideSpec:
        if self.until <= self.from_:
            raise ValueError(f"until {rfc3339(self.until)} is not after from {rfc3339(self.from_)}")
        return self


class RosterSpec(_Spec):
    roster: str | None = Field(default=None, description="A name for people and logs.")
    timezone: Literal["Asia/Shanghai"] = "Asia/Shanghai"
    people: list[PersonSpec] = Field(min_length=1)
    units: dict[UnitId, UnitSpec] = Field(default_factory=dict)
    emergency_office: UnitSpec | None = None
    overrides: list[OverrideSpec] = Field(default_factory=list)


class RosterError(ValueError):
    """A malformed roster: the message names the file, the unit, the level and the field."""


def parse_roster(data: object, source: str) -> RosterSpec:
    """Validate one roster document; errors name the file and the field."""
    try:
        return RosterSpec.model_validate(data)
    except ValidationError as exc:
        raise RosterError(describe_errors(exc, data, source)) from None


# ---------------------------------------------------------------------------------------
# Compiled, frozen roster


@dataclass(frozen=True, slots=True)
class Person:
    id: str
    name: str
    phone: str = field(repr=False)  # never in a repr, hence never in a log line by accident
    channels: tuple[str, ...] = ("sms",)

    @property
    def masked_phone(self) -> str:
        return mask_phone(self.phone)

    def __str__(self) -> str:
        return f"{self.name} ({self.id}, {self.masked_phone})"


@dataclass(frozen=True, slots=True)
class Rotation:
    """People taking turns: ``people[k % n]`` from ``first + k * period`` (epoch seconds)."""

    people: tuple[str, ...]
    first: int  # the first handoff instant: people[0] takes over
    period: int  # seconds

    def turn(self, at: int) -> int | None:
        """The index of the turn at ``at`` (None before the rotation starts)."""
        if at < self.first:
            return None
        return (at - self.first) // self.period

    def order(self, at: int) -> list[str]:
        """Who is on call at ``at`` first, then the others in the order their turns come."""
        k = self.turn(at)
        if k is None:
            return []
        n = len(self.people)
        out: list[str] = []
        for i in range(n):
            pid = self.people[(k + i) % n]
            if pid not in out:
                out.append(pid)
        return out

    def next_handoff(self, at: int) -> int:
        k = self.turn(at)
        return self.first if k is None else self.first + (k + 1) * self.period


@dataclass(frozen=True, slots=True)
class Override:
    unit: str
    level: int
    person: str
    start: int  # inclusive
    until: int  # exclusive
    reason: str | None = None


@dataclass(frozen=True, slots=True)
class UnitRoster:
    id: str
    name: str | None
    levels: Mapping[int, Rotation]


@dataclass(frozen=True, slots=True)
class Roster:
    """People, units with their levels, and overrides; :meth:`on_call` is the question."""

    source: str
    name: str | None
    people: Mapping[str, Person]
    units: Mapping[str, UnitRoster]  # includes EMERGENCY_OFFICE when given
    overrides: Mapping[tuple[str, int], tuple[Override, ...]]  # sorted by start

    def has_unit(self, unit: str) -> bool:
        return unit in self.units

    def levels(self, unit: str) -> int:
        """How many levels a unit has (0: not in the roster)."""
        u = self.units.get(unit)
        return len(u.levels) if u else 0

    def override_at(self, unit: str, level: int, at: int) -> Override | None:
        for ov in self.overrides.get((unit, level), ()):
            if ov.start <= at < ov.until:
                return ov
            if ov.start > at:
                break
        return None

    def on_call(self, unit: str, level: int, at_epoch: int) -> list[Person]:
        """Who answers for ``unit`` at ``level`` at the instant ``at_epoch``: the primary
        (an override, else the rotation's current person) first, then the rest of the level's
        rotation in the order their turns come, as fallbacks. Empty: nobody is on call (the
        unit or level is not in the roster, or its rotation has not started)."""
        u = self.units.get(unit)
        rotation = u.levels.get(level) if u else None
        ids = rotation.order(at_epoch) if rotation else []
        ov = self.override_at(unit, level, at_epoch)
        if ov is not None:
            ids = [ov.person, *(p for p in ids if p != ov.person)]
        return [self.people[p] for p in ids]

    def level_pairs(self) -> list[tuple[str, int]]:
        """Every (unit, level) the roster declares, in order."""
        return [(u, lv) for u in sorted(self.units) for lv in range(1, self.levels(u) + 1)]

    def gaps(self, at_epoch: int, units: Sequence[str] | None = None) -> list[tuple[str, int]]:
        """(unit, level) pairs with nobody on call at ``at_epoch``; a unit asked about that is
        not in the roster is reported as (unit, 1)."""
        out: list[tuple[str, int]] = []
        for unit in units if units is not None else sorted(self.units):
            n = self.levels(unit)
            if n == 0:
                out.append((unit, 1))
            out.extend((unit, lv) for lv in range(1, n + 1) if not self.on_call(unit, lv, at_epoch))
        return out


def _rotation(spec: RotationSpec) -> Rotation:
    hh, mm = (int(x) for x in spec.handoff.time.split(":"))
    first = day_start(spec.start.toordinal()) + hh * 3600 + mm * 60
    return Rotation(tuple(spec.people), first, spec.period_days * _DAY)


def build_roster(spec: RosterSpec, source: str) -> Roster:
    """Check the cross-references (people, units, levels, overlapping overrides) and compile.

    Every problem found is reported, one line each, naming the file and the field."""
    problems: list[str] = []
    people: dict[str, Person] = {}
    for i, p in enumerate(spec.people):
        if p.id in people:
            first = next(j for j, q in enumerate(spec.people) if q.id == p.id)
            problems.append(f"people[{i}] ({p.id}): id: already used by people[{first}]")
            continue
        people[p.id] = Person(p.id, p.name, p.phone, tuple(p.channels))
    if EMERGENCY_OFFICE in spec.units:
        problems.append(
            f"units.{EMERGENCY_OFFICE}: reserved: give the emergency office under the "
            f"top-level key {EMERGENCY_OFFICE}:"
        )
    all_units: list[tuple[str, str, UnitSpec]] = [
        (uid, f"units.{uid}", u) for uid, u in spec.units.items() if uid != EMERGENCY_OFFICE
    ]
    if spec.emergency_office is not None:
        all_units.append((EMERGENCY_OFFICE, EMERGENCY_OFFICE, spec.emergency_office))
    units: dict[str, UnitRoster] = {}
    for uid, where, u in all_units:
        for lv, level in sorted(u.levels.items()):
            for j, pid in enumerate(level.rotation.people):
                if pid not in people:
                    problems.append(
                        f"{where}.levels.{lv}.rotation.people[{j}]: unknown person {pid!r} "
                        "(not in people)"
                    )
        units[uid] = UnitRoster(
            uid, u.name, {lv: _rotation(level.rotation) for lv, level in sorted(u.levels.items())}
        )
    by_key: dict[tuple[str, int], list[tuple[int, Override]]] = {}
    for i, o in enumerate(spec.overrides):
        where = f"overrides[{i}]"
        if o.unit not in units:
            known = ", ".join(sorted(units)) or "none"
            problems.append(f"{where}: unit: unknown unit {o.unit!r} (roster has: {known})")
            continue
        if o.level not in units[o.unit].levels:
            problems.append(
                f"{where}: level: {o.unit} has no level {o.level} "
                f"(levels 1-{len(units[o.unit].levels)})"
            )
            continue
        if o.person not in people:
            problems.append(f"{where}: person: unknown person {o.person!r} (not in people)")
            continue
        ov = Override(o.unit, o.level, o.person, o.from_, o.until, o.reason)
        by_key.setdefault((o.unit, o.level), []).append((i, ov))
    overrides: dict[tuple[str, int], tuple[Override, ...]] = {}
    for (unit, lv), items in sorted(by_key.items()):
        items.sort(key=lambda io: (io[1].start, io[0]))
        for (i, a), (j, b) in itertools.pairwise(items):
            if b.start < a.until:
                problems.append(
                    f"overrides[{j}]: from: {unit} level {lv}: {rfc3339(b.start)} overlaps "
                    f"overrides[{i}] ({rfc3339(a.start)} to {rfc3339(a.until)}); "
                    "overrides of one unit and level must not overlap"
                )
        overrides[(unit, lv)] = tuple(ov for _, ov in items)
    if problems:
        raise RosterError("\n".join(f"{source}: {p}" for p in problems))
    return Roster(source, spec.roster, people, units, overrides)


def roster_from_document(data: object, source: str) -> Roster:
    """Validate and compile a parsed roster document."""
    return build_roster(parse_roster(data, source), source)


def local_instant(day: date, hhmm: time) -> int:
    """Epoch seconds of a wall-clock time on a day in Asia/Shanghai (a helper for callers)."""
    return day_start(day.toordinal()) + hhmm.hour * 3600 + hhmm.minute * 60 + hhmm.second
