"""An :class:`~deadlines.escalation.EscalationState` as compact JSON bytes, and back.

The live notifier keeps one state per obligation in a Faust table (``escalations``, with a
changelog) and in a local snapshot; this is their value format. It is **lossless**:
``decode_state(encode_state(s)) == s`` for every state, including the frozen policy, the
fallback chains of every message sent, acknowledgements, the audit log and the effect keys
seen (tests/test_escalation_codec.py checks it over generated states).

Layout (version 1): one JSON object with short keys and no spaces. Contacts (person, phone,
channel) are written once, in ``k``, and each sent message's chain refers to them by index,
since every page of a rung repeats the same chain.

=====  ================================================================================
``v``  format version (1)
``o``  obligation id; ``r`` rule id; ``s`` subject id; ``u`` unit; ``oa`` opened at; ``d``
       due at; ``sn`` the short name used in texts
``p``  the frozen policy: ``[name, warn, breach, channels, repeat_s, max_repeats,
       escalate_s]``; a target is ``[unit, level]``, a rung a list of targets
``st`` stage; ``t`` terminal (0/1); ``bi`` breach id; ``l`` rung; ``ls`` rung paged at;
       ``rp`` repeats at the rung; ``ra`` repeat at; ``ea`` escalate at (null: none)
``a``  acks ``[stage, level, person, at]``
``k``  contacts ``[person, phone, channel]``
``x``  sent ``[key, step, kind, level, unit, unit_level, attempt, [contact index …],
       text, at, status]``
``g``  log ``[at, what, detail]``; ``e`` effect keys seen
=====  ================================================================================

The value holds the phone numbers of the people in the chains (a fallback after a restart
needs them): keep the table, its changelog and the snapshot where the roster is kept.
Pure: no I/O, no clock.
"""

from __future__ import annotations

import json
from typing import Any

from deadlines.escalation_policy import Policy, Target
from deadlines.escalation_state import Ack, Contact, EscalationState, Sent

__all__ = ["CODEC_VERSION", "CodecError", "decode_state", "encode_state"]

CODEC_VERSION = 1


class CodecError(ValueError):
    """Bytes that are not an encoded escalation state (or of an unknown version)."""


def _target(t: Target) -> list[Any]:
    return [t.unit, t.level]


def _policy(p: Policy) -> list[Any]:
    return [
        p.name,
        [_target(t) for t in p.warn],
        [[_target(t) for t in rung] for rung in p.breach],
        list(p.channels),
        p.repeat_seconds,
        p.max_repeats,
        p.escalate_after_seconds,
    ]


def encode_state(state: EscalationState) -> bytes:
    """The state as compact UTF-8 JSON (see the module docstring for the layout)."""
    contacts: dict[Contact, int] = {}

    def index(c: Contact) -> int:
        i = contacts.get(c)
        if i is None:
            i = contacts[c] = len(contacts)
        return i

    sent = [
        [
            s.key,
            s.step,
            s.kind,
            s.level,
            s.unit,
            s.unit_level,
            s.attempt,
            [index(c) for c in s.chain],
            s.text,
            s.at,
            s.status,
        ]
        for s in state.sent
    ]
    doc = {
        "v": CODEC_VERSION,
        "o": state.obligation_id,
        "r": state.rule_id,
        "s": state.subject_id,
        "u": state.unit,
        "oa": state.opened_at,
        "d": state.due_at,
        "p": _policy(state.policy),
        "sn": state.short_name,
        "st": state.stage,
        "t": int(state.terminal),
        "bi": state.breach_id,
        "l": state.level,
        "ls": state.level_since,
        "rp": state.repeats,
        "ra": state.repeat_at,
        "ea": state.escalate_at,
        "a": [[a.stage, a.level, a.person_id, a.at] for a in state.acks],
        "k": [[c.person_id, c.phone, c.channel] for c in contacts],
        "x": sent,
        "g": [list(entry) for entry in state.log],
        "e": list(state.seen),
    }
    return json.dumps(doc, ensure_ascii=False, separators=(",", ":")).encode()


# -- decoding ----------------------------------------------------------------------------


def _str(value: Any, what: str) -> str:
    if not isinstance(value, str):
        raise CodecError(f"{what}: expected a string, got {type(value).__name__}")
    return value


def _int(value: Any, what: str) -> int:
    if not isinstance(value, int) or isinstance(value, bool):
        raise CodecError(f"{what}: expected an integer, got {type(value).__name__}")
    return value


def _opt_int(value: Any, what: str) -> int | None:
    return None if value is None else _int(value, what)


def _list(value: Any, what: str) -> list[Any]:
    if not isinstance(value, list):
        raise CodecError(f"{what}: expected a list, got {type(value).__name__}")
    return value


def _targets(value: Any, what: str) -> tuple[Target, ...]:
    out = []
    for i, item in enumerate(_list(value, what)):
        unit, level = _list(item, f"{what}[{i}]")
        out.append(Target(_str(unit, f"{what}[{i}].unit"), _int(level, f"{what}[{i}].level")))
    return tuple(out)


def _decode_policy(value: Any) -> Policy:
    name, warn, breach, channels, repeat_s, max_repeats, escalate_s = _list(value, "p")
    return Policy(
        name=_str(name, "p.name"),
        warn=_targets(warn, "p.warn"),
        breach=tuple(_targets(r, f"p.breach[{i}]") for i, r in enumerate(_list(breach, "p.b"))),
        channels=tuple(_str(c, "p.channels") for c in _list(channels, "p.channels")),
        repeat_seconds=_int(repeat_s, "p.repeat_seconds"),
        max_repeats=_int(max_repeats, "p.max_repeats"),
        escalate_after_seconds=_int(escalate_s, "p.escalate_after_seconds"),
    )


def decode_state(data: bytes | str) -> EscalationState:
    """The state :func:`encode_state` wrote; raises :class:`CodecError` for anything else."""
    try:
        doc = json.loads(data)
    except (ValueError, UnicodeDecodeError) as exc:
        raise CodecError(f"not JSON: {exc}") from None
    if not isinstance(doc, dict):
        raise CodecError("not a JSON object")
    if doc.get("v") != CODEC_VERSION:
        raise CodecError(f"unknown escalation state version {doc.get('v')!r}")
    try:
        contacts = [
            Contact(_str(p, "k.person"), _str(ph, "k.phone"), _str(ch, "k.channel"))
            for p, ph, ch in (_list(c, "k[]") for c in _list(doc["k"], "k"))
        ]
        sent = []
        for i, row in enumerate(_list(doc["x"], "x")):
            key, step, kind, level, unit, unit_level, attempt, chain, text, at, status = _list(
                row, f"x[{i}]"
            )
            sent.append(
                Sent(
                    key=_str(key, "x.key"),
                    step=_str(step, "x.step"),
                    kind=_str(kind, "x.kind"),
                    level=_int(level, "x.level"),
                    unit=_str(unit, "x.unit"),
                    unit_level=_int(unit_level, "x.unit_level"),
                    attempt=_int(attempt, "x.attempt"),
                    chain=tuple(contacts[_int(j, "x.chain")] for j in _list(chain, "x.chain")),
                    text=_str(text, "x.text"),
                    at=_int(at, "x.at"),
                    status=_str(status, "x.status"),
                )
            )
        acks = tuple(
            Ack(_str(st, "a.stage"), _int(lv, "a.level"), _str(p, "a.person"), _int(t, "a.at"))
            for st, lv, p, t in (_list(a, "a[]") for a in _list(doc["a"], "a"))
        )
        log = tuple(
            (_int(t, "g.at"), _str(w, "g.what"), _str(d, "g.detail"))
            for t, w, d in (_list(g, "g[]") for g in _list(doc["g"], "g"))
        )
        return EscalationState(
            obligation_id=_str(doc["o"], "o"),
            rule_id=_str(doc["r"], "r"),
            subject_id=_str(doc["s"], "s"),
            unit=_str(doc["u"], "u"),
            opened_at=_int(doc["oa"], "oa"),
            due_at=_int(doc["d"], "d"),
            policy=_decode_policy(doc["p"]),
            short_name=_str(doc["sn"], "sn"),
            stage=_str(doc["st"], "st"),
            terminal=bool(_int(doc["t"], "t")),
            breach_id=_str(doc["bi"], "bi"),
            level=_int(doc["l"], "l"),
            level_since=_opt_int(doc["ls"], "ls"),
            repeats=_int(doc["rp"], "rp"),
            repeat_at=_opt_int(doc["ra"], "ra"),
            escalate_at=_opt_int(doc["ea"], "ea"),
            acks=acks,
            sent=tuple(sent),
            log=log,
            seen=tuple(_str(k, "e") for k in _list(doc["e"], "e")),
        )
    except KeyError as exc:
        raise CodecError(f"missing field {exc.args[0]!r}") from None
    except (IndexError, TypeError, ValueError) as exc:
        if isinstance(exc, CodecError):
            raise
        raise CodecError(f"malformed escalation state: {exc}") from None
