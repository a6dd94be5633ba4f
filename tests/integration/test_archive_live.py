"""The archive on a live worker: settled obligations leave the hot state for the archive at
the first tick, are still answered by ``GET /v1/obligations/{id}`` (``archived: true``),
``govclock report`` over archive + open equals ``govclock replay`` of the same history,
and a restart replays only what is open (the journal compacted)."""

from __future__ import annotations

import json
import subprocess
import sys
import time
from collections.abc import Callable
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

import pytest

from deadlines.report import rates_of_views
from govclock.bench_history import issued_event, published_event
from tests.integration.test_monitor import Monitor, request, wait_for

pytestmark = [pytest.mark.integration, pytest.mark.timeout(300)]

DAY = 86_400
RULE = "online_posting_10wd"
UNIT = "市教育局"
GOVCLOCK = Path(sys.executable).with_name("govclock")


def issued(doc: str, at: float) -> dict[str, Any]:
    return issued_event(doc, UNIT, datetime.fromtimestamp(at, UTC))


def published(doc: str, at: float) -> dict[str, Any]:
    return published_event(doc, UNIT, datetime.fromtimestamp(at, UTC))


def history(now: float) -> list[dict[str, Any]]:
    """30 documents of 100-70 days ago (met, or late for every third), 5 never published
    (missed long ago), 4 issued yesterday (open)."""
    events: list[dict[str, Any]] = []
    for i in range(30):
        at = now - (100 - i) * DAY
        events += [issued(f"OLD{i}", at), published(f"OLD{i}", at + (30 if i % 3 else 2) * DAY)]
    events += [issued(f"MISS{i}", now - 90 * DAY) for i in range(5)]
    events += [issued(f"NEW{i}", now - DAY) for i in range(4)]
    return events


def cli(*args: str, env: dict[str, str]) -> str:
    done = subprocess.run(
        [str(GOVCLOCK), *args], capture_output=True, text=True, env=env, timeout=120
    )
    assert done.returncode == 0, done.stderr
    return done.stdout


def test_settled_obligations_are_archived_answered_and_reported(
    monitor_factory: Callable[..., Monitor], tmp_path: Path
) -> None:
    mon = monitor_factory("archive")
    mon.start().wait_ready()
    now = time.time()
    events = history(now)
    status, body = mon.post(events)
    assert status == 202, body
    # the sweeper's ticks retire what settled: only the open documents stay hot
    wait_for(
        "only the open documents in the hot state",
        lambda: (
            {o["subject_id"] for o in mon.obligations(f"?rule={RULE}")}
            == {f"NEW{i}" for i in range(4)}
        ),
        timeout=60,
    )
    status, old = request(mon.port, "GET", "/v1/obligations/online_posting_10wd:OLD3")
    assert status == 200 and old["archived"] is True and old["status"] == "met", old
    status, late = request(mon.port, "GET", "/v1/obligations/online_posting_10wd:OLD1")
    assert status == 200 and late["status"] == "late" and late["archived"] is True

    env = mon.env()
    start = time.strftime("%Y-%m-%d", time.gmtime(now - 120 * DAY))
    end = time.strftime("%Y-%m-%d", time.gmtime(now + 60 * DAY))
    monitor = f"http://127.0.0.1:{mon.port}"
    period = ("--from", start, "--to", end, "--monitor", monitor, "--rule", RULE)
    report = json.loads(cli("report", *period, "--format", "json", env=env))
    history_file = tmp_path / "history.jsonl"
    history_file.write_text("".join(json.dumps(e, ensure_ascii=False) + "\n" for e in events))
    replayed = json.loads(
        cli("replay", str(history_file), "--as-of", "now", "--format", "json", env=env)
    )
    of_rule = [o for o in replayed["obligations"] if o["rule_id"] == RULE]
    assert report["on_time"] == rates_of_views(of_rule)
    assert report["obligations"] == len(of_rule) == 39
    assert report["archived"] == 35
    assert {e["status"] for e in report["exceptions"]} == {"late", "missed"}
    csv_text = cli("report", *period, "--format", "csv", env=env)
    assert csv_text.startswith("\ufeff范围")

    # a restart replays only the open documents' lines; the archive still answers
    assert mon.stop() == 0
    mon.start().wait_ready()
    journal = (mon.data_dir / "journal" / "events.jsonl").read_text().splitlines()
    assert {json.loads(line)["event_id"] for line in journal} == {f"iss-NEW{i}" for i in range(4)}
    status, old = request(mon.port, "GET", "/v1/obligations/online_posting_10wd:OLD3")
    assert status == 200 and old["archived"] is True
    assert {o["subject_id"] for o in mon.obligations(f"?rule={RULE}")} == {
        f"NEW{i}" for i in range(4)
    }
