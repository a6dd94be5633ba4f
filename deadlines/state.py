"""Subject state as JSON-able data, for a runtime's durable table (Kafka changelog).

A subject's facts and triggers are stored as the events themselves; publications, clock
events and timelines as plain lists; each obligation names the rule version it was opened
under by its key (``pack/id@version``). The text of every rule version ever used is kept
apart (:class:`RuleRegistry`, one entry per version), so an obligation restored after its
pack was edited still runs under the rule it was opened with.
"""

from __future__ import annotations

from collections.abc import Iterable
from typing import Any

from deadlines.obligations import Obligation, Subject
from deadlines.rule_spec import RuleSpec
from deadlines.rules import Rule, RuleBook, compile_rule
from schemas.events import parse_event

FORMAT = 1


class StateError(ValueError):
    """Stored state that cannot be read back (names the subject and the field)."""


class RuleRegistry:
    """Every rule version by key: the loaded packs', plus frozen texts restored from storage."""

    def __init__(self, book: RuleBook) -> None:
        self._rules: dict[str, Rule] = {r.key: r for p in book.packs.values() for r in p.rules}

    def __contains__(self, key: str) -> bool:
        return key in self._rules

    def get(self, key: str) -> Rule | None:
        return self._rules.get(key)

    def add_frozen(self, key: str, spec: dict[str, Any]) -> Rule:
        """A rule version known only from storage (its pack has changed since)."""
        pack = key.split("/", 1)[0]
        rule = compile_rule(RuleSpec.model_validate(spec), pack)
        if rule.key != key:
            raise StateError(f"rule text stored as {key!r} compiles to {rule.key!r}")
        self._rules[key] = rule
        return rule

    @staticmethod
    def frozen(rule: Rule) -> dict[str, Any]:
        """The text to store for a rule version."""
        return rule.spec.model_dump(mode="json", by_alias=True, exclude_none=True)

    def keys(self) -> Iterable[str]:
        return self._rules.keys()


def _event(e: Any) -> dict[str, Any]:
    data: dict[str, Any] = e.model_dump(mode="json", exclude_none=True)
    return data


def encode_subject(subject: Subject) -> dict[str, Any]:
    return {
        "v": FORMAT,
        "key": subject.key,
        "seen": list(subject.seen),
        "facts": _event(subject.facts) if subject.facts is not None else None,
        "triggers": [_event(t) for t in subject.triggers or ()],
        "evidence": [list(e) for e in subject.evidence],
        "clock": [list(c) for c in subject.clock],
        "obligations": [_encode_obligation(ob) for ob in subject.obligations or ()],
    }


def _encode_obligation(ob: Obligation) -> dict[str, Any]:
    return {
        "rule": ob.rule.key,
        "subject_id": ob.subject_id,
        "unit": ob.unit,
        "unit_kind": ob.unit_kind,
        "opened_at": ob.opened_at,
        "opened_date_only": ob.opened_date_only,
        "opened_by": ob.opened_by,
        "start": ob.start,
        "due_at": ob.due_at,
        "status": ob.status,
        "fulfilled_at": ob.fulfilled_at,
        "fulfilled_by": ob.fulfilled_by,
        "fulfilled_date_only": ob.fulfilled_date_only,
        "calendar_assumed": ob.calendar_assumed,
        "warned_until": ob.warned_until,
        "timeline": [list(e) for e in ob.timeline],
    }


def decode_subject(data: dict[str, Any], rules: RuleRegistry) -> Subject:
    key = data.get("key", "?")
    if data.get("v") != FORMAT:
        raise StateError(f"subject {key}: state format {data.get('v')!r}, expected {FORMAT}")
    try:
        subject = Subject(data["key"])
        subject.seen = tuple(data["seen"])
        subject.facts = parse_event(data["facts"]) if data["facts"] is not None else None
        triggers = [parse_event(t) for t in data["triggers"]]
        subject.triggers = triggers or None
        subject.evidence = tuple(
            (int(a), str(b), str(c), bool(d), str(e)) for a, b, c, d, e in data["evidence"]
        )
        subject.clock = tuple(
            (int(a), str(b), str(c), bool(d), int(e)) for a, b, c, d, e in data["clock"]
        )
        obligations = [_decode_obligation(o, subject.key, rules) for o in data["obligations"]]
    except (KeyError, TypeError, ValueError) as exc:
        raise StateError(f"subject {key}: {type(exc).__name__}: {exc}") from None
    subject.obligations = obligations or None
    return subject


def _decode_obligation(o: dict[str, Any], home: str, rules: RuleRegistry) -> Obligation:
    rule = rules.get(o["rule"])
    if rule is None:
        raise StateError(f"subject {home}: rule version {o['rule']!r} is unknown")
    ob = Obligation(
        rule,
        o["subject_id"],
        o["unit"],
        o["unit_kind"],
        home,
        o["opened_at"],
        o["opened_date_only"],
        o["opened_by"],
    )
    ob.start, ob.due_at, ob.status = o["start"], o["due_at"], o["status"]
    ob.fulfilled_at, ob.fulfilled_by = o["fulfilled_at"], o["fulfilled_by"]
    ob.fulfilled_date_only, ob.calendar_assumed = o["fulfilled_date_only"], o["calendar_assumed"]
    ob.warned_until = o["warned_until"]
    ob.timeline = tuple((int(a), str(k), e, str(d)) for a, k, e, d in o["timeline"])
    return ob


def rules_used(subject: Subject) -> set[str]:
    """The rule versions a subject's obligations run under (to keep their texts)."""
    return {ob.rule.key for ob in subject.obligations or ()}
