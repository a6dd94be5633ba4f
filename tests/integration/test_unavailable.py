"""HTTP ingestion while the broker is down: 503 with Retry-After, and the event is kept."""

from __future__ import annotations

import json
import time
from collections.abc import Callable
from pathlib import Path

import pytest

from streams.broker import EmbeddedBroker
from streams.journal import Journal
from tests.integration.test_monitor import TANSU_AS_CLUSTER, Monitor, incident, request
from web.ingest import ACK_TIMEOUT_S


@pytest.mark.timeout(120)
def test_post_answers_503_while_the_broker_is_down_and_journals_the_event(
    monitor_factory: Callable[..., Monitor], tmp_path: Path
) -> None:
    cluster = EmbeddedBroker(tmp_path / "cluster", start_timeout=10.0).start()
    try:
        env = {"KAFKA_BROKER": cluster.bootstrap, "GOVCLOCK_PARTITIONS": "4", **TANSU_AS_CLUSTER}
        mon = monitor_factory("unavailable", **env).start()
        mon.wait_ready()
        up = incident("e-up", "I-UP", time.time())
        assert mon.post([up])[0] == 202

        cluster.stop()
        down = incident("e-down", "I-DOWN", time.time())
        t0 = time.monotonic()
        status, body = request(
            mon.port,
            "POST",
            "/v1/events",
            json.dumps(down, ensure_ascii=False).encode(),
            "application/json",
            timeout=ACK_TIMEOUT_S + 20,
        )
        waited = time.monotonic() - t0
        assert status == 503, body
        assert "retry" in body["error"] and "broker unavailable" in body["error"]
        assert waited <= ACK_TIMEOUT_S + 5  # answered within the ack timeout, not hung
        assert mon.alive(), mon.describe()  # the worker stays up for the retry
        # Not acknowledged, but kept: the journal has both events, so a restart on a fresh
        # broker replays them (the sender's retry is dropped by event_id).
        journaled = [
            json.loads(line)["event_id"] for line in Journal(mon.data_dir / "journal").read()
        ]
        assert journaled == ["e-up", "e-down"]
        stats = mon.readyz()[1]["stats"]
        assert stats["requests_unavailable"] == 1 and stats["requests_accepted"] == 1
    finally:
        cluster.stop()
