"""A worker restarting on a cluster with lag applies the lagged events before it judges.

The evidence for an obligation arrives while the worker is down, and the deadline passes
meanwhile. At start-up the sweeper must not tick the partition before the ingest backlog is
routed and the ledger has applied its partition up to where it was: otherwise it would
report a breach that never happened (and then close the obligation as met).
"""

from __future__ import annotations

import json
import time
from collections.abc import Callable
from pathlib import Path
from typing import Any

import pytest
from kafka import KafkaProducer

from deadlines.timefmt import rfc3339
from streams.broker import EmbeddedBroker
from streams.topics import EVENTS, NOTIFICATIONS, all_topic_specs, create_topics
from tests.integration.test_monitor import (
    TANSU_AS_CLUSTER,
    Monitor,
    document,
    effects,
    incident,
    partition_of_subject,
    read_topic,
    wait_for,
)

RULE = "first_release_5h"


@pytest.mark.timeout(150)
def test_restart_with_lag_applies_the_backlog_before_the_first_tick(
    monitor_factory: Callable[..., Monitor], tmp_path: Path
) -> None:
    cluster = EmbeddedBroker(tmp_path / "cluster", start_timeout=10.0).start()
    try:
        env = {"KAFKA_BROKER": cluster.bootstrap, "GOVCLOCK_PARTITIONS": "4", **TANSU_AS_CLUSTER}
        mon = monitor_factory("lag", **env).start()
        mon.wait_ready()
        occurred = time.time() - 5 * 3600 + 4  # the 5-hour window ends in 4 s
        assert mon.post([incident("e-lag", "I-LAG", occurred)])[0] == 202
        ob_id = f"{RULE}:I-LAG"
        wait_for(
            "the obligation open", lambda: [o for o in mon.obligations() if o["id"] == ob_id], 20
        )
        assert mon.stop() == 0, mon.describe()

        # While the worker is down: the release (published in time) reaches the topic, and
        # the deadline passes.
        release = {
            "event_id": "e-lag-release",
            "type": "document.published",
            "unit": "sh-yingji",
            "publication_id": "P-LAG",
            "published_at": rfc3339(occurred + 3600),
            "kind": "press_release",
            "channel": "portal",
            "url": "https://www.sh.example/lag.html",
            "refs": {"incident_id": "I-LAG"},
        }
        producer = KafkaProducer(bootstrap_servers=cluster.bootstrap, acks="all")
        producer.send(EVENTS, key=b"e-lag-release", value=json.dumps(release).encode()).get(10)
        producer.close()
        time.sleep(max(0.0, occurred + 5 * 3600 + 2 - time.time()))

        mon.start()
        mon.wait_ready()

        def met() -> list[dict[str, object]]:
            return [o for o in mon.obligations() if o["id"] == ob_id and o["status"] == "met"]

        wait_for("the obligation met by the lagged release", met, 30)
        kinds = [
            e["kind"]
            for e in effects(read_topic(cluster.bootstrap, NOTIFICATIONS))
            if e["obligation_id"] == ob_id
        ]
        assert "met" in kinds and "breached" not in kinds, kinds
    finally:
        cluster.stop()


@pytest.mark.timeout(180)
def test_two_workers_starting_on_a_backlog_both_become_ready_and_sweep(
    monitor_factory: Callable[..., Monitor], tmp_path: Path
) -> None:
    """Events wait on the topic before any worker runs; two workers start together. Each
    routes its share of the backlog to all four partitions but applies only its own, so its
    own counts of routed and applied records differ. Readiness once waited for them to meet,
    and the sweeper with it: one worker stayed unready and its partitions never breached."""
    cluster = EmbeddedBroker(tmp_path / "cluster", start_timeout=10.0).start()
    try:
        bootstrap = cluster.bootstrap
        create_topics(bootstrap, all_topic_specs(4))
        occurred = time.time() - 5 * 3600 + 25  # the 5-hour windows end in 25 s
        incidents = [f"I-BL-{i}" for i in range(40)]
        assert {partition_of_subject(i) for i in incidents} == {0, 1, 2, 3}
        events = [incident(f"e-bl-{i}", iid, occurred) for i, iid in enumerate(incidents)]
        events += [document(f"d-bl-{i}", f"D-BL-{i:03d}") for i in range(200)]
        producer = KafkaProducer(bootstrap_servers=bootstrap, acks="all")
        for i, event in enumerate(events):
            producer.send(EVENTS, value=json.dumps(event).encode(), partition=i % 4)
        producer.flush(10)
        producer.close()

        env = {"KAFKA_BROKER": bootstrap, "GOVCLOCK_PARTITIONS": "4", **TANSU_AS_CLUSTER}
        a = monitor_factory("backlog-a", **env).start()
        b = monitor_factory("backlog-b", **env).start()
        try:

            def split() -> list[Any] | None:
                answers = [m.readyz() for m in (a, b)]
                owned = [set(body["partitions"]) for _, body in answers]
                ready = all(status == 200 for status, _ in answers)
                return answers if ready and owned[0] | owned[1] == {0, 1, 2, 3} else None

            answers = wait_for("both workers ready with the partitions split", split, 90)
            routed = [body["stats"].get("routed", 0) for _, body in answers]
            applied = [body["stats"].get("applied", 0) for _, body in answers]
            print(f"\nrouted {routed}, applied {applied}")

            def breached() -> list[str]:
                missed = {
                    o["subject_id"]
                    for o in a.obligations(f"?rule={RULE}&status=missed")
                    if o["subject_id"] in incidents
                }
                return sorted(missed) if missed == set(incidents) else []

            wait_for("every incident breached, in all four partitions", breached, 60)
        finally:  # the workers go before their broker does
            b.cleanup()
            a.cleanup()
    finally:
        cluster.stop()
