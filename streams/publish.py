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


async def publish_batches(
    producer: Any, topic: str, partition: int, records: Sequence[tuple[bytes, bytes]]
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
