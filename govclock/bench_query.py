"""``govclock bench --query``: first pages of GET /v1/obligations at a million open obligations,
with the event loop's longest stall and the lateness of breaches falling due meanwhile.

One process holds a ledger of ``open`` obligations (``document.issued`` events applied by the
pure core) and its query index, and serves the list route's own code (web/paging.py:
parse_query, local_page, orjson) over aiohttp on 127.0.0.1, next to a sweeper that ticks the
ledger when something falls due (as agents/sweeper.py does, every 0.2 s) and a probe that
measures how late the loop wakes. A second process runs 20 concurrent clients asking for
first pages with mixed filters. Incidents whose 5-hour window ends during the run give the
breaches whose lateness is measured. Kafka is not involved: this measures the query path
and what it does to the loop, not the broker.
"""

from __future__ import annotations

import asyncio
import http.client
import multiprocessing
import statistics
import threading
import time
from datetime import UTC, date, datetime
from typing import Any

import orjson
from aiohttp import web

from config.packs import load_rulebook
from deadlines.calendar import WorkCalendar
from deadlines.ledger import Ledger
from deadlines.query import ObligationIndex
from govclock.runtime import tune_gc
from schemas.events import parse_event
from web.paging import QueryError, local_page, parse_query

CLIENTS = 20
UNITS = [f"unit-{i:03d}" for i in range(200)]
QUERIES = [
    "/v1/obligations",
    "/v1/obligations?status=pending",
    "/v1/obligations?unit=unit-007",
    "/v1/obligations?rule=online_posting_10wd&limit=100",
    "/v1/obligations?unit=unit-150&status=pending&limit=50",
    "/v1/obligations?due_before=2026-06-01",
    "/v1/obligations?subject_id=D-12345",
    "/v1/obligations?rule=first_release_5h",
]


def build(open_obligations: int) -> tuple[Ledger, ObligationIndex]:
    led, index = Ledger(load_rulebook(), WorkCalendar.official()), ObligationIndex()
    day = date(2026, 1, 5).toordinal()
    for i in range(open_obligations):
        led.apply(
            parse_event(
                {
                    "type": "document.issued",
                    "event_id": f"d-{i}",
                    "unit": UNITS[i % len(UNITS)],
                    "document_id": f"D-{i}",
                    "issued_at": date.fromordinal(day + i % 300).isoformat(),
                    "kind": "policy",
                    "disclosure": "proactive",
                    "title": f"文件 {i}",
                }
            )
        )
        if i % 50_000 == 49_999:
            index.update(led.take_dirty())
    led.tick(int(time.time()))  # the overdue documents breach now, not during the run
    index.update(led.take_dirty())
    return led, index


def add_breaches(led: Ledger, index: ObligationIndex, breaches: int) -> None:
    """Incidents whose first-release window ends 5..17 s from now (just before serving)."""
    now = int(time.time())
    for i in range(breaches):
        occurred = now + 5 + (12 * i) // max(1, breaches) - 5 * 3600
        led.apply(
            parse_event(
                {
                    "type": "incident.reported",
                    "event_id": f"i-{i}",
                    "unit": UNITS[i % len(UNITS)],
                    "incident_id": f"I-{i}",
                    "occurred_at": datetime.fromtimestamp(occurred, UTC).isoformat(),
                    "title": f"事件 {i}",
                    "severity": "II",
                }
            )
        )
    led.tick(now)
    index.update(led.take_dirty())


def clients(port: int, seconds: float, out: Any) -> None:
    """20 threads asking first pages until ``seconds`` pass; latencies to ``out``."""
    latencies: list[float] = []
    lock = threading.Lock()
    stop = time.monotonic() + seconds

    def run(n: int) -> None:
        conn = http.client.HTTPConnection("127.0.0.1", port, timeout=30)
        i = n
        while time.monotonic() < stop:
            t0 = time.perf_counter()
            conn.request("GET", QUERIES[i % len(QUERIES)])
            resp = conn.getresponse()
            resp.read()
            assert resp.status == 200, resp.status
            with lock:
                latencies.append(time.perf_counter() - t0)
            i += 1
        conn.close()

    threads = [threading.Thread(target=run, args=(n,)) for n in range(CLIENTS)]
    for t in threads:
        t.start()
    for t in threads:
        t.join()
    out.put(latencies)


async def serve(led: Ledger, index: ObligationIndex, seconds: float) -> dict[str, Any]:
    stalls: list[float] = []
    lateness: list[float] = []

    async def handle(request: web.Request) -> web.Response:
        try:
            query = parse_query(request.query)
        except QueryError as exc:
            return web.json_response({"error": str(exc)}, status=400)
        views, last = await local_page([index], query)
        body = orjson.dumps({"obligations": views, "next": None if last is None else 1})
        return web.Response(body=body, content_type="application/json")

    async def probe() -> None:
        while True:
            t0 = time.perf_counter()
            await asyncio.sleep(0.005)
            stalls.append(time.perf_counter() - t0 - 0.005)

    async def sweeper() -> None:
        while True:
            await asyncio.sleep(0.2)
            now = time.time()
            due = led.next_due()
            if due is not None and due <= now:
                for fx in led.tick(int(now)):
                    if fx.kind == "breached":
                        lateness.append(time.time() - (fx.due_at + 1))
                index.update(led.take_dirty())

    app = web.Application()
    app.router.add_get("/v1/obligations", handle)
    runner = web.AppRunner(app, access_log=None)
    await runner.setup()
    site = web.TCPSite(runner, "127.0.0.1", 0)
    await site.start()
    port = site._server.sockets[0].getsockname()[1]  # type: ignore[union-attr]
    tasks = [asyncio.create_task(probe()), asyncio.create_task(sweeper())]
    queue: Any = multiprocessing.get_context("spawn").Queue()
    proc = multiprocessing.get_context("spawn").Process(target=clients, args=(port, seconds, queue))
    proc.start()
    latencies: list[float] = await asyncio.get_running_loop().run_in_executor(None, queue.get)
    proc.join()
    for task in tasks:
        task.cancel()
    await runner.cleanup()
    return {"latencies": latencies, "stalls": stalls, "lateness": lateness}


def pct(values: list[float], q: float) -> float:
    if not values:
        return float("nan")
    ordered = sorted(values)
    return ordered[min(len(ordered) - 1, int(q * len(ordered)))]


def run_query_bench(open_obligations: int = 1_000_000, seconds: float = 20.0) -> dict[str, Any]:
    breaches = 200
    t0 = time.perf_counter()
    led, index = build(open_obligations)
    loaded = time.perf_counter() - t0
    gc_settings = tune_gc()  # as a worker does at start and after restoring its ledgers
    add_breaches(led, index, breaches)
    got = asyncio.run(serve(led, index, seconds))
    lat, late = got["latencies"], got["lateness"]
    return {
        "open_obligations": len(index),
        "load_seconds": round(loaded, 1),
        "clients": CLIENTS,
        "requests": len(lat),
        "first_page_p50_seconds": round(statistics.median(lat), 4) if lat else None,
        "first_page_p99_seconds": round(pct(lat, 0.99), 4),
        "max_loop_stall_seconds": round(max(got["stalls"], default=0.0), 4),
        "breaches_measured": len(late),
        "breach_lateness_p99_seconds": round(pct(late, 0.99), 3),
        **gc_settings,
        "targets": {
            "first_page_p99_seconds": 0.1,
            "max_loop_stall_seconds": 0.02,
            "breach_lateness_p99_seconds": 1.0,
        },
    }
