"""The multi-row changelog records of :mod:`streams.table`, and ingest routing."""

from __future__ import annotations

import json
from types import SimpleNamespace
from typing import Any

import pytest
from hypothesis import given
from hypothesis import strategies as st

from agents.ingest import Router
from config.packs import load_rulebook
from streams.table import ROWS_KEY, expand, pack_rows, unpack_rows
from worker.ledgers import partition_of

rows_strategy = st.lists(
    st.tuples(st.binary(min_size=1, max_size=40), st.none() | st.binary(max_size=200)),
    max_size=30,
)


@given(rows_strategy, st.integers(min_value=1, max_value=600))
def test_packed_records_unpack_to_the_same_rows_in_order(rows: Any, limit: int) -> None:
    records = pack_rows(rows, limit=limit)
    assert [row for record in records for row in unpack_rows(record)] == rows
    for record in records:  # a record only exceeds the limit when it holds a single row
        assert len(record) <= limit or len(unpack_rows(record)) == 1


def test_a_truncated_record_is_an_error_that_says_where() -> None:
    (record,) = pack_rows([(b"k", b"value")])
    with pytest.raises(ValueError, match="truncated rows record at byte"):
        unpack_rows(record[:6])
    with pytest.raises(ValueError, match="runs past the end"):
        unpack_rows(record[:-1])


def message(key: bytes, value: bytes | None, offset: int) -> Any:
    msg = SimpleNamespace(
        topic="govclock-subjects-changelog",
        partition=2,
        offset=offset,
        tp=("govclock-subjects-changelog", 2),
        key=key,
        value=value,
    )
    return SimpleNamespace(key=key, value=value, message=msg)


def test_recovery_expands_rows_records_and_passes_plain_ones_through() -> None:
    (record,) = pack_rows([(b"a=1", b"A"), (b"b=2", None)])
    plain = message(b"c=3", b"C", 7)
    out = list(expand([plain, message(ROWS_KEY, record, 8)]))
    assert out[0] is plain
    assert [(e.key, e.value, e.message.offset, e.message.partition) for e in out[1:]] == [
        (b"a=1", b"A", 8, 2),
        (b"b=2", None, 8, 2),
    ]
    assert all(e.message.key == e.key and e.message.value == e.value for e in out[1:])


EVENT = {
    "event_id": "d-1",
    "type": "document.issued",
    "unit": "sh-gov",
    "document_id": "沪府办〔2026〕7号",
    "issued_at": "2026-02-12",
    "kind": "normative",
    "disclosure": "proactive",
    "title": "关于做好有关工作的通知",
}


def test_router_splices_events_into_per_partition_batches_and_notes_new_units() -> None:
    router = Router(load_rulebook(packs_dir=None, units_file=None).all_ref_kinds(), 4)
    raw = json.dumps(EVENT, ensure_ascii=False).encode()
    second = json.dumps({**EVENT, "event_id": "d-2"}, ensure_ascii=False).encode()
    batch = router.route([(raw, 0), (b"{", 1), (second, 2)])
    assert [(origin, "not valid JSON" in why) for _, why, origin in batch.rejected] == [(1, True)]
    assert batch.types == {"document.issued": 2}
    items = []
    for partition, message in batch.messages():
        for key, record in json.loads(message)["batch"]:
            assert partition_of(key, 4) == partition
            items.append((key, record))
    doc_key = f"document_id={EVENT['document_id']}"
    assert items.count(("unit=sh-gov", {"unit": "sh-gov"})) == 1  # the unit, noted once
    assert [r["event"]["event_id"] for k, r in items if k == doc_key] == ["d-1", "d-2"]
    assert batch.routed == 3


def test_router_messages_stay_under_the_size_limit() -> None:
    router = Router(load_rulebook(packs_dir=None, units_file=None).all_ref_kinds(), 1)
    events = [
        json.dumps({**EVENT, "event_id": f"d-{i}", "document_id": f"D{i}"}).encode()
        for i in range(50)
    ]
    batch = router.route([(e, i) for i, e in enumerate(events)])
    messages = batch.messages(limit=2000)
    assert len(messages) > 1 and all(len(m) <= 2000 + 600 for _, m in messages)
    keys = [k for _, m in messages for k, _ in json.loads(m)["batch"]]
    assert keys == ["unit=sh-gov"] + [f"document_id=D{i}" for i in range(50)]


def test_a_padded_event_near_the_broker_limit_is_routed_compact() -> None:
    """An event record padded with whitespace to nearly 1 MiB (the broker's default message
    limit) would not fit a record once wrapped; it is routed in its compact form."""
    kinds = load_rulebook(packs_dir=None, units_file=None).all_ref_kinds()
    compact = json.dumps(EVENT, ensure_ascii=False).encode()
    padded = compact[:-1] + b" " * (1024 * 1024 - len(compact) - 10) + b"}"
    # a router each: a router sends a unit's record only the first time it sees the unit
    small = Router(kinds, 1).route([(compact, 0)])
    batch = Router(kinds, 1).route([(padded, 0)])
    ((_, message),) = batch.messages()
    assert len(message) < 64 * 1024
    assert json.loads(message) == json.loads(small.messages()[0][1])
