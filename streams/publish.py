"""Many records to one partition as a few produce batches, through the app's own producer.

Faust's ``send_soon`` costs ~100 µs per record (a ``FutureMessage``, the producer buffer,
aiokafka's per-message append); a ledger batch can emit tens of thousands of effects (the
first tick after a backlog breaches every overdue obligation at once). Here the records are
appended to aiokafka ``BatchBuilder``s (``create_batch``/``send_batch``, aiokafka's public
batch API) of the producer Faust already runs, so:

* they are still one Kafka record each, keyed as before, in order within the partition;
* Faust's commit, which flushes that producer before committing the input offsets, also
  waits for them: an input offset is never committed before its effects are acknowledged.
"""

from __future__ import annotations

import asyncio
from collections.abc import Sequence
from typing import Any

#: The size a batch record (``{"batch": […]}``, :func:`batch_records`) stays under: half the
#: broker's default 1 MiB message limit (Kafka's and Tansu's), leaving room for the envelope.
BATCH_RECORD_BYTES = 512 * 1024


def batch_records(items: Sequence[bytes], limit: int = BATCH_RECORD_BYTES) -> list[bytes]:
    """``{"batch": [item, …]}`` records holding ``items`` (each an encoded JSON value) in
    order, each under about ``limit`` bytes (an item larger than that goes alone). The
    subject-events and escalation-inputs topics carry such records so that a consumer pays
    Faust's per-record cost once per batch, not once per item."""
    out: list[bytes] = []
    chunk: list[bytes] = []
    size = 0
    for item in items:
        if chunk and size + len(item) > limit:
            out.append(b'{"batch":[' + b",".join(chunk) + b"]}")
            chunk, size = [], 0
        chunk.append(item)
        size += len(item) + 1
    if chunk:
        out.append(b'{"batch":[' + b",".join(chunk) + b"]}")
    return out


async def publish_batches(
    producer: Any, topic: str, partition: int, records: Sequence[tuple[bytes | None, bytes]]
) -> list[tuple[asyncio.Future[Any], int]]:
    """Send ``records`` (key, value) to ``topic``/``partition`` with ``producer`` (an
    ``AIOKafkaProducer``); returns each batch's future with the number of records it holds,
    in order. A batch holds up to the producer's ``max_batch_size`` bytes (one record
    larger than that goes alone)."""
    sent: list[tuple[asyncio.Future[Any], int]] = []
    batch = producer.create_batch()
    count = 0
    for key, value in records:
        if batch.append(key=key, value=value, timestamp=None) is None:
            sent.append((await producer.send_batch(batch, topic, partition=partition), count))
            batch, count = producer.create_batch(), 0
            if batch.append(key=key, value=value, timestamp=None) is None:
                raise ValueError(f"a record of {len(value)} bytes does not fit a new batch")
        count += 1
    if count:
        sent.append((await producer.send_batch(batch, topic, partition=partition), count))
    return sent


def aiokafka_producer(app: Any) -> Any:
    """The ``AIOKafkaProducer`` behind a Faust app's producer (started with the app)."""
    return app.producer._ensure_producer()
