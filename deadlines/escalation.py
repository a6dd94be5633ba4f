"""Escalation: who is told what, and when, about an obligation's warnings and breach.

A *policy* (data; ``deadlines/policies/default.yaml``, docs/escalation.md) says whom a warning
goes to, the breach **ladder** (rung 1, 2, 3 …, each a list of roster targets such as "the
owning unit, level 1" and "the emergency office, level 1"), how often an unacknowledged rung is
repeated, after how long the next rung is paged, and the channels to try in order. Policies are
chosen per rule id and/or unit, layered over a default, and **frozen** onto the obligation's
:class:`EscalationState` when it is first seen, so editing the policy file never moves a running
escalation.

The decisions are pure functions of (state, input, now) that return the new state and the
actions to take (:class:`Notify`, :class:`NoOnCall`); nothing here reads the clock or sends
anything::

    state = start(opened_effect, book, title=rule.title)
    state, actions = on_effect(state, effect, roster, now)     # warned, breached, met, …
    state, actions = tick(state, roster, now)                  # repeats and escalation
    state, actions = on_ack(state, level, person_id, now)      # stops repeats and escalation
    state, actions = on_delivery(state, key, "failed", now)    # fallback: next person/channel
    next_wake(state)                                           # when tick wants to run

Timeline semantics (times are integer epoch seconds):

* **warned** → one message to each ``warn`` target (default: the owning unit, level 1); no
  repeats. A warning processed at or after the deadline is skipped (the breach follows).
* **breached** → rung 1 is paged at ``now`` (default: owner level 1 + emergency office level 1).
  While the breach is unacknowledged the current rung is repeated every ``repeat_minutes``
  after its last page, at most ``max_repeats`` times, and ``escalate_after_minutes`` after a
  rung was paged the next rung is paged (the escalation replaces a repeat due at the same
  instant; lower rungs are not paged again). A ``tick`` that comes late pages the rung that is
  due now once, folding the rungs skipped over.
* **ack** by anyone (any rung) halts the breach: no more repeats, no escalation. An ack before
  the breach is recorded only.
* **met / late / unverifiable** stop everything for good; **cancelled** stops until the ledger
  reopens the obligation. A re-timed deadline (extended, paused, rescheduled…) that leaves the
  obligation no longer missed stands the breach down; a later breach starts a new ladder.
* **delivery failed / undelivered** → at once, the next entry of the frozen fallback chain of
  that message: the next person of that level on the same channel, then each person on the next
  channel (the policy's ``channels`` order). Chain exhausted → :class:`NoOnCall`.
* A target unit with nobody on call (not in the roster, rotation not started) → :class:`NoOnCall`.
* Never the same text three times in 24 h to one number: a third identical text is varied
  (a ``(#n)`` marker), and dropped with a logged reason if no variant is left
  (:func:`guard_text`).

Every action has a deterministic key (obligation, step, level, person, attempt), so replaying
the same inputs yields the same keys and the shell can deliver at least once, idempotently.
"""

from __future__ import annotations

import re
from collections.abc import Callable, Iterable, Mapping, Sequence
from dataclasses import dataclass, field, replace
from datetime import date
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

from deadlines.calendar import day_of
from deadlines.ledger import Effect
from deadlines.roster import (
    EMERGENCY_OFFICE,
    Person,
    Roster,
    mask_phone,
)
from deadlines.spec_errors import describe_errors

__all__ = [
    "ACK_URL",
    "MAX_TEXT_CHARS",
    "OWNER",
    "Action",
    "EscalationState",
    "NoOnCall",
    "Notify",
    "Policy",
    "PolicyBook",
    "PolicyError",
    "PolicySetSpec",
    "Target",
    "build_policies",
    "guard_text",
    "next_wake",
    "on_ack",
    "on_delivery",
    "on_effect",
    "parse_policies",
    "policy_problems",
    "start",
    "tick",
]

#: The target unit that means "the unit that owns the obligation".
OWNER = "owner"
#: The placeholder the shell replaces with a signed acknowledgement link.
ACK_URL = "{ack_url}"
#: One UCS-2 SMS segment; texts are kept within it, not counting the ack link.
MAX_TEXT_CHARS = 70
DAY = 86_400

# Stages of an escalation.
WATCHING = "watching"
WARNED = "warned"
BREACHED = "breached"
ACKED = "acknowledged"
STOPPED = "stopped"

_FULFILLED = frozenset({"met", "late", "unverifiable"})
_MISSED = "missed"
#: Delivery reports: these mean "on its way or there" …
DELIVERY_OK = frozenset(
    {"queued", "accepted", "scheduled", "sending", "sent", "delivered", "read", "completed"}
)
#: … and these mean "did not reach the person": fall back at once.
DELIVERY_FAILED = frozenset({"failed", "undelivered", "busy", "no-answer", "canceled"})


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


class PolicyError(ValueError):
    """A malformed policy file: the message names the file and the field."""


def parse_policies(data: object, source: str) -> PolicySetSpec:
    try:
        return PolicySetSpec.model_validate(data)
    except ValidationError as exc:
        raise PolicyError(describe_errors(exc, data, source)) from None


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


# ---------------------------------------------------------------------------------------
# Actions and state


@dataclass(frozen=True, slots=True)
class Notify:
    """Send ``text`` to one person on one channel; deliver at least once, dedup by ``key``."""

    key: str  # obligation|step|L<level>|person|attempt
    obligation_id: str
    step: str  # warn@<point>, breach@<due>#<repeat>
    kind: str  # warned, breached, repeat, escalated, fallback
    level: int  # the escalation rung (warnings: 1)
    unit: str  # the roster unit the person answers for
    unit_level: int  # the level in that unit
    person_id: str
    phone: str = field(repr=False)  # E.164; log masked_phone instead
    masked_phone: str
    channel: str
    text: str  # contains ACK_URL for the shell to fill
    at: int
    attempt: int  # position in the fallback chain (0: first choice)

    def render(self, ack_url: str) -> str:
        return self.text.replace(ACK_URL, ack_url)


@dataclass(frozen=True, slots=True)
class NoOnCall:
    """Nobody can be told: a target with nobody on call, or every delivery failed. An alert."""

    key: str
    obligation_id: str
    step: str
    level: int
    unit: str
    unit_level: int
    at: int
    reason: str


Action = Notify | NoOnCall


@dataclass(frozen=True, slots=True)
class Contact:
    person_id: str
    phone: str = field(repr=False)
    channel: str


@dataclass(frozen=True, slots=True)
class Sent:
    """One message in the state's sent log (with its fallback chain and delivery status)."""

    key: str
    step: str
    kind: str
    level: int
    unit: str
    unit_level: int
    attempt: int
    chain: tuple[Contact, ...] = field(repr=False)
    text: str
    at: int
    status: str = "pending"

    @property
    def contact(self) -> Contact:
        return self.chain[self.attempt]


@dataclass(frozen=True, slots=True)
class Ack:
    stage: str  # the breach id it belongs to ("" before any breach)
    level: int
    person_id: str
    at: int


#: One audit line: (at, what, detail). Phone numbers only masked.
LogEntry = tuple[int, str, str]


@dataclass(frozen=True, slots=True)
class EscalationState:
    """Everything escalation knows about one obligation; immutable (functions return copies)."""

    obligation_id: str
    rule_id: str
    subject_id: str
    unit: str
    opened_at: int
    due_at: int
    policy: Policy  # frozen when the state was started
    short_name: str
    stage: str = WATCHING
    terminal: bool = False  # fulfilled: nothing ever again
    breach_id: str = ""  # "breach@<due>" of the current or last breach
    level: int = 0  # the current rung (0 before a breach)
    level_since: int | None = None
    repeats: int = 0  # repeats sent at the current rung
    repeat_at: int | None = None
    escalate_at: int | None = None
    acks: tuple[Ack, ...] = ()
    sent: tuple[Sent, ...] = ()
    log: tuple[LogEntry, ...] = ()
    seen: tuple[str, ...] = ()  # effect keys applied

    @property
    def acked_levels(self) -> frozenset[int]:
        """The rungs acknowledged in the current breach."""
        return frozenset(a.level for a in self.acks if a.stage == self.breach_id and a.stage)

    def note(self, at: int, what: str, detail: str = "") -> EscalationState:
        return replace(self, log=(*self.log, (at, what, detail)))


def start(effect: Effect, book: PolicyBook, *, title: str | None = None) -> EscalationState:
    """A new state for the obligation of ``effect``, with its policy frozen in.

    Call it when the obligation is first seen (its ``opened`` effect, or any effect if the
    state was lost), then pass every effect to :func:`on_effect`. ``title`` is the rule's
    title, used for the message's short name when the policy file gives none."""
    policy = book.policy_for(effect.rule_id, effect.unit)
    state = EscalationState(
        obligation_id=effect.obligation_id,
        rule_id=effect.rule_id,
        subject_id=effect.subject_id,
        unit=effect.unit,
        opened_at=effect.at,
        due_at=effect.due_at,
        policy=policy,
        short_name=book.short_name(effect.rule_id, title),
    )
    return state.note(effect.at, "policy", f"{book.name}: {policy.name}")


# ---------------------------------------------------------------------------------------
# Texts


def _hm(t: int) -> str:
    s = (t + 8 * 3600) % DAY
    return f"{s // 3600:02d}:{s % 3600 // 60:02d}"


def _when(t: int) -> str:
    d = date.fromordinal(day_of(t))
    return f"{d.month}月{d.day}日{_hm(t)}"


def _left(seconds: int) -> str:
    minutes = max(seconds, 0) // 60
    days, rest = divmod(minutes, 24 * 60)
    hours, mins = divmod(rest, 60)
    if days:
        return f"{days}天{hours}小时" if hours else f"{days}天"
    if hours:
        return f"{hours}小时{mins}分" if mins else f"{hours}小时"
    return f"{mins}分钟"


def _fit(make: Callable[[str, str], str], name: str, subject: str) -> str:
    """Shorten the subject, then the name, until the text (without the link) fits."""

    def size(text: str) -> int:
        return len(text.replace(ACK_URL, ""))

    text = make(name, subject)
    while size(text) > MAX_TEXT_CHARS and len(subject) > 6:
        subject = subject[: max(5, len(subject) - (size(text) - MAX_TEXT_CHARS) - 1)] + "…"
        text = make(name, subject)
    while size(text) > MAX_TEXT_CHARS and len(name) > 4:
        name = name[:-2] + "…"
        text = make(name, subject)
    return text


def compose(state: EscalationState, kind: str, now: int, level: int = 1, repeat: int = 0) -> str:
    """The message for a warning, breach, repeat or escalation, within MAX_TEXT_CHARS where
    the subject and name allow it (the ack link is extra). The send time is always in it."""
    due, sent = _when(state.due_at), _hm(now)
    tail = f"{sent}发 确认{ACK_URL}"
    if kind == "warned":

        def make(n: str, s: str) -> str:
            return f"【政务时限】{n}·{s}:北京时间{due}到期,剩{_left(state.due_at - now)}。{tail}"

    elif kind == "escalated":

        def make(n: str, s: str) -> str:
            return f"【政务时限·{level}级】{n}·{s}:已超北京时间{due}时限,未获确认,请督办。{tail}"

    elif kind == "repeat":

        def make(n: str, s: str) -> str:
            return f"【政务时限】第{repeat + 1}次:{n}·{s}:已超北京时间{due}时限,未获确认。{tail}"

    else:

        def make(n: str, s: str) -> str:
            return f"【政务时限】{n}·{s}:已超北京时间{due}时限,请立即处置。{tail}"

    return _fit(make, state.short_name, state.subject_id)


def guard_text(
    history: Iterable[tuple[str, str, int]], phone: str, text: str, now: int
) -> tuple[str | None, str]:
    """Never the same text three times in 24 h to one number.

    ``history`` holds (phone, text, at) of messages sent. Returns the text to send (the same,
    or varied with a ``(#n)`` marker before the link) and why it was varied; or None and why
    it was dropped."""
    recent = [t for p, t, at in history if p == phone and now - DAY < at <= now]
    if recent.count(text) < 2:
        return text, ""
    head, sep, rest = text.rpartition(" 确认")
    for n in range(2, 10):
        varied = f"{head}(#{n}){sep}{rest}" if sep else f"{text}(#{n})"
        if recent.count(varied) < 2:
            return varied, f"same text twice to {mask_phone(phone)} in 24 h: varied (#{n})"
    return None, f"same text twice to {mask_phone(phone)} in 24 h and no variant left: dropped"


# ---------------------------------------------------------------------------------------
# Sending (shared by warnings, breach pages, repeats, escalation and fallback)


def _chain(people: Sequence[Person], channels: Sequence[str]) -> tuple[Contact, ...]:
    """The fallback order: every person on the first channel, then on the next channel."""
    return tuple(Contact(p.id, p.phone, ch) for ch in channels for p in people if ch in p.channels)


def _key(state: EscalationState, step: str, level: int, person: str, attempt: int) -> str:
    return f"{state.obligation_id}|{step}|L{level}|{person}|{attempt}"


def _try_chain(
    state: EscalationState,
    out: list[Action],
    *,
    step: str,
    kind: str,
    level: int,
    unit: str,
    unit_level: int,
    chain: tuple[Contact, ...],
    first: int,
    text: str,
    now: int,
    skip_people: frozenset[str] = frozenset(),
) -> tuple[EscalationState, str | None]:
    """Send to the first usable entry of ``chain`` from ``first``; returns who was told."""
    history = [(s.contact.phone, s.text, s.at) for s in state.sent]
    for attempt in range(first, len(chain)):
        contact = chain[attempt]
        if contact.person_id in skip_people:
            continue
        key = _key(state, step, level, contact.person_id, attempt)
        if any(s.key == key for s in state.sent):
            return state, contact.person_id  # already sent (idempotent)
        final, why = guard_text(history, contact.phone, text, now)
        if why:
            state = state.note(now, "guard", f"{key}: {why}")
        if final is None:
            continue
        state = replace(
            state,
            sent=(
                *state.sent,
                Sent(key, step, kind, level, unit, unit_level, attempt, chain, final, now),
            ),
        )
        state = state.note(now, kind, f"{key} -> {mask_phone(contact.phone)} by {contact.channel}")
        out.append(
            Notify(
                key=key,
                obligation_id=state.obligation_id,
                step=step,
                kind=kind,
                level=level,
                unit=unit,
                unit_level=unit_level,
                person_id=contact.person_id,
                phone=contact.phone,
                masked_phone=mask_phone(contact.phone),
                channel=contact.channel,
                text=final,
                at=now,
                attempt=attempt,
            )
        )
        return state, contact.person_id
    return state, None


def _no_on_call(
    state: EscalationState,
    out: list[Action],
    step: str,
    level: int,
    unit: str,
    unit_level: int,
    now: int,
    reason: str,
    tag: str = "nobody",
) -> EscalationState:
    key = f"{state.obligation_id}|{step}|L{level}|{unit}#{unit_level}|{tag}"
    out.append(NoOnCall(key, state.obligation_id, step, level, unit, unit_level, now, reason))
    return state.note(now, "no_on_call", f"{key}: {reason}")


def _page(
    state: EscalationState,
    out: list[Action],
    roster: Roster,
    targets: Sequence[Target],
    *,
    step: str,
    kind: str,
    level: int,
    text: str,
    now: int,
) -> EscalationState:
    """Tell each target's on-call person once (a person on call for two targets: once)."""
    told: set[str] = set()
    for target in targets:
        unit = target.resolve(state.unit)
        if not roster.has_unit(unit):
            state = _no_on_call(
                state,
                out,
                step,
                level,
                unit,
                target.level,
                now,
                f"{unit} is not in the roster {roster.source}",
            )
            continue
        if target.level > roster.levels(unit):
            state = state.note(now, "skip", f"{step} L{level}: {unit} has no level {target.level}")
            continue
        people = roster.on_call(unit, target.level, now)
        chain = _chain(people, state.policy.channels)
        if not chain:
            why = (
                f"nobody on call for {unit} level {target.level} at {_when(now)}"
                if not people
                else f"nobody on call for {unit} level {target.level} has a channel of "
                f"{', '.join(state.policy.channels)}"
            )
            state = _no_on_call(state, out, step, level, unit, target.level, now, why)
            continue
        if all(c.person_id in told for c in chain):
            state = state.note(now, "skip", f"{step} L{level}: {unit} on call already told")
            continue
        state, who = _try_chain(
            state,
            out,
            step=step,
            kind=kind,
            level=level,
            unit=unit,
            unit_level=target.level,
            chain=chain,
            first=0,
            text=text,
            now=now,
            skip_people=frozenset(told),
        )
        if who is None:
            state = _no_on_call(
                state,
                out,
                step,
                level,
                unit,
                target.level,
                now,
                "every message was dropped by the same-text guard",
                "guard",
            )
        else:
            told.add(who)
    return state


def _rung_exists(state: EscalationState, roster: Roster, level: int) -> bool:
    """Rung ``level`` exists in the policy and names at least one level the roster has
    (a target unit missing from the roster counts: it is reported when paged)."""
    if level > len(state.policy.breach):
        return False
    for t in state.policy.breach[level - 1]:
        unit = t.resolve(state.unit)
        if not roster.has_unit(unit) or t.level <= roster.levels(unit):
            return True
    return False


def _page_rung(
    state: EscalationState,
    out: list[Action],
    roster: Roster,
    level: int,
    repeat: int,
    kind: str,
    now: int,
) -> EscalationState:
    step = f"{state.breach_id}#{repeat}"
    text = compose(state, kind, now, level, repeat)
    state = _page(
        state,
        out,
        roster,
        state.policy.breach[level - 1],
        step=step,
        kind=kind,
        level=level,
        text=text,
        now=now,
    )
    pol = state.policy
    repeat_at = now + pol.repeat_seconds if repeat < pol.max_repeats else None
    if repeat_at is None:
        state = state.note(now, "repeats_exhausted", f"L{level}: {pol.max_repeats} repeat(s) sent")
    return replace(state, repeat_at=repeat_at, repeats=repeat)


# ---------------------------------------------------------------------------------------
# The decisions


def on_effect(
    state: EscalationState, effect: Effect, roster: Roster, now: int
) -> tuple[EscalationState, list[Action]]:
    """React to one ledger effect of this obligation; the same effect twice acts once."""
    if effect.obligation_id != state.obligation_id:
        raise ValueError(f"effect of {effect.obligation_id} given to {state.obligation_id}")
    out: list[Action] = []
    if effect.key in state.seen:
        return state, out
    state = replace(state, seen=(*state.seen, effect.key), due_at=effect.due_at)
    kind = effect.kind
    if state.terminal:
        return state.note(now, "ignored", f"{kind}: escalation is over"), out
    if kind in _FULFILLED:
        return _stop(state, now, f"{kind} by {effect.event_id}", terminal=True), out
    if kind == "cancelled":
        return _stop(state, now, f"cancelled: {effect.detail}", terminal=False), out
    if kind == "reopened":
        if state.stage == STOPPED:
            state = replace(state, stage=WATCHING).note(now, "reopened", effect.detail)
        return state, out
    if state.stage == STOPPED:
        return state.note(now, "ignored", f"{kind}: stopped"), out
    if kind == "breached":
        return _breach(state, effect, roster, now, out), out
    if state.stage in (BREACHED, ACKED) and effect.status != _MISSED:
        state = replace(
            state, stage=WATCHING, level=0, level_since=None, repeat_at=None, escalate_at=None
        )
        state = state.note(now, "stand_down", f"{kind}: no longer missed; {effect.detail}")
    if kind == "warned":
        return _warn(state, effect, roster, now, out), out
    return state, out


def _warn(
    state: EscalationState, effect: Effect, roster: Roster, now: int, out: list[Action]
) -> EscalationState:
    if now >= state.due_at:
        return state.note(now, "skip", f"warning at {_when(effect.at)} came after the deadline")
    if not state.policy.warn:
        return replace(state, stage=WARNED)
    step = f"warn@{effect.at}"
    text = compose(state, "warned", now)
    state = _page(
        state, out, roster, state.policy.warn, step=step, kind="warned", level=1, text=text, now=now
    )
    return replace(state, stage=WARNED)


def _breach(
    state: EscalationState, effect: Effect, roster: Roster, now: int, out: list[Action]
) -> EscalationState:
    breach_id = f"breach@{effect.due_at}"
    if state.breach_id == breach_id and state.stage in (BREACHED, ACKED):
        return state
    state = replace(state, stage=BREACHED, breach_id=breach_id, level=1, level_since=now)
    state = _page_rung(state, out, roster, 1, 0, "breached", now)
    esc = now + state.policy.escalate_after_seconds if len(state.policy.breach) > 1 else None
    return replace(state, escalate_at=esc)


def tick(state: EscalationState, roster: Roster, now: int) -> tuple[EscalationState, list[Action]]:
    """Let time pass to ``now``: escalate an unacknowledged rung, or repeat it."""
    out: list[Action] = []
    if state.stage != BREACHED:
        return state, out
    pol = state.policy
    if state.escalate_at is not None and state.escalate_at <= now:
        level, due, folded = state.level, state.escalate_at, 0
        while due <= now and _rung_exists(state, roster, level + 1):
            level += 1
            folded += 1
            due += pol.escalate_after_seconds
        if level == state.level:
            state = replace(state, escalate_at=None).note(
                now, "top", f"no rung above {level} for {state.unit}; repeating at {level}"
            )
        else:
            if folded > 1:
                state = state.note(now, "folded", f"{folded - 1} rung(s) skipped while asleep")
            state = replace(state, level=level, level_since=now)
            state = _page_rung(state, out, roster, level, 0, "escalated", now)
            more = level < len(pol.breach)
            return replace(
                state, escalate_at=now + pol.escalate_after_seconds if more else None
            ), out
    if state.repeat_at is not None and state.repeat_at <= now:
        state = _page_rung(state, out, roster, state.level, state.repeats + 1, "repeat", now)
    return state, out


def next_wake(state: EscalationState) -> int | None:
    """When :func:`tick` next has something to do (None: nothing to wait for)."""
    if state.stage != BREACHED:
        return None
    times = [t for t in (state.repeat_at, state.escalate_at) if t is not None]
    return min(times) if times else None


def on_ack(
    state: EscalationState, level: int, person: str, now: int
) -> tuple[EscalationState, list[Action]]:
    """Someone acknowledged (by the signed link or the board). During a breach any ack halts
    repeats and escalation; before it, the ack is only recorded. Repeated acks act once."""
    out: list[Action] = []
    if level < 1:
        raise ValueError(f"levels start at 1, got {level}")
    stage = state.breach_id if state.stage in (BREACHED, ACKED) else ""
    if any(a.stage == stage and a.level == level and a.person_id == person for a in state.acks):
        return state, out
    paged = any(s.level == level and s.contact.person_id == person for s in state.sent)
    note = "" if paged else " (not paged at that level)"
    state = replace(state, acks=(*state.acks, Ack(stage, level, person, now)))
    if state.stage == BREACHED:
        state = replace(state, stage=ACKED, repeat_at=None, escalate_at=None)
        return state.note(
            now, "ack", f"L{level} by {person}{note}: repeats and escalation stop"
        ), out
    return state.note(now, "ack", f"L{level} by {person}{note} while {state.stage}"), out


def on_delivery(
    state: EscalationState, message_key: str, status: str, now: int
) -> tuple[EscalationState, list[Action]]:
    """A delivery report. A failure moves at once to the next entry of that message's chain
    (next person at that level, then the next channel), unless the escalation no longer needs
    it (acknowledged or stopped). Reports are idempotent."""
    out: list[Action] = []
    index = next((i for i, s in enumerate(state.sent) if s.key == message_key), None)
    if index is None:
        return state.note(now, "ignored", f"delivery {status} for unknown {message_key}"), out
    sent = state.sent[index]
    status = status.lower()
    if status not in DELIVERY_OK and status not in DELIVERY_FAILED:
        return state.note(now, "ignored", f"{message_key}: unknown status {status!r}"), out
    if sent.status in DELIVERY_FAILED:
        return state, out  # already handled; a late "sent" after "failed" changes nothing
    sent_list = list(state.sent)
    sent_list[index] = replace(sent, status=status)
    state = replace(state, sent=tuple(sent_list))
    if status in DELIVERY_OK:
        return state, out
    state = state.note(now, "failed", f"{message_key}: {status}")
    if sent.step.startswith("warn@"):
        needed = state.stage in (WATCHING, WARNED)
    else:
        needed = state.stage == BREACHED and sent.step.startswith(f"{state.breach_id}#")
    if not needed:
        return state.note(now, "no_fallback", f"{message_key}: escalation is {state.stage}"), out
    state, who = _try_chain(
        state,
        out,
        step=sent.step,
        kind="fallback",
        level=sent.level,
        unit=sent.unit,
        unit_level=sent.unit_level,
        chain=sent.chain,
        first=sent.attempt + 1,
        text=sent.text,
        now=now,
    )
    if who is None:
        state = _no_on_call(
            state,
            out,
            sent.step,
            sent.level,
            sent.unit,
            sent.unit_level,
            now,
            f"every person and channel for {sent.unit} level {sent.unit_level} failed",
            "undeliverable",
        )
    return state, out


def _stop(state: EscalationState, now: int, why: str, *, terminal: bool) -> EscalationState:
    state = replace(state, stage=STOPPED, terminal=terminal, repeat_at=None, escalate_at=None)
    return state.note(now, "stop", why)
