"""Paged queries over a partition's obligations (deadlines/query.py, web/paging.py).

Every page, followed by its cursor, gives the same obligations as a brute-force filter and
sort of the ledger, each once; the index follows the ledger as obligations are opened,
fulfilled, breached and rescheduled; cursors are bound to their filters.
"""

from __future__ import annotations

import asyncio
from datetime import UTC, datetime, timedelta

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from config.packs import load_rulebook
from deadlines.calendar import WorkCalendar
from deadlines.ledger import Ledger
from deadlines.obligations import Obligation
from deadlines.query import Filters, ObligationIndex
from schemas.events import parse_event
from web.paging import (
    MAX_LIMIT,
    Query,
    QueryError,
    decode_cursor,
    encode_cursor,
    local_page,
    parse_query,
)

BOOK = load_rulebook()
CAL = WorkCalendar.official()
T0 = datetime(2026, 3, 2, 9, 0, tzinfo=UTC)
UNITS = ("sh-gov", "sh-yingji", "sh-jiaowei")


def incident(i: int, unit: str, minutes: int) -> dict[str, object]:
    return {
        "type": "incident.reported",
        "event_id": f"inc-{i}",
        "unit": unit,
        "incident_id": f"I-{i}",
        "occurred_at": (T0 + timedelta(minutes=minutes)).isoformat(),
        "title": f"事件 {i}",
        "severity": "II",
    }


def ledger_with(specs: list[tuple[int, int]]) -> tuple[Ledger, ObligationIndex]:
    """Incidents ``(unit number, minutes after T0)``; the index fed like the runtime does."""
    led, index = Ledger(BOOK, CAL), ObligationIndex()
    for i, (u, minutes) in enumerate(specs):
        led.apply(parse_event(incident(i, UNITS[u % len(UNITS)], minutes)))
    index.update(led.take_dirty())
    return led, index


def brute(led: Ledger, f: Filters) -> list[str]:
    return [
        ob.id for ob in sorted(led.obligations(), key=lambda o: (o.due_at, o.id)) if f.keeps(ob)
    ]


def all_pages(index: ObligationIndex, f: Filters, limit: int) -> list[str]:
    out, query = [], Query(f, None, limit)
    while True:
        views, last = asyncio.run(local_page([index], query))
        out += [v["id"] for v in views]
        assert len(views) <= limit
        if last is None:
            return out
        query = Query(f, last, limit)


filters = st.builds(
    Filters,
    status=st.sampled_from([None, "pending", "missed"]),
    unit=st.sampled_from([None, *UNITS, "nobody"]),
    rule=st.sampled_from([None, "first_release_5h", "press_conference_24h"]),
    due_before=st.sampled_from([None, int((T0 + timedelta(hours=7)).timestamp())]),
)


@settings(max_examples=60, deadline=None)
@given(
    specs=st.lists(st.tuples(st.integers(0, 2), st.integers(0, 600)), min_size=0, max_size=60),
    f=filters,
    limit=st.integers(1, 7),
    tick_hours=st.integers(0, 30),
)
def test_pages_equal_a_brute_force_sort(
    specs: list[tuple[int, int]], f: Filters, limit: int, tick_hours: int
) -> None:
    led, index = ledger_with(specs)
    led.tick(int((T0 + timedelta(hours=tick_hours)).timestamp()))  # some breached: missed
    index.update(led.take_dirty())
    assert all_pages(index, f, limit) == brute(led, f)
    assert len(index) == sum(1 for _ in led.obligations())


def test_a_page_step_looks_at_no_more_than_its_budget() -> None:
    _, index = ledger_with([(0, m) for m in range(50)])
    step = index.step(Filters(unit="nobody-here"), None, 10, 7)
    assert step.matches == [] and step.done  # no such unit: an empty list, nothing to scan
    step = index.step(Filters(status="met"), None, 10, 7)
    assert step.matches == [] and step.done  # no met obligations: an empty status list
    step = index.step(Filters(rule="first_release_5h"), None, 100, 7)
    assert len(step.matches) == 7 and not step.done and step.last == step.matches[-1][0]


def test_the_index_follows_fulfilment_and_subject_lookups() -> None:
    led, index = ledger_with([(0, 0), (1, 5)])
    first = index.page(Filters(subject_id="I-0"), None, 10)
    assert {ob.rule.id for _, ob in first} >= {"first_release_5h"}
    ob = index.get("first_release_5h:I-0")
    assert isinstance(ob, Obligation) and ob.status == "pending"
    led.apply(
        parse_event(
            {
                "type": "document.published",
                "event_id": "pub-1",
                "unit": "sh-gov",
                "publication_id": "p-1",
                "published_at": (T0 + timedelta(hours=1)).isoformat(),
                "kind": "press_release",
                "channel": "portal",
                "url": "https://www.sh.example/a.html",
                "refs": {"incident_id": "I-0"},
            }
        )
    )
    index.update(led.take_dirty())
    met = [o.id for _, o in index.page(Filters(status="met"), None, 10)]
    assert "first_release_5h:I-0" in met
    assert "first_release_5h:I-0" not in [
        o.id for _, o in index.page(Filters(status="pending"), None, 10)
    ]
    index.drop("incident_id=I-0")
    assert index.get("first_release_5h:I-0") is None
    assert index.page(Filters(subject_id="I-0"), None, 10) == []


def test_keyset_paging_survives_changes_between_pages() -> None:
    led, index = ledger_with([(0, m) for m in range(0, 100, 10)])
    f = Filters(rule="first_release_5h")
    views, last = asyncio.run(local_page([index], Query(f, None, 4)))
    assert last is not None
    # meanwhile: one opened before the cursor (not shown again), one after (shown)
    led.apply(parse_event(incident(900, "sh-gov", -30)))
    led.apply(parse_event(incident(901, "sh-gov", 500)))
    index.update(led.take_dirty())
    rest = all_pages_from(index, f, last)
    seen = [v["id"] for v in views] + rest
    assert len(seen) == len(set(seen))
    assert "first_release_5h:I-901" in rest and "first_release_5h:I-900" not in seen


def all_pages_from(index: ObligationIndex, f: Filters, after: tuple[int, str]) -> list[str]:
    out: list[str] = []
    last: tuple[int, str] | None = after
    while last is not None:
        views, last = asyncio.run(local_page([index], Query(f, last, 3)))
        out += [v["id"] for v in views]
    return out


def test_cursors_are_opaque_and_bound_to_their_filters() -> None:
    f = Filters(unit="sh-gov")
    cursor = encode_cursor((1773037200, "r:沪府办〔2026〕12号"), f)
    assert decode_cursor(cursor, f) == (1773037200, "r:沪府办〔2026〕12号")
    assert "沪" not in cursor and "/" not in cursor and "+" not in cursor
    with pytest.raises(QueryError, match="made for other filters"):
        decode_cursor(cursor, Filters(unit="sh-yingji"))
    with pytest.raises(QueryError, match="not a cursor"):
        decode_cursor("bm9wZQ", f)
    query = parse_query({"unit": "sh-gov", "cursor": cursor, "limit": "20"})
    assert query.after == (1773037200, "r:沪府办〔2026〕12号") and query.limit == 20


@pytest.mark.parametrize(
    ("params", "parameter"),
    [
        ({"limit": "0"}, "limit"),
        ({"limit": str(MAX_LIMIT + 1)}, "limit"),
        ({"limit": "ten"}, "limit"),
        ({"due_before": "tomorrow"}, "due_before"),
        ({"cursor": "%%%"}, "cursor"),
        ({"colour": "red"}, "colour"),
    ],
)
def test_bad_queries_name_the_parameter(params: dict[str, str], parameter: str) -> None:
    with pytest.raises(QueryError) as exc:
        parse_query(params)
    assert exc.value.parameter == parameter and str(exc.value).startswith(parameter)


def test_the_default_and_largest_page() -> None:
    assert parse_query({}).limit == 500
    assert parse_query({"limit": str(MAX_LIMIT)}).limit == MAX_LIMIT


@settings(max_examples=300, deadline=None)
@given(
    params=st.dictionaries(
        st.sampled_from(["status", "unit", "rule", "subject_id", "due_before", "limit", "cursor"]),
        st.text(max_size=40),
        max_size=5,
    )
)
def test_fuzz_any_query_is_read_or_refused_naming_a_parameter(params: dict[str, str]) -> None:
    try:
        query = parse_query(params)
    except QueryError as exc:
        assert exc.parameter in params
        return
    assert 1 <= query.limit <= MAX_LIMIT
