"""``govclock bench --pipeline``: events through broker + worker, next to the raw consume rate.

In one run, on one embedded broker:

1. a ``govclock run`` worker (a subprocess, on that broker) starts on empty topics;
2. once it is ready, a realistic mix (the core benchmark's generator) is produced to
   ``govclock-events``; from the first record produced until every event is ingested and
   every routed record applied to the ledgers: the pipeline rate (validation, routing,
   re-keying, the core, table writes, effects; producing runs several times faster);
3. a plain aiokafka consumer then reads that same topic from the start: the raw rate;
4. single-event webhook requests, 16 at a time, against that worker: requests per second
   (each answered only after the journal fsync and the broker's acknowledgement);
5. 200 incidents whose windows end over the next 20 s: how late each ``breached`` record
   reaches the notifications topic after its breach instant (due + 1 s), p50/p99/max;
6. the worker's own code on the same events, in this process, with no broker: validation
   and routing (ingest's batches of 2,000), the core, and encoding the table rows and
   effect records. Times the machine's cores over the raw rate, that is the most any
   number of workers could reach here, even if Kafka, rocksdb and the changelog cost
   nothing (``compute_ceiling_ratio``).
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


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        port: int = s.getsockname()[1]
        return port


async def _produce(bootstrap: str, lines: list[bytes]) -> float:
    """Produce ``lines`` round-robin over the partitions with aiokafka's batch API, so the
    producer (Python, in this process) does not hold back the worker being measured."""
    from aiokafka import AIOKafkaProducer

    producer = AIOKafkaProducer(bootstrap_servers=bootstrap, acks="all", max_batch_size=512 * 1024)
    await producer.start()
    t0 = time.perf_counter()
    try:
        futures = []
        chunk = 2000
        for i, start in enumerate(range(0, len(lines), chunk)):
            batch = producer.create_batch()
            for line in lines[start : start + chunk]:
                if batch.append(key=None, value=line, timestamp=None) is None:
                    futures.append(
                        await producer.send_batch(batch, EVENTS, partition=i % PARTITIONS)
                    )
                    batch = producer.create_batch()
                    batch.append(key=None, value=line, timestamp=None)
            futures.append(await producer.send_batch(batch, EVENTS, partition=i % PARTITIONS))
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


def _compute_only(lines: list[bytes]) -> float:
    """Seconds for the worker's code alone (no broker, no table store) over ``lines``,
    batched as ingest batches them, with the worker's garbage-collector settings."""
    import gc

    from agents.ingest import Router
    from config.settings import Settings
    from monitor.run import tune_gc
    from worker.context import load_worker
    from worker.ledgers import effect_record

    worker = load_worker(Settings(), PARTITIONS)  # as monitor.app.create_app builds it
    router = Router(worker.book.all_ref_kinds(), PARTITIONS)
    thresholds = gc.get_threshold()
    tune_gc()
    t0 = time.perf_counter()
    try:
        for start in range(0, len(lines), 2000):
            routed = router.route([(line, None) for line in lines[start : start + 2000]])
            for partition, message in routed.messages():
                effects = worker.handle(partition, None, message)
                worker.changed(partition)
                for fx in effects:
                    effect_record(fx)
        return time.perf_counter() - t0
    finally:
        gc.unfreeze()
        gc.set_threshold(*thresholds)


def get_status_json(url: str) -> tuple[int, dict[str, Any]]:
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


async def _post_due_soon(url: str, count: int, spread_s: float) -> None:
    """Incidents whose 5-hour window ends 3 s .. 3 s + spread from now."""
    import aiohttp

    from deadlines.timefmt import rfc3339

    now = time.time()
    lines = []
    for i in range(count):
        occurred = int(now - 5 * 3600 + 3 + spread_s * i / count)
        lines.append(
            json.dumps(
                {
                    "event_id": f"lat-{i}",
                    "type": "incident.reported",
                    "unit": "unit-latency",
                    "incident_id": f"LAT-{i}",
                    "occurred_at": rfc3339(occurred),
                    "title": "latency probe",
                    "severity": "II",
                }
            )
        )
    async with (
        aiohttp.ClientSession() as session,
        session.post(
            url, data="\n".join(lines), headers={"Content-Type": "application/x-ndjson"}
        ) as resp,
    ):
        if resp.status != 202:
            raise RuntimeError(f"latency probe not accepted: {resp.status}")


async def _breach_lateness(bootstrap: str, count: int, timeout_s: float) -> list[float]:
    """Seconds from each probe's breach instant (due + 1 s) to its record on the topic."""
    from aiokafka import AIOKafkaConsumer

    from streams.topics import NOTIFICATIONS

    consumer = AIOKafkaConsumer(
        NOTIFICATIONS,
        bootstrap_servers=bootstrap,
        group_id=f"latency-{os.getpid()}",
        auto_offset_reset="earliest",
    )
    await consumer.start()
    late: dict[str, float] = {}
    deadline = time.monotonic() + timeout_s
    try:
        while len(late) < count and time.monotonic() < deadline:
            batch = await consumer.getmany(timeout_ms=500)
            for records in batch.values():
                for rec in records:
                    fx = json.loads(rec.value)
                    if fx["kind"] == "breached" and fx["subject_id"].startswith("LAT-"):
                        late[fx["subject_id"]] = rec.timestamp / 1000 - (fx["due_at"] + 1)
    finally:
        await consumer.stop()
    return sorted(late.values())


def _percentile(values: list[float], q: float) -> float:
    return values[min(len(values) - 1, int(q * len(values)))]


def start_worker(
    env: dict[str, str], data: Path, i: int | str, port: int
) -> subprocess.Popen[bytes]:
    log = (data / f"worker-{i}.log").open("wb")
    try:
        return subprocess.Popen(
            [sys.executable, "-m", "govclock.cli", "run"],
            env={
                **env,
                "GOVCLOCK_DATA_DIR": str(data / f"worker-{i}"),
                "GOVCLOCK_WEB_PORT": str(port),
            },
            stdout=log,
            stderr=subprocess.STDOUT,
            start_new_session=True,
        )
    finally:
        log.close()


def stop_worker(proc: subprocess.Popen[bytes]) -> None:
    if proc.poll() is None:
        os.killpg(proc.pid, signal.SIGINT)
        try:
            proc.wait(timeout=30)
        except subprocess.TimeoutExpired:
            os.killpg(proc.pid, signal.SIGKILL)


def _worker_stats(bases: list[str]) -> list[dict[str, int]]:
    """Each worker's counters, read once, so totals and per-worker figures agree."""
    return [
        {
            name: value
            for name, value in get_status_json(f"{base}/readyz")[1].get("stats", {}).items()
            if isinstance(value, int)
        }
        for base in bases
    ]


def _summed(per_worker: list[dict[str, int]]) -> dict[str, int]:
    total: dict[str, int] = {}
    for stats in per_worker:
        for name, value in stats.items():
            total[name] = total.get(name, 0) + value
    return total


def run_pipeline_bench(
    events: int,
    seed: int,
    webhooks: int = 2000,
    workers: int = 1,
    probes: int = 200,
    probe_spread_s: float = 20,
) -> dict[str, Any]:
    lines = [json.dumps(e, ensure_ascii=False).encode() for e in Mix(seed).history(events, 365)]
    n = len(lines)
    with tempfile.TemporaryDirectory(prefix="govclock-bench-") as tmp:
        data = Path(tmp)
        with EmbeddedBroker(data / "broker") as broker:
            bootstrap = broker.bootstrap
            create_topics(bootstrap, all_topic_specs(PARTITIONS))
            env = {
                **os.environ,
                "KAFKA_BROKER": bootstrap,
                "GOVCLOCK_PARTITIONS": str(PARTITIONS),
                # Tansu is not Kafka: the embedded broker's Faust settings (docs/broker.md)
                "BROKER_SESSION_TIMEOUT": "6.0",
                "BROKER_HEARTBEAT_INTERVAL": "2.0",
                "GOVCLOCK_LOG_LEVEL": "WARNING",
            }
            ports = [free_port() for _ in range(workers)]
            procs = [start_worker(env, data, i, port) for i, port in enumerate(ports)]
            bases = [f"http://127.0.0.1:{port}" for port in ports]
            try:
                # Every worker is ready (on empty topics, partitions shared out) before
                # anything is produced, so the clock runs from the first record produced to
                # the last one applied.
                deadline = time.monotonic() + 120
                while any(get_status_json(f"{base}/readyz")[0] != 200 for base in bases):
                    if any(p.poll() is not None for p in procs) or time.monotonic() > deadline:
                        raise RuntimeError("a worker did not become ready")
                    time.sleep(0.05)
                t0 = time.perf_counter()
                produce_s = asyncio.run(_produce(bootstrap, lines))
                per_worker: list[dict[str, int]] = []
                stats: dict[str, int] = {}
                while True:
                    per_worker = _worker_stats(bases)
                    stats = _summed(per_worker)
                    taken = stats.get("ingested", 0) + stats.get("rejected", 0)
                    if taken >= n and stats.get("applied", 0) >= stats.get("routed", 0) > 0:
                        break
                    if time.monotonic() > deadline + 600 or any(
                        p.poll() is not None for p in procs
                    ):
                        raise RuntimeError(f"pipeline did not finish: {stats}")
                    time.sleep(0.05)
                pipeline_s = time.perf_counter() - t0
                by_worker = [one.get("applied", 0) for one in per_worker]
                raw_s = asyncio.run(_raw_consume(bootstrap, n))  # the same topic, now full
                url = f"{bases[0]}/v1/events"
                webhook_s = asyncio.run(_webhooks(url, webhooks))
                asyncio.run(_post_due_soon(url, probes, spread_s=probe_spread_s))
                lateness = asyncio.run(
                    _breach_lateness(bootstrap, probes, timeout_s=40 + probe_spread_s)
                )
            except BaseException:
                for i in range(workers):
                    tail = (data / f"worker-{i}.log").read_text(errors="replace")[-3000:]
                    sys.stderr.write(f"govclock bench: worker {i}'s log ends with:\n{tail}\n")
                raise
            finally:
                for proc in procs:
                    stop_worker(proc)
    compute_s = _compute_only(lines)
    raw_rate = n / raw_s
    pipeline_rate = n / pipeline_s
    cores = os.cpu_count() or 1
    return {
        "events": n,
        "partitions": PARTITIONS,
        "workers": workers,
        "produce_events_per_second": round(n / produce_s),
        "raw_consume_events_per_second": round(raw_rate),
        "pipeline_events_per_second": round(pipeline_rate),
        "pipeline_to_raw_ratio": round(pipeline_rate / raw_rate, 4),
        "target_ratio": ">= 0.25",
        "compute_only_events_per_second": round(n / compute_s),
        "cores": cores,
        "compute_ceiling_ratio": round(cores * n / compute_s / raw_rate, 4),
        "records_routed": stats.get("routed"),
        "records_applied": stats.get("applied"),
        "records_applied_by_worker": by_worker,
        "effects_opened": stats.get("effects_opened"),
        "webhook_requests": webhooks,
        "webhook_requests_per_second": round(webhooks / webhook_s),
        "breach_probes": probes,
        "breach_records_seen": len(lateness),
        "breach_lateness_p50_seconds": round(_percentile(lateness, 0.5), 3),
        "breach_lateness_p99_seconds": round(_percentile(lateness, 0.99), 3),
        "breach_lateness_max_seconds": round(lateness[-1], 3),
        "breach_lateness_target": "p99 <= 1 s",
    }
