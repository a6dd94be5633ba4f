"""Broker-less parts of the web layer: request bodies and the sources file."""

from __future__ import annotations

import json

import pytest

from config.sources import SourcesError, parse_sources
from web.ingest import parse_body

GOOD = {
    "event_id": "e1",
    "type": "decision.made",
    "unit": "u1",
    "decision_id": "X1",
    "decided_at": "2026-03-02",
    "kind": "licensing",
}


def test_ndjson_batch_with_blank_lines() -> None:
    body = b"\n".join(json.dumps({**GOOD, "event_id": f"e{i}"}).encode() for i in range(3))
    events, problems = parse_body(body + b"\n\n", "application/x-ndjson")
    assert [e["event_id"] for e in events] == ["e0", "e1", "e2"] and problems == []


def test_every_bad_line_is_named_with_its_fields() -> None:
    bad = {**GOOD, "kind": "lottery", "decided_at": "yesterday"}
    body = b"\n".join([json.dumps(GOOD).encode(), b"{nope", json.dumps(bad).encode()])
    events, problems = parse_body(body, "application/x-ndjson")
    assert len(events) == 1
    assert [p["line"] for p in problems] == [2, 3]
    assert problems[0]["errors"][0]["message"].startswith("not valid JSON")
    assert {e["field"] for e in problems[1]["errors"]} == {"kind", "decided_at"}


def test_a_json_body_is_one_event_and_an_empty_body_is_refused() -> None:
    events, problems = parse_body(json.dumps(GOOD).encode(), "application/json")
    assert len(events) == 1 and not problems
    events, problems = parse_body(b"  ", "application/json")
    assert not events and problems[0]["errors"][0]["message"] == "no events"


def test_sources_from_environment_and_file() -> None:
    data = {
        "sources": {
            "cms": {"secret_env": "CMS_SECRET"},
            "ghost": {"secret": "x" * 20, "adapter": "ghost", "unit": "u1"},
        }
    }
    got = parse_sources(data, "s.yaml", {"CMS_SECRET": "s" * 32})
    assert got["cms"].secrets == (b"s" * 32,) and got["cms"].adapter is None
    assert (got["ghost"].adapter, got["ghost"].unit) == ("ghost", "u1")


@pytest.mark.parametrize(
    ("spec", "message"),
    [
        ({"secret": "short"}, "sources.a: the secret is shorter than 16 characters"),
        ({"secret_env": "MISSING"}, "sources.a.secret_env: MISSING is not set"),
        ({"secret": "x" * 20, "secret_env": "Y"}, "give exactly one of secret, secret_env"),
        ({"secret": "x" * 20, "adapter": "drupal", "unit": "u"}, "sources.a.adapter: 'drupal'"),
        ({"secret": "x" * 20, "adapter": "ghost"}, "sources.a.unit: an adapter source needs"),
        ({"secret": "x" * 20, "colour": "red"}, "sources.a: unknown key(s) ['colour']"),
    ],
)
def test_malformed_sources_name_the_file_source_and_field(
    spec: dict[str, str], message: str
) -> None:
    with pytest.raises(SourcesError) as exc:
        parse_sources({"sources": {"a": spec}}, "s.yaml", {})
    assert str(exc.value).startswith("s.yaml: ")
    assert message in str(exc.value)
