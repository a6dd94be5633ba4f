"""``govclock bench --history``: restart follows what is open, not history.

For 100,000 and 1,000,000 events of history — documents issued and published months ago
(met, settled, in the archive after the first start), the same few thousand recent documents
still open in both — a ``govclock run`` (embedded broker, a subprocess) is started on a data
directory whose journal holds that history, as after months of running, and timed until
``/readyz`` says ready: the first start compacts the journal (worker/compaction.py), a
second start shows what every later restart costs. Then memory: the worker's resident size
with ``--open`` open obligations over the same worker empty, per open obligation. Then the
archive's write rate into SQLite (and PostgreSQL when ``--postgres URL`` is given).
"""

from __future__ import annotations

import json
import os
import sys
import time
from collections.abc import Iterator
from datetime import UTC, datetime, timedelta
from pathlib import Path
from tempfile import TemporaryDirectory
from typing import Any

from sqlalchemy import func, select

from archive.records import record_from_view
from archive.store import Archive
from archive.tables import obligations
from deadlines.timefmt import rfc3339
from govclock.bench_pipeline import free_port, get_status_json, start_worker, stop_worker

UNITS = 200
OPEN_DOCUMENTS = 5_000
READY_TIMEOUT_S = 1800.0


def _iso(at: datetime) -> str:
    return at.isoformat().replace("+00:00", "Z")


def issued_event(doc: str, unit: str, at: datetime) -> dict[str, Any]:
    return {
        "type": "document.issued",
        "event_id": f"iss-{doc}",
        "unit": unit,
        "document_id": doc,
        "issued_at": _iso(at),
        "kind": "normative",
        "disclosure": "proactive",
        "title": "关于印发工作方案的通知",
    }


def published_event(doc: str, unit: str, at: datetime) -> dict[str, Any]:
    return {
        "type": "document.published",
        "event_id": f"pub-{doc}",
        "unit": unit,
        "publication_id": f"pub-{doc}",
        "published_at": _iso(at),
        "kind": "document",
        "channel": "portal",
        "url": f"https://gov.example/{doc}.html",
        "refs": {"document_id": doc},
    }


def history(events: int, open_documents: int, now: datetime) -> Iterator[dict[str, Any]]:
    """``events`` events: ``open_documents`` issued in the last week and not published (open),
    the rest documents issued 60-400 days ago and published two days later (settled)."""
    closed = max(0, (events - open_documents) // 2)
    span = timedelta(days=340)
    for i in range(closed):
        unit = f"unit-{i % UNITS:03d}"
        at = now - timedelta(days=400) + span * (i / max(1, closed))
        yield issued_event(f"H{i}", unit, at)
        yield published_event(f"H{i}", unit, at + timedelta(days=2))
    for i in range(open_documents):
        yield issued_event(
            f"O{i}", f"unit-{i % UNITS:03d}", now - timedelta(days=7) * (i / open_documents)
        )


def write_journal(data: Path, lines: Iterator[dict[str, Any]]) -> int:
    journal = data / "journal"
    journal.mkdir(parents=True, exist_ok=True)
    n = 0
    with (journal / "events.jsonl").open("w", encoding="utf-8") as fh:
        for event in lines:
            fh.write(json.dumps(event, ensure_ascii=False, separators=(",", ":")) + "\n")
            n += 1
    return n


def rss_bytes(pid: int) -> int:
    with open(f"/proc/{pid}/status", encoding="ascii") as fh:
        for line in fh:
            if line.startswith("VmRSS:"):
                return int(line.split()[1]) * 1024
    return 0


def archived_rows(path: Path) -> int:
    with Archive.open(f"sqlite:///{path}") as archive, archive.engine.connect() as conn:
        return int(conn.execute(select(func.count()).select_from(obligations)).scalar_one())


def start_until_ready(root: Path, name: str) -> tuple[float, int, dict[str, Any]]:
    """Start a worker on ``root/worker-<name>``; seconds to ready, its RSS, its stats."""
    port = free_port()
    env = {**os.environ, "GOVCLOCK_PARTITIONS": "4", "GOVCLOCK_LOG_LEVEL": "WARNING"}
    began = time.monotonic()
    proc = start_worker(env, root, name, port)
    try:
        while True:
            status, body = get_status_json(f"http://127.0.0.1:{port}/readyz")
            if status == 200:
                ready = time.monotonic() - began
                time.sleep(8.0)  # settle: the first sweep, archive writes, a heap trim
                return round(ready, 2), rss_bytes(proc.pid), body.get("stats", {})
            if proc.poll() is not None:
                raise RuntimeError(f"worker {name} exited ({proc.returncode}); see its log")
            if time.monotonic() - began > READY_TIMEOUT_S:
                raise TimeoutError(f"worker {name} not ready in {READY_TIMEOUT_S} s")
            time.sleep(0.2)
    finally:
        stop_worker(proc)


def restart(root: Path, events: int, now: datetime) -> dict[str, Any]:
    """First start on a journal of ``events`` of history, then a second start."""
    name = f"h{events}"
    written = write_journal(root / f"worker-{name}", history(events, OPEN_DOCUMENTS, now))
    first, _, _ = start_until_ready(root, name)
    kept = sum(1 for _ in (root / f"worker-{name}" / "journal" / "events.jsonl").open("rb"))
    second, _, _ = start_until_ready(root, name)
    return {
        "history_events": written,
        "journal_lines_after": kept,
        "first_start_ready_seconds": first,
        "restart_ready_seconds": second,
        "archived_rows": archived_rows(root / f"worker-{name}" / "archive.sqlite3"),
    }


def memory(root: Path, open_documents: int, now: datetime) -> dict[str, Any]:
    """Resident bytes per open obligation: ``open_documents`` open over an empty worker."""
    write_journal(root / "worker-empty", iter(()))
    _, empty, _ = start_until_ready(root, "empty")
    write_journal(root / "worker-full", history(open_documents, open_documents, now))
    _, full, stats = start_until_ready(root, "full")
    _, again, _ = start_until_ready(root, "full")  # a restart: the same open state
    return {
        "open_obligations": open_documents,
        "rss_empty_bytes": empty,
        "rss_full_bytes": full,
        "rss_after_restart_bytes": again,
        "restart_growth_bytes": again - full,
        "bytes_per_open_obligation_live": round((full - empty) / max(1, open_documents)),
        "bytes_per_open_obligation_after_restart": round((again - empty) / max(1, open_documents)),
        "applied": stats.get("applied", 0),
    }


def archive_rate(url: str, rows: int = 20_000, batch: int = 500) -> float:
    """Archive rows written per second, in batches of ``batch``."""
    now = int(time.time())
    day = 86_400
    records = [
        record_from_view(
            {
                "id": f"online_posting_10wd:B{i}",
                "rule_id": "online_posting_10wd",
                "rule_version": "default/online_posting_10wd@1",
                "subject_id": f"B{i}",
                "unit": f"unit-{i % UNITS:03d}",
                "opened_at": rfc3339(now - 90 * day),
                "due_at": rfc3339(now - 76 * day),
                "status": "met",
                "fulfilled_at": rfc3339(now - 88 * day),
                "fulfilled_by": f"pub-B{i}",
                "fulfilled_date_only": False,
                "calendar_assumed": False,
                "timeline": [],
            },
            version=now - 90 * day,
            closed_at=now - 88 * day,
            evidence_url=f"https://gov.example/B{i}.html",
        )
        for i in range(rows)
    ]
    with Archive.open(url) as archive:
        began = time.perf_counter()
        for start in range(0, rows, batch):
            archive.write(records[start : start + batch])
        return round(rows / (time.perf_counter() - began))


def _said(phase: str, result: dict[str, Any]) -> dict[str, Any]:
    """Each phase's figures as soon as they exist (stderr), then in the final JSON."""
    print(f"{phase}: {json.dumps(result)}", file=sys.stderr, flush=True)
    return result


def run_history_bench(open_obligations: int, postgres: str | None) -> dict[str, Any]:
    now = datetime.now(UTC)
    with TemporaryDirectory(prefix="govclock-history-") as tmp:
        root = Path(tmp)
        sqlite_rate = archive_rate(f"sqlite:///{root / 'rate.sqlite3'}")
        small = _said("100k", restart(root, 100_000, now))
        large = _said("1m", restart(root, 1_000_000, now))
        mem = _said("memory", memory(root, open_obligations, now))
    pg_rate = archive_rate(postgres) if postgres else None
    return {
        "restart_ready_seconds_100k": small["restart_ready_seconds"],
        "restart_ready_seconds_1m": large["restart_ready_seconds"],
        "restart_ratio": round(large["restart_ready_seconds"] / small["restart_ready_seconds"], 2),
        "first_start_ready_seconds_100k": small["first_start_ready_seconds"],
        "first_start_ready_seconds_1m": large["first_start_ready_seconds"],
        "bytes_per_open_obligation_live": mem["bytes_per_open_obligation_live"],
        "bytes_per_open_obligation_after_restart": mem["bytes_per_open_obligation_after_restart"],
        "restart_growth_bytes": mem["restart_growth_bytes"],
        "archive_rows_per_second_sqlite": sqlite_rate,
        "archive_rows_per_second_postgresql": pg_rate,
        "runs": {"100k": small, "1m": large, "memory": mem},
    }
