"""The escalation-state codec is lossless: generated states and the states of scripted
timelines (tests/test_escalation.py's shell) come back equal, field for field."""

from __future__ import annotations

import dataclasses
import json

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st
from test_escalation import FR, HOUR, MIN, T_TEXT, Shell, T, incident

from deadlines.escalation_codec import CodecError, decode_state, encode_state
from deadlines.escalation_policy import Policy, Target
from deadlines.escalation_state import Ack, Contact, EscalationState, Sent

# Any text, including the characters JSON must escape and non-BMP ones.
text = st.text(st.characters(codec="utf-8", exclude_categories=("Cs",)), max_size=12)
ints = st.integers(min_value=-(2**53), max_value=2**53)
opt_ints = st.none() | ints
targets = st.builds(Target, text, st.integers(1, 9))
policies = st.builds(
    Policy,
    name=text,
    warn=st.tuples(targets) | st.just(()),
    breach=st.lists(st.lists(targets, min_size=1, max_size=3).map(tuple), max_size=3).map(tuple),
    channels=st.lists(text, max_size=3).map(tuple),
    repeat_seconds=ints,
    max_repeats=ints,
    escalate_after_seconds=ints,
)
contacts = st.builds(Contact, text, text, text)
sent = st.builds(
    Sent,
    key=text,
    step=text,
    kind=text,
    level=ints,
    unit=text,
    unit_level=ints,
    attempt=ints,
    chain=st.lists(contacts, max_size=4).map(tuple),
    text=text,
    at=ints,
    status=text,
)
states = st.builds(
    EscalationState,
    obligation_id=text,
    rule_id=text,
    subject_id=text,
    unit=text,
    opened_at=ints,
    due_at=ints,
    policy=policies,
    short_name=text,
    stage=text,
    terminal=st.booleans(),
    breach_id=text,
    level=ints,
    level_since=opt_ints,
    repeats=ints,
    repeat_at=opt_ints,
    escalate_at=opt_ints,
    acks=st.lists(st.builds(Ack, text, ints, text, ints), max_size=3).map(tuple),
    sent=st.lists(sent, max_size=4).map(tuple),
    log=st.lists(st.tuples(ints, text, text), max_size=4).map(tuple),
    seen=st.lists(text, max_size=4).map(tuple),
)


@settings(max_examples=300, deadline=None)
@given(states)
def test_any_state_round_trips(state: EscalationState) -> None:
    data = encode_state(state)
    assert isinstance(data, bytes)
    back = decode_state(data)
    assert back == state
    # field by field too (dataclass equality would hide nothing, but say which one differs)
    for f in dataclasses.fields(EscalationState):
        assert getattr(back, f.name) == getattr(state, f.name), f.name
    assert encode_state(back) == data  # deterministic


def scripted_states() -> list[EscalationState]:
    """Every state a real timeline passes through: warnings, breach, repeats, escalation, a
    failed delivery with its fallback, an acknowledgement."""
    shell = Shell()
    seen: list[EscalationState] = []
    shell.event(incident("I1", T_TEXT), T)
    for minutes in (150, 240, 301, 331, 361):
        shell.advance(T + minutes * MIN)
        seen.append(shell.states[FR])
    first = next(s for s in shell.states[FR].sent if s.kind == "breached")
    shell.delivery(first.key, "failed", T + 6 * HOUR + 2 * MIN)
    seen.append(shell.states[FR])
    shell.ack(FR, 2, "wang", T + 6 * HOUR + 10 * MIN)
    seen.append(shell.states[FR])
    return seen


def test_scripted_timeline_states_round_trip_and_stay_compact() -> None:
    seen = scripted_states()
    final = seen[-1]
    assert final.stage == "acknowledged" and any(s.kind == "fallback" for s in final.sent)
    assert any(s.status == "failed" for s in final.sent)
    for state in seen:
        assert decode_state(encode_state(state)) == state
    data = encode_state(final)
    doc = json.loads(data)
    # each contact once, however many messages carry it in their chain
    contacts = [tuple(c) for c in doc["k"]]
    assert len(contacts) == len(set(contacts)) < sum(len(s.chain) for s in final.sent)
    assert len(data) < len(json.dumps(doc).encode())  # compact separators, no \u escapes
    assert "首次权威发布".encode() in data  # UTF-8, not \\u escapes


@pytest.mark.parametrize(
    ("data", "message"),
    [
        (b"not json", "not JSON"),
        (b"[1]", "not a JSON object"),
        (b'{"v": 99}', "unknown escalation state version 99"),
        (b'{"v": 1}', "missing field"),
    ],
)
def test_garbage_is_refused_with_a_reason(data: bytes, message: str) -> None:
    with pytest.raises(CodecError, match=message):
        decode_state(data)


def test_wrong_types_and_dangling_contacts_are_refused() -> None:
    doc = json.loads(encode_state(scripted_states()[-1]))
    bad_due = dict(doc, d="soon")
    with pytest.raises(CodecError, match="d: expected an integer"):
        decode_state(json.dumps(bad_due).encode())
    dangling = dict(doc, k=[])
    with pytest.raises(CodecError, match="malformed"):
        decode_state(json.dumps(dangling).encode())
