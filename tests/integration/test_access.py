"""Closed by default off loopback, against real ``govclock run`` processes (docs/security.md).

Monitors bound to 0.0.0.0 only listen there: every request of these tests goes to
127.0.0.1. Each refusal has its test: the start off loopback without a sources file, the
cluster without a cluster secret, a read without (or with a wrong) reader token, a read
off loopback with no readers file, a peer call without (or with a forged) cluster
credential. Two workers with the secret still merge their lists and forward by key.
"""

from __future__ import annotations

import time
from collections.abc import Callable
from pathlib import Path
from typing import Any
from urllib.parse import quote

import pytest

from config.readers import hash_token, mint_token
from streams.broker import EmbeddedBroker
from tests.integration.test_monitor import (
    ONLINE_POSTING,
    TANSU_AS_CLUSTER,
    Monitor,
    document,
    ndjson,
    request,
    tail,
    wait_for,
)
from web.access import CLUSTER_HEADER, ClusterKey

pytestmark = [pytest.mark.integration, pytest.mark.slow]

FORWARDED = "X-Govclock-Forwarded"
SECRET = "cluster-secret-for-the-access-tests"
OFF_LOOPBACK = {"GOVCLOCK_WEB_HOST": "0.0.0.0"}  # listens there; traffic: 127.0.0.1 only


def call(
    port: int,
    path: str,
    headers: dict[str, str] | None = None,
    method: str = "GET",
    body: bytes | None = None,
) -> tuple[int, Any]:
    return request(port, method, path, body, headers=headers)


def bearer(token: str) -> dict[str, str]:
    return {"Authorization": f"Bearer {token}"}


def readers_file(path: Path, **hashes: list[str]) -> Path:
    lines = ["readers:"]
    for name, digests in hashes.items():
        lines += [f"  {name}:", "    token_sha256:"] + [f"      - {d}" for d in digests]
    path.write_text("\n".join(lines) + "\n", encoding="utf-8")
    return path


def exited(m: Monitor, timeout: float = 30.0) -> tuple[int, str]:
    assert m.proc is not None
    code = m.proc.wait(timeout)
    return code, m.log_path.read_text(errors="replace")


@pytest.mark.timeout(60)
def test_open_starts_off_loopback_are_refused_with_one_line_naming_the_settings(
    monitor_factory: Callable[..., Monitor],
) -> None:
    unsigned = monitor_factory("unsigned", **OFF_LOOPBACK).start()
    # KAFKA_BROKER names a port nothing listens on: the refusal comes before any connection
    cluster = monitor_factory(
        "cluster", GOVCLOCK_ALLOW_UNSIGNED="true", KAFKA_BROKER="127.0.0.1:1", **OFF_LOOPBACK
    ).start()
    code, said = exited(unsigned)
    line = next(x for x in said.splitlines() if "invalid settings" in x)
    assert code != 0 and line.startswith("govclock: invalid settings: GOVCLOCK_SOURCES_FILE")
    assert "GOVCLOCK_WEB_HOST (0.0.0.0)" in line and "GOVCLOCK_ALLOW_UNSIGNED=true" in line
    code, said = exited(cluster)
    assert code != 0, said
    assert "invalid settings: GOVCLOCK_CLUSTER_SECRET: required with KAFKA_BROKER" in said, said


@pytest.mark.timeout(90)
def test_off_loopback_reads_need_a_reader_token_and_peer_calls_the_cluster_secret(
    monitor_factory: Callable[..., Monitor], tmp_path: Path
) -> None:
    (old, old_hash), (new, new_hash), (other, other_hash) = mint_token(), mint_token(), mint_token()
    path = readers_file(tmp_path / "readers.yaml", board=[new_hash, old_hash], audit=[other_hash])
    m = monitor_factory(
        "guarded",
        GOVCLOCK_ALLOW_UNSIGNED="true",
        GOVCLOCK_READERS_FILE=str(path),
        GOVCLOCK_CLUSTER_SECRET=SECRET,
        GOVCLOCK_LOG_LEVEL="DEBUG",
        **OFF_LOOPBACK,
    ).start()
    closed = monitor_factory("closed", GOVCLOCK_ALLOW_UNSIGNED="true", **OFF_LOOPBACK).start()
    m.wait_ready()
    closed.wait_ready()

    said = m.log_path.read_text(errors="replace")
    assert "WARNING] govclock: GOVCLOCK_ALLOW_UNSIGNED=true: unsigned events are accepted" in said
    # explicitly allowed: unsigned intake works; the query API does not answer anyone
    status, body = m.post([document("acc-1", "沪府办〔2026〕7号")])
    assert status == 202, body
    oid = f"{ONLINE_POSTING}:沪府办〔2026〕7号"

    status, body = call(m.port, "/v1/obligations")
    assert status == 401 and "Bearer" in body["error"], body
    status, body = call(m.port, "/v1/obligations", bearer("gck_not-a-token-of-anyone"))
    assert (status, body) == (401, {"error": "unknown API token"})
    listed = wait_for(
        "the obligation, read with the current token",
        lambda: [o for o in call(m.port, "/v1/obligations", bearer(new))[1]["obligations"]],
        20,
    )
    assert [o["id"] for o in listed] == [oid]
    status, body = call(m.port, "/v1/obligations", bearer(old))  # rotation: the old one too
    assert status == 200 and [o["id"] for o in body["obligations"]] == [oid]
    one = "/v1/obligations/" + quote(oid)
    assert call(m.port, one, bearer(other))[0] == 200
    assert call(m.port, one)[0] == 401
    assert call(m.port, one + "/escalation")[0] == 401
    ack = {"Content-Type": "application/json"}
    body_ack = b'{"level": 1, "person": "li"}'
    assert call(m.port, one + "/ack", ack, "POST", body_ack)[0] == 401
    # with a token the ack API is reached (no roster here: escalation is off, 404)
    assert call(m.port, one + "/ack", {**ack, **bearer(new)}, "POST", body_ack)[0] == 404
    for open_path in ("/healthz", "/readyz", "/metrics"):
        assert call(m.port, open_path)[0] == 200, open_path

    # peer calls: the cluster credential, not a reader token
    local = "/v1/obligations?local=1"
    assert call(m.port, local, {FORWARDED: "1"})[0] == 401
    assert call(m.port, local, {FORWARDED: "1", **bearer(new)})[0] == 401
    forged = ClusterKey((b"not-the-cluster-secret-at-all",)).sign("GET", local, time.time())
    assert call(m.port, local, {FORWARDED: "1", CLUSTER_HEADER: forged})[0] == 401
    signed = ClusterKey((SECRET.encode(),)).sign("GET", local, time.time())
    status, body = call(m.port, local, {FORWARDED: "1", CLUSTER_HEADER: signed})
    assert status == 200 and [o["id"] for o in body["obligations"]] == [oid], body
    internal = "/v1/internal/reply-candidates"
    assert call(m.port, internal, ack, "POST", b"{}")[0] == 401

    # off loopback without a readers file: the read routes are closed
    status, body = call(closed.port, "/v1/obligations", bearer(new))
    assert status == 403 and "GOVCLOCK_READERS_FILE" in body["error"], body
    assert call(closed.port, "/healthz")[0] == 200

    m.stop()
    said = m.log_path.read_text(errors="replace")
    assert "reader board" in said and "reader audit" in said and "unknown API token" in said
    for secret in (old, new, other, SECRET, "gck_not-a-token-of-anyone"):
        assert secret not in said, tail(m.log_path)


@pytest.mark.timeout(120)
def test_two_workers_with_the_cluster_secret_merge_and_forward_with_reader_tokens(
    monitor_factory: Callable[..., Monitor], tmp_path: Path
) -> None:
    token, digest = mint_token()
    path = readers_file(tmp_path / "readers.yaml", board=[digest])
    assert hash_token(token) == digest
    env = {
        "KAFKA_BROKER": "",
        "GOVCLOCK_PARTITIONS": "4",
        "GOVCLOCK_READERS_FILE": str(path),
        "GOVCLOCK_CLUSTER_SECRET": SECRET,
        **TANSU_AS_CLUSTER,
    }
    with EmbeddedBroker(tmp_path / "cluster", start_timeout=10.0) as cluster:
        env["KAFKA_BROKER"] = cluster.bootstrap
        a = monitor_factory("worker-a", **env).start()
        b = monitor_factory("worker-b", **env).start()
        try:
            _merged_with_tokens(a, b, token)
        finally:  # the workers go before their broker does
            b.cleanup()
            a.cleanup()


def _merged_with_tokens(a: Monitor, b: Monitor, token: str) -> None:
    def split() -> bool:
        for m in (a, b):
            if not m.alive():
                pytest.fail(f"a worker died: {m.describe()}")
        (sa, ra), (sb, rb) = a.readyz(), b.readyz()
        pa, pb = set(ra["partitions"]), set(rb["partitions"])
        return sa == sb == 200 and bool(pa) and bool(pb) and not pa & pb

    wait_for("both workers ready with the partitions split", split, 75)
    docs = [document(f"acc-{i}", f"ACC-{i:02d}") for i in range(20)]
    status, body = call(
        a.port, "/v1/events", {"Content-Type": "application/x-ndjson"}, "POST", ndjson(docs)
    )
    assert status == 202, body
    wanted = {f"{ONLINE_POSTING}:ACC-{i:02d}" for i in range(20)}
    query = f"/v1/obligations?rule={ONLINE_POSTING}"

    def full(m: Monitor) -> dict[str, Any] | None:
        status, body = call(m.port, query, bearer(token))
        ids = {o["id"] for o in body["obligations"]} if status == 200 else set()
        return body if ids == wanted and not body["partial"] else None

    for m in (a, b):  # each asks the other with the cluster credential; both merge all
        answer = wait_for(f"the merged list on {m.name}", lambda m=m: full(m), 30)
        assert answer["missing_partitions"] == [] and answer["partitions"] == [0, 1, 2, 3]
    # by id on each worker: one of them holds it, the other forwards (Faust's router,
    # with the reader's token as it came)
    for oid in sorted(wanted)[:4]:
        for m in (a, b):
            status, body = call(m.port, "/v1/obligations/" + quote(oid), bearer(token))
            assert status == 200 and body["id"] == oid, (m.name, status, body)
    assert call(a.port, query)[0] == 401
    assert call(b.port, query + "&local=1", {FORWARDED: "1"})[0] == 401
    for m in (a, b):
        said = m.log_path.read_text(errors="replace")
        assert "refused (401): X-Govclock-Cluster" not in said, tail(m.log_path)
        assert token not in said and SECRET not in said
