"""``govclock bench --pipeline``: events through broker + worker, next to the raw consume rate.

In one run, on one embedded broker:

1. a realistic mix (the core benchmark's generator) is produced to ``govclock-events``;
2. a plain aiokafka consumer reads that topic from the start: the raw consume rate;
3. a ``govclock run`` worker (a subprocess, on that broker) starts; from the moment it is
   ready until every event is ingested and every routed record applied to the ledgers:
   the pipeline rate (validation, routing, re-keying, the core, table writes, effects);
4. single-event webhook requests, 16 at a time, against that worker: requests per second
   (each answered only after the journal fsync and the broker's acknowledgement).
"""

from __future__ import annotations

import asyncio
import json
import os
import signal
import socket
import subprocess
import sys
import tempfile
import time
from pathlib import Path
from typing import Any

from govclock.bench import Mix
from streams.broker import EmbeddedBroker
from streams.topics import EVENTS, all_topic_specs, create_topics

PARTITIONS = 4


def _free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        port: int = s.getsockname()[1]
        return port


async def _produce(bootstrap: str, lines: list[bytes]) -> float:
    from aiokafka import AIOKafkaProducer

    producer = AIOKafkaProducer(bootstrap_servers=bootstrap, linger_ms=5, acks="all")
    await producer.start()
    t0 = time.perf_counter()
    try:
        futures = [await producer.send(EVENTS, value=line) for line in lines]
        await asyncio.gather(*futures)
    finally:
        await producer.stop()
    return time.perf_counter() - t0


async def _raw_consume(bootstrap: str, n: int) -> float:
    from aiokafka import AIOKafkaConsumer

    consumer = AIOKafkaConsumer(
        EVENTS,
        bootstrap_servers=bootstrap,
        group_id=f"raw-bench-{os.getpid()}",
        auto_offset_reset="earliest",
        enable_auto_commit=False,
    )
    await consumer.start()
    seen = 0
    t0 = time.perf_counter()
    try:
        while seen < n:
            batch = await consumer.getmany(timeout_ms=1000, max_records=10_000)
            seen += sum(len(v) for v in batch.values())
    finally:
        await consumer.stop()
    return time.perf_counter() - t0


def _get(url: str) -> tuple[int, dict[str, Any]]:
    import urllib.error
    import urllib.request

    try:
        with urllib.request.urlopen(url, timeout=2) as resp:
            return resp.status, json.loads(resp.read())
    except urllib.error.HTTPError as exc:
        return exc.code, json.loads(exc.read() or b"{}")
    except OSError:
        return 0, {}


async def _webhooks(url: str, n: int, concurrency: int = 16) -> float:
    import aiohttp

    body = {
        "type": "decision.made",
        "unit": "unit-bench",
        "decided_at": "2026-03-02",
        "kind": "licensing",
    }
    sem = asyncio.Semaphore(concurrency)
    statuses: dict[int, int] = {}

    async with aiohttp.ClientSession() as session:

        async def one(i: int) -> None:
            async with sem:
                payload = {**body, "event_id": f"wh-{i}", "decision_id": f"WH{i}"}
                async with session.post(url, json=payload) as resp:
                    statuses[resp.status] = statuses.get(resp.status, 0) + 1

        t0 = time.perf_counter()
        await asyncio.gather(*(one(i) for i in range(n)))
        elapsed = time.perf_counter() - t0
    if set(statuses) != {202}:
        raise RuntimeError(f"webhook answers: {statuses}")
    return elapsed


def run_pipeline_bench(events: int, seed: int, webhooks: int = 2000) -> dict[str, Any]:
    lines = [
        json.dumps(e, ensure_ascii=False).encode() for e in Mix(seed).history(events, 365)
    ]
    n = len(lines)
    with tempfile.TemporaryDirectory(prefix="govclock-bench-") as tmp:
        data = Path(tmp)
        with EmbeddedBroker(data / "broker") as broker:
            bootstrap = broker.bootstrap
            create_topics(bootstrap, all_topic_specs(PARTITIONS))
            produce_s = asyncio.run(_produce(bootstrap, lines))
            raw_s = asyncio.run(_raw_consume(bootstrap, n))
            port = _free_port()
            env = {
                **os.environ,
                "KAFKA_BROKER": bootstrap,
                "GOVCLOCK_DATA_DIR": str(data / "worker"),
                "GOVCLOCK_WEB_PORT": str(port),
                "GOVCLOCK_PARTITIONS": str(PARTITIONS),
                "GOVCLOCK_LOG_LEVEL": "WARNING",
            }
            log = (data / "worker.log").open("wb")
            proc = subprocess.Popen(
                [sys.executable, "-m", "govclock.cli", "run"],
                env=env,
                stdout=log,
                stderr=subprocess.STDOUT,
                start_new_session=True,
            )
            base = f"http://127.0.0.1:{port}"
            try:
                deadline = time.monotonic() + 120
                while _get(f"{base}/readyz")[0] != 200:
                    if proc.poll() is not None or time.monotonic() > deadline:
                        raise RuntimeError(f"worker did not become ready; see {log.name}")
                    time.sleep(0.05)
                t0 = time.perf_counter()
                stats: dict[str, Any] = {}
                while True:
                    _, body = _get(f"{base}/readyz")
                    stats = body.get("stats", {})
                    taken = stats.get("ingested", 0) + stats.get("rejected", 0)
                    if taken >= n and stats.get("applied", 0) >= stats.get("routed", 0) > 0:
                        break
                    if time.monotonic() > deadline + 600 or proc.poll() is not None:
                        raise RuntimeError(f"pipeline did not finish: {stats}")
                    time.sleep(0.05)
                pipeline_s = time.perf_counter() - t0
                webhook_s = asyncio.run(_webhooks(f"{base}/v1/events", webhooks))
            finally:
                os.killpg(proc.pid, signal.SIGINT)
                try:
                    proc.wait(timeout=30)
                except subprocess.TimeoutExpired:
                    os.killpg(proc.pid, signal.SIGKILL)
                log.close()
    raw_rate = n / raw_s
    pipeline_rate = n / pipeline_s
    return {
        "events": n,
        "partitions": PARTITIONS,
        "produce_events_per_second": round(n / produce_s),
        "raw_consume_events_per_second": round(raw_rate),
        "pipeline_events_per_second": round(pipeline_rate),
        "pipeline_to_raw_ratio": round(pipeline_rate / raw_rate, 4),
        "target_ratio": ">= 0.25",
        "records_routed": stats.get("routed"),
        "records_applied": stats.get("applied"),
        "effects_opened": stats.get("effects_opened"),
        "webhook_requests": webhooks,
        "webhook_requests_per_second": round(webhooks / webhook_s),
    }
