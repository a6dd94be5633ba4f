"""Fuzzing the parsing layer in process: every hostile body is an answer, never a crash.

``parse_body`` (the events route) and every adapter (the hooks and CAP) either give events
that the journal can write and read back unchanged, or refuse with a reason; nothing else
escapes (no RecursionError, no UnicodeEncodeError at journal time, no ValueError from a
number with 5,000 digits). The same bodies are sent over HTTP to a live worker in
tests/integration/test_ingest_integrity.py.
"""

from __future__ import annotations

import json
import time

from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from schemas.events import parse_event
from schemas.times import TimePolicy, implausible_times
from sources.common import ADAPTER_NAMES, AdapterError, get_adapter
from tests.fuzzing import VALID_EVENT, bodies
from web.ingest import JSON_TYPES, NDJSON_TYPES, parse_body

NOW = int(time.time())
FUZZ = settings(max_examples=400, deadline=None, suppress_health_check=[HealthCheck.too_slow])


def journal_round_trip(event: dict[str, object]) -> None:
    """What ``Journal.append`` writes must read back as the same, still valid, event."""
    line = json.dumps(event, ensure_ascii=False, separators=(",", ":")).encode()
    assert json.loads(line) == event
    parse_event(json.loads(line))


@FUZZ
@given(body=bodies, content_type=st.sampled_from(JSON_TYPES + NDJSON_TYPES))
def test_parse_body_answers_every_body(body: bytes, content_type: str) -> None:
    def check(event: object) -> list[object]:
        return list(implausible_times(event, NOW, TimePolicy()))  # type: ignore[arg-type]

    events, problems = parse_body(body, content_type, check)  # type: ignore[arg-type]
    assert events or problems
    for problem in problems:
        assert isinstance(problem["line"], int) and problem["errors"]
        for error in problem["errors"]:
            assert error["field"] and error["message"]
    for event in events:
        journal_round_trip(event)


@FUZZ
@given(body=bodies, adapter=st.sampled_from(ADAPTER_NAMES))
def test_every_adapter_answers_every_body(body: bytes, adapter: str) -> None:
    try:
        events = get_adapter(adapter)(body, unit="sh-gov", source="fz", received_at=NOW)
    except AdapterError as exc:
        assert exc.reason.startswith(f"{adapter}: ")
        return
    for event in events:
        journal_round_trip(event)


def test_the_fuzzer_reaches_the_cases_the_issue_names() -> None:
    """Deep nesting, lone surrogates, NUL and huge numbers each get a reason, not a crash."""
    cases = {
        b"[" * 100_000: "not valid JSON",
        b'{"event_id": "\\ud800"}': "not valid JSON",
        json.dumps({**VALID_EVENT, "event_id": "a\u0000b"}).encode(): "control character U+0000",
    }
    for body, reason in cases.items():
        _, problems = parse_body(body, "application/json")
        messages = [e["message"] for p in problems for e in p["errors"]]
        assert any(reason in m for m in messages), (body[:40], messages)
    big = json.dumps({"type": "application.extended"}).encode()[:-1] + b', "working_days": '
    _, problems = parse_body(big + b"1" + b"0" * 30 + b"}", "application/json")
    assert any(e["field"] == "working_days" for p in problems for e in p["errors"]), problems
    _, problems = parse_body(big + b"1" + b"0" * 5000 + b"}", "application/json")
    assert "infinity" in problems[0]["errors"][0]["message"], problems
