"""The Faust agents without a broker (``agent.test_context()``, memory store)."""

from __future__ import annotations

import asyncio
import json
from pathlib import Path
from types import SimpleNamespace
from typing import Any

import pytest

from agents.ingest import IngestService
from config.settings import load_settings
from monitor.app import create_app
from streams.table import ROWS_KEY, unpack_rows
from streams.topics import NOTIFICATIONS
from worker.context import Context
from worker.ledgers import encode_record, partition_of

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


class Sent:
    """What the agents sent, per topic (the producer is not started without a broker)."""

    def __init__(self) -> None:
        self.records: dict[str, list[dict[str, Any]]] = {}

    def recorder(self, topic: str) -> Any:
        def send_soon(**kwargs: Any) -> Any:
            self.records.setdefault(topic, []).append(kwargs)
            return SimpleNamespace(message=SimpleNamespace(partition=kwargs.get("partition") or 0))

        return send_soon

    def async_recorder(self, topic: str) -> Any:
        async def send(**kwargs: Any) -> Any:
            self.recorder(topic)(**kwargs)
            acked: asyncio.Future[None] = asyncio.get_running_loop().create_future()
            acked.set_result(None)
            return acked

        return send

    async def publish(
        self, topic: str, partition: int, records: list[tuple[bytes, bytes]]
    ) -> list[tuple[asyncio.Future[None], int]]:
        """Stands in for ``Context.publish`` (batches through the app's producer)."""
        for key, value in records:
            self.records.setdefault(topic, []).append(
                {"key": key, "value": value, "partition": partition}
            )
        acked: asyncio.Future[None] = asyncio.get_running_loop().create_future()
        acked.set_result(None)
        return [(acked, len(records))]


@pytest.fixture
def sent() -> Sent:
    return Sent()


@pytest.fixture
def ctx(tmp_path: Path, sent: Sent) -> Context:
    settings = load_settings(
        env_file=None, data_dir=tmp_path, kafka_broker="127.0.0.1:1", web_port=1
    )
    ctx = create_app(settings, "127.0.0.1:1", store="memory://", embedded=False)
    ctx.subject_events.send = sent.async_recorder("subject-events")
    ctx.publish = sent.publish  # type: ignore[method-assign]
    ctx.dead_letters.send = sent.async_recorder("dead-letters")
    ctx.table.changelog_topic = SimpleNamespace(send_soon=sent.recorder("changelog"))
    return ctx


def agent(ctx: Context, name: str) -> Any:
    return next(a for a in ctx.app.agents.values() if a.name.endswith(name))


def origin(offset: int) -> Any:
    return SimpleNamespace(topic="govclock-events", partition=0, offset=offset)


async def test_ingest_routes_a_valid_event_and_dead_letters_a_bad_one(
    ctx: Context, sent: Sent
) -> None:
    service = IngestService(ctx)
    acked = await service.process(
        [
            (json.dumps(EVENT, ensure_ascii=False).encode(), origin(0)),
            (b'{"event_id": "x", "type": "incident.reported"}', origin(1)),
        ]
    )
    await acked
    assert ctx.stats["ingested"] == 1 and ctx.stats["rejected"] == 1
    assert ctx.stats["routed"] == 2  # the document's subject and the unit note
    batches = [json.loads(r["value"])["batch"] for r in sent.records["subject-events"]]
    keys = sorted(k for batch in batches for k, _ in batch)
    assert keys == [f"document_id={EVENT['document_id']}", "unit=sh-gov"]
    for record, batch in zip(sent.records["subject-events"], batches, strict=True):
        assert {partition_of(k, ctx.settings.partitions) for k, _ in batch} == {record["partition"]}
    (dead,) = sent.records["dead-letters"]
    letter = json.loads(dead["value"])
    assert "incident_id" in letter["reason"] and letter["offset"] == 1


async def test_ledger_agent_applies_records_and_keeps_the_subject(ctx: Context, sent: Sent) -> None:
    key = f"document_id={EVENT['document_id']}"
    ctx.ready = True
    async with agent(ctx, "ledger").test_context() as probe:
        await probe.put(
            encode_record("event", EVENT),
            key=key.encode(),
            partition=partition_of(key, ctx.settings.partitions),
        )
    led = ctx.worker.ledgers[partition_of(key, ctx.settings.partitions)]
    ob = led.get(f"online_posting_10wd:{EVENT['document_id']}")
    assert ob is not None and ob.status == "pending"
    assert ctx.stats["effects_opened"] == 1
    (note,) = sent.records[NOTIFICATIONS]
    assert json.loads(note["value"])["kind"] == "opened"
    partition = partition_of(key, ctx.settings.partitions)
    rules_key = ctx.worker.rules_row_key(partition)
    (record,) = sent.records["changelog"]  # one multi-row record for the batch
    assert record["key"] == ROWS_KEY and record["partition"] == partition
    rows = unpack_rows(record["value"])
    assert [k for k, _ in rows] == [key.encode(), rules_key.encode()]
    assert ctx.table[key.encode()] == rows[0][1]  # the local store has the row too
    rules_row = json.loads(rows[1][1] or b"")
    assert list(rules_row["rules"]) == ["default/online_posting_10wd@2016-01-01"]


async def test_ingest_routes_in_a_child_process_and_replaces_it_when_it_dies(
    ctx: Context,
) -> None:
    import os
    import signal

    service = IngestService(ctx)
    service.pool = service._start_pool()
    raw = json.dumps(EVENT, ensure_ascii=False).encode()
    try:
        first = await service.route([raw, b"not json"])
        assert first.routed == 2  # the document's subject, and the unit's note
        assert [(index, "JSON" in why) for _, why, index in first.rejected] == [(1, True)]
        (pid,) = service.pool._processes  # the routing process
        assert pid != os.getpid()
        os.kill(pid, signal.SIGKILL)
        again = await service.route([raw])
        # A new process routed it, with its own memory of units: the unit is noted again
        # (harmless: noting a unit is idempotent).
        assert again.routed == 2
        assert list(service.pool._processes) != [pid]
    finally:
        service.pool.shutdown(wait=True)


def test_the_routing_process_ends_when_its_worker_is_killed(tmp_path: Path) -> None:
    import os
    import subprocess
    import sys
    import time

    script = tmp_path / "parent.py"
    script.write_text(
        "import multiprocessing, os, signal\n"
        "from concurrent.futures import ProcessPoolExecutor\n"
        "from agents.ingest import _route_in_child, _start_router\n"
        "if __name__ == '__main__':\n"
        "    pool = ProcessPoolExecutor(1, mp_context=multiprocessing.get_context('spawn'),\n"
        "        initializer=_start_router, initargs=(frozenset({'incident_id'}), 4))\n"
        "    pool.submit(_route_in_child, []).result()\n"
        "    print(next(iter(pool._processes)), flush=True)\n"
        "    os.kill(os.getpid(), signal.SIGKILL)\n"
    )
    root = Path(__file__).resolve().parents[1]
    out = subprocess.run(
        [sys.executable, str(script)],
        capture_output=True,
        text=True,
        timeout=60,
        env={**os.environ, "PYTHONPATH": str(root)},
    )
    child = int(out.stdout.split()[0])
    deadline = time.monotonic() + 10
    while Path(f"/proc/{child}").exists() and time.monotonic() < deadline:
        time.sleep(0.1)
    alive = Path(f"/proc/{child}").exists()
    if alive:
        os.kill(child, 9)
    assert not alive, "the routing process outlived its killed parent"


def test_a_worker_that_routes_to_other_workers_partitions_is_still_caught_up(
    ctx: Context,
) -> None:
    """On a cluster a worker routes records to partitions other workers apply, so its own
    applied count can stay below its routed count for good. Readiness (and the sweeper,
    which waits for it) must not hang on that: only a journal replayed into a fresh
    embedded broker, where one worker owns every partition, is waited for by those counts.
    (Seen with two workers on one broker: events posted to one worker just as it became
    ready left it unready, and its partitions unswept.)"""
    ctx.ready = ctx.ingest_caught_up = True
    ctx.stats.update(ingested=8, routed=6, applied=3)
    assert ctx.caught_up()


def test_a_replayed_journal_is_through_the_pipeline_before_the_worker_is_caught_up(
    ctx: Context,
) -> None:
    ctx.backlog = 8  # journaled events produced into a fresh embedded broker at start
    ctx.ready = ctx.ingest_caught_up = True
    ctx.stats.update(ingested=5, routed=5, applied=5)
    assert not ctx.caught_up()  # three still to be ingested
    ctx.stats.update(ingested=8, routed=9, applied=7)
    assert not ctx.caught_up()  # two routed records still to be applied
    ctx.stats.update(applied=9)
    assert ctx.caught_up()
    ctx.stats.update(routed=12)  # once caught up, live traffic does not undo it
    assert ctx.caught_up()
