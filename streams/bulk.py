"""Bulk readers: aiokafka consumers for topics whose records Faust's per-record stream path
(~100 µs each) would make too slow, each in its own consumer group, offsets committed by
their owner (agents/ingest.py, agents/notifier.py's feed)."""

from __future__ import annotations

import asyncio
from collections import deque
from typing import Any


def bulk_consumer(app: Any, topic: str, group: str, max_records: int) -> Any:
    """An ``AIOKafkaConsumer`` of ``topic`` in ``group`` on the app's brokers, with the app's
    session settings (the embedded broker's, docs/broker.md); not started."""
    from aiokafka import AIOKafkaConsumer

    conf = app.conf
    return AIOKafkaConsumer(
        topic,
        bootstrap_servers=",".join(f"{url.host}:{url.port}" for url in conf.broker),
        group_id=group,
        enable_auto_commit=False,
        auto_offset_reset="earliest",
        session_timeout_ms=int(conf.broker_session_timeout * 1000),
        # Tansu answers a JoinGroup after half the rebalance timeout (60 s by default).
        rebalance_timeout_ms=int(conf.broker_session_timeout * 1000),
        heartbeat_interval_ms=int(conf.broker_heartbeat_interval * 1000),
        max_poll_records=max_records,
    )


#: Fetched batches whose sends are not yet all acknowledged, in fetch order: (a future
#: that completes when they are, the offsets to commit then).
InFlight = deque[tuple["asyncio.Future[Any]", dict[Any, int]]]


async def commit_acknowledged(
    consumer: Any, in_flight: InFlight, limit: int, log: Any, what: str
) -> list[dict[Any, int]]:
    """Commit, in fetch order, the offsets of the oldest batches whose sends the broker has
    acknowledged, waiting for the oldest while more than ``limit`` are in flight; returns
    the offsets committed (at least once: a batch is committed only after its sends)."""
    committed = []
    while in_flight and (in_flight[0][0].done() or len(in_flight) > limit):
        acked, offsets = in_flight.popleft()
        await acked
        await _commit(consumer, offsets, log, what)
        committed.append(offsets)
    return committed


async def _commit(consumer: Any, offsets: dict[Any, int], log: Any, what: str) -> None:
    """Commit ``offsets``; after a rebalance the new owner re-reads instead (a warning)."""
    from aiokafka.errors import CommitFailedError, IllegalStateError

    try:
        await consumer.commit(offsets)
    except (CommitFailedError, IllegalStateError):
        log.warning(f"govclock {what}: offsets not committed (rebalance)")
