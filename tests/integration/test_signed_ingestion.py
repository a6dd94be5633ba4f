"""Signed ingestion over real HTTP: with a sources file, only signed requests get in."""

from __future__ import annotations

import http.client
import json
import time
from collections.abc import Callable
from pathlib import Path
from typing import Any

import pytest

from tests.integration.test_monitor import Monitor, document, wait_for
from web.signing import SIGNATURE_HEADER, SOURCE_HEADER, TIMESTAMP_HEADER, signature_header

pytestmark = [pytest.mark.integration, pytest.mark.slow, pytest.mark.timeout(180)]

SECRET = "s3cret-for-the-cms-of-sh-gov"


def post(port: int, body: bytes, headers: dict[str, str]) -> tuple[int, Any]:
    conn = http.client.HTTPConnection("127.0.0.1", port, timeout=15)
    try:
        conn.request(
            "POST", "/v1/events", body=body, headers={"Content-Type": "application/json", **headers}
        )
        resp = conn.getresponse()
        return resp.status, json.loads(resp.read())
    finally:
        conn.close()


def test_unsigned_and_forged_requests_get_401_and_signed_ones_202(
    monitor_factory: Callable[..., Monitor],
    tmp_path: Path,
) -> None:
    sources = tmp_path / "sources.yaml"
    sources.write_text("sources:\n  cms-sh:\n    secret_env: CMS_SECRET\n", encoding="utf-8")
    m = monitor_factory("signed", GOVCLOCK_SOURCES_FILE=str(sources), CMS_SECRET=SECRET)
    m.start().wait_ready()
    body = json.dumps(document("s-1", "沪府办〔2026〕99号"), ensure_ascii=False).encode()
    now = int(time.time())

    status, answer = post(m.port, body, {})
    assert status == 401 and "X-Govclock-Source" in answer["error"], answer

    forged = signature_header(b"not-the-secret-at-all", now, body)
    headers = {SOURCE_HEADER: "cms-sh", TIMESTAMP_HEADER: str(now), SIGNATURE_HEADER: forged}
    status, answer = post(m.port, body, headers)
    assert status == 401 and "mismatch" in answer["error"], answer

    stale = now - 3600
    headers = {
        SOURCE_HEADER: "cms-sh",
        TIMESTAMP_HEADER: str(stale),
        SIGNATURE_HEADER: signature_header(SECRET.encode(), stale, body),
    }
    status, answer = post(m.port, body, headers)
    assert status == 401, answer  # outside the replay window

    headers = {
        SOURCE_HEADER: "cms-sh",
        TIMESTAMP_HEADER: str(now),
        SIGNATURE_HEADER: signature_header(SECRET.encode(), now, body),
    }
    status, answer = post(m.port, body, headers)
    assert status == 202 and answer["event_ids"] == ["s-1"], answer
    opened = wait_for("the signed document's obligation", m.obligations, 30)
    assert [o["subject_id"] for o in opened] == ["沪府办〔2026〕99号"]
