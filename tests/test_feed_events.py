"""The feed event contract (``feed.item``, ``feed.polled``): validation errors name the field,
and the core accepts them (ingest, the ledger, replay) without their changing any obligation."""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any

import orjson
import pytest

from agents.ingest import Router
from config.calendar_files import load_calendar
from config.packs import load_rulebook
from deadlines.ledger import Ledger
from deadlines.replay import replay
from govclock.cli import replay_report, run_replay
from schemas.events import (
    FEED_TYPES,
    EventError,
    feed_item_event_id,
    feed_polled_event_id,
    parse_event,
)
from schemas.times import TimePolicy, implausible_times
from web.ingest import parse_body
from worker.ledgers import accept

ROOT = Path(__file__).resolve().parents[1]
SAMPLE = ROOT / "examples" / "sample-history.jsonl"

ITEM: dict[str, Any] = {
    "event_id": feed_item_event_id("sh-gov-news", "https://www.sh.example/a/1.html"),
    "type": "feed.item",
    "unit": "sh-yingji",
    "source_id": "sh-gov-news",
    "item_id": "https://www.sh.example/a/1.html",
    "title": "关于宝山区仓库火灾的情况通报",
    "link": "https://www.sh.example/a/1.html",
    "published_at": "2026-03-09T16:05:00+08:00",
    "published_raw": "Mon, 09 Mar 2026 16:05:00 +0800",
    "published_precision": "second",
    "seen_at": "2026-03-09T16:10:00+08:00",
}
POLL: dict[str, Any] = {
    "event_id": "feed-poll:sh-gov-news:1773043800",
    "type": "feed.polled",
    "unit": "sh-yingji",
    "source_id": "sh-gov-news",
    "at": "2026-03-09T16:10:00+08:00",
    "outcome": "http_error",
    "http_status": 503,
    "detail": "Service Unavailable",
    "items": 0,
}


def _errors(data: dict[str, Any]) -> list[str]:
    with pytest.raises(EventError) as exc:
        parse_event(data)
    return [e.field for e in exc.value.errors]


def test_valid_feed_events_parse() -> None:
    item = parse_event(ITEM)
    poll = parse_event(POLL)
    assert item.type == "feed.item" and poll.type == "feed.polled"
    assert {item.type, poll.type} == FEED_TYPES


@pytest.mark.parametrize(
    ("base", "changes", "field"),
    [
        (ITEM, {"source_id": ""}, "source_id"),
        (ITEM, {"source_id": "s" * 151}, "source_id"),
        (ITEM, {"item_id": None}, "item_id"),
        (ITEM, {"title": ""}, "title"),
        (ITEM, {"link": "not a url"}, "link"),
        (ITEM, {"published_at": "2026-03-09T16:05:00"}, "published_at"),
        (ITEM, {"published_at": "2026-02-30"}, "published_at"),
        (ITEM, {"published_precision": "hour"}, "published_precision"),
        (ITEM, {"published_precision": "day"}, "published_precision"),  # a timestamp
        (
            ITEM,
            {"published_at": "2026-03-09", "published_precision": "minute"},
            "published_precision",
        ),
        (ITEM, {"published_at": None, "published_precision": "second"}, "published_precision"),
        (ITEM, {"seen_at": "2026-03-09"}, "seen_at"),
        (ITEM, {"summary": "a\x00b"}, "summary"),
        (ITEM, {"guid": "x"}, "guid"),
        (POLL, {"outcome": "failed"}, "outcome"),
        (POLL, {"at": "2026-03-09"}, "at"),
        (POLL, {"http_status": 99}, "http_status"),
        (POLL, {"http_status": "503"}, "http_status"),
        (POLL, {"items": -1}, "items"),
    ],
)
def test_a_bad_field_is_named(base: dict[str, Any], changes: dict[str, Any], field: str) -> None:
    data = {**base, **changes}
    if changes.get("item_id", 1) is None:
        del data["item_id"]
    assert _errors(data) == [field]


def test_missing_date_is_precision_none() -> None:
    data = {k: v for k, v in ITEM.items() if not k.startswith("published")}
    event: Any = parse_event(data)
    assert event.published_at is None and event.published_precision == "none"
    day: Any = parse_event({**ITEM, "published_at": "2026-03-09", "published_precision": "day"})
    assert str(day.published_at) == "2026-03-09"


def test_event_ids_are_deterministic() -> None:
    a = feed_item_event_id("src", "guid-1")
    assert a == feed_item_event_id("src", "guid-1") != feed_item_event_id("src", "guid-2")
    assert a.startswith("feed:src:") and len(a) == len("feed:src:") + 32
    assert len(feed_item_event_id("s" * 150, "x" * 5000)) <= 200
    at = parse_event(POLL).at  # type: ignore[union-attr]
    assert feed_polled_event_id("sh-gov-news", at) == POLL["event_id"]


def test_ingest_accepts_feed_events_and_routes_them_nowhere() -> None:
    body = b"\n".join(orjson.dumps(e) for e in (ITEM, POLL))
    events, problems = parse_body(body, "application/x-ndjson")
    assert problems == [] and len(events) == 2
    for raw in (orjson.dumps(ITEM), orjson.dumps(POLL)):
        assert accept(raw, frozenset({"annual_report"})).keys == ()
    batch = Router(frozenset({"annual_report"}), 4).route([(orjson.dumps(ITEM), 0)])
    assert batch.rejected == [] and batch.types["feed.item"] == 1
    # The time policy applies to their times like any other.
    future = parse_event({**ITEM, "seen_at": "2099-01-01T00:00:00+08:00"})
    assert [e.field for e in implausible_times(future, 1773043800, TimePolicy())] == ["seen_at"]


def test_the_ledger_takes_feed_events_without_effects() -> None:
    ledger = Ledger(load_rulebook(), load_calendar(()))
    assert ledger.route(parse_event(ITEM)) == []
    assert ledger.apply(parse_event(ITEM)) == []
    assert ledger.apply(parse_event(POLL)) == []
    assert ledger.unrouted == 2
    assert list(ledger.obligations()) == []


def _feed_events_between(lines: list[str]) -> list[str]:
    """The history with a feed item and a poll after every line, stamped at that line's
    own time (inside the history's span, so the replay clock covers the same range)."""
    out: list[str] = []
    for n, line in enumerate(lines):
        out.append(line)
        data = json.loads(line)
        at = next(
            data[f]
            for f in (
                "occurred_at",
                "published_at",
                "issued_at",
                "decided_at",
                "completed_at",
                "received_at",
                "at",
                "detected_at",
            )
            if f in data
        )
        if len(at) == 10:
            at += "T00:00:00+08:00"  # the instant replay gives a bare date
        item = {**ITEM, "unit": data["unit"], "item_id": f"g{n}", "seen_at": at}
        item["event_id"] = feed_item_event_id(item["source_id"], item["item_id"])
        poll = {**POLL, "unit": data["unit"], "at": at, "event_id": f"feed-poll:x:{n}"}
        out += [json.dumps(item, ensure_ascii=False), json.dumps(poll, ensure_ascii=False)]
    return out


def _obligations(report: dict[str, Any]) -> Any:
    return report["obligations"]


@pytest.mark.parametrize("as_of", [None, "2026-06-30T00:00:00+08:00"])
def test_replay_with_feed_events_gives_the_same_obligations(
    tmp_path: Path, as_of: str | None
) -> None:
    lines = SAMPLE.read_text(encoding="utf-8").splitlines()
    with_feeds = tmp_path / "with-feeds.jsonl"
    with_feeds.write_text("\n".join(_feed_events_between(lines)) + "\n", encoding="utf-8")
    book, calendar = load_rulebook(), load_calendar(())
    plain = run_replay(SAMPLE, as_of, book, calendar)
    fed = run_replay(with_feeds, as_of, book, calendar)
    assert [r.reason for r in fed.rejected] == [r.reason for r in plain.rejected]
    assert fed.ledger.unrouted == plain.ledger.unrouted + 2 * len(lines)
    a, b = replay_report(plain, SAMPLE), replay_report(fed, with_feeds)
    assert a["as_of"] == b["as_of"]
    assert _obligations(a) == _obligations(b)
    assert [(e.obligation_id, e.kind, e.at) for e in plain.effects] == [
        (e.obligation_id, e.kind, e.at) for e in fed.effects
    ]


def test_replay_of_feed_events_alone() -> None:
    ledger = Ledger(load_rulebook(), load_calendar(()))
    result = replay(ledger, [(1, parse_event(ITEM)), (2, parse_event(POLL))], 1773100000)
    assert result.applied == 2 and result.rejected == []
    # Only the unit's yearly duty (a unit named by any event is remembered), nothing else.
    assert {ob.rule.id for ob in ledger.obligations()} <= {"annual_report"}
