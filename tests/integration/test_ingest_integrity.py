"""Bodies arrive in pieces: ``govclock run`` takes every event of a body or none of it.

One monitor for the module, with a sources file (every request signed, as in production).
Bodies are written to a real socket in pieces with pauses (tests/piecewise.py): NDJSON
batches of 0.5-1 MiB, a CAP alert near 1 MiB, each CMS webhook adapter's real payload with
a real-sized post body, chunked transfer encoding, a client that goes away mid-body, and
bodies over the limit. What was accepted is read back from the journal the worker appends
to before it answers 202.
"""

from __future__ import annotations

import copy
import json
import re
import time
from collections.abc import Iterator
from pathlib import Path
from typing import Any
from urllib.parse import quote

import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from tests import fuzzing, piecewise
from tests.integration.test_monitor import (
    Monitor,
    kill_leftover_broker,
    ndjson,
    request,
    today_shanghai,
    wait_for,
)
from tests.test_adapters import CORPUS, MISSING, ghost_bodies
from web.signing import (
    GHOST_SIGNATURE_HEADER,
    SIGNATURE_HEADER,
    SOURCE_HEADER,
    TIMESTAMP_HEADER,
    ghost_signature_header,
    signature_header,
)

pytestmark = [pytest.mark.integration, pytest.mark.slow, pytest.mark.timeout(240)]

LIMIT = 1 << 20
SECRETS = {
    "cms": "cms-secret-for-sh-yingji-0001",
    "ghost": "ghost-secret-for-sh-gov-0002",
    "strapi": "strapi-secret-for-sh-gov-0003",
    "wordpress": "wp-secret-for-sh-gov-00004",
}
NDJSON = "application/x-ndjson"


@pytest.fixture(scope="module")
def mon(tmp_path_factory: pytest.TempPathFactory) -> Iterator[Monitor]:
    root = tmp_path_factory.mktemp("integrity")
    sources = root / "sources.yaml"
    lines = ["sources:", "  cms:", "    secret_env: S_CMS", "    unit: sh-yingji"]
    for name in ("ghost", "strapi", "wordpress"):
        lines += [f"  {name}:", f"    secret_env: S_{name.upper()}"]
        lines += ["    unit: sh-gov", f"    adapter: {name}"]
    sources.write_text("\n".join(lines) + "\n", encoding="utf-8")
    env = {f"S_{k.upper()}": v for k, v in SECRETS.items()}
    m = Monitor(root / "var", root, {"GOVCLOCK_SOURCES_FILE": str(sources), **env}, "integrity")
    try:
        m.start().wait_ready()
        yield m
    finally:
        m.stop()
        kill_leftover_broker(m.data_dir)


def signed(body: bytes, source: str = "cms") -> dict[str, str]:
    now = int(time.time())
    return {
        SOURCE_HEADER: source,
        TIMESTAMP_HEADER: str(now),
        SIGNATURE_HEADER: signature_header(SECRETS[source].encode(), now, body),
    }


def journaled(mon: Monitor) -> list[str]:
    """The event ids in the worker's journal, oldest first."""
    path = mon.data_dir / "journal" / "events.jsonl"
    if not path.exists():
        return []
    text = path.read_bytes()
    return [json.loads(line)["event_id"] for line in text.splitlines() if line.strip()]


def documents(tag: str, n: int, pad: int) -> list[dict[str, Any]]:
    """``n`` valid ``document.issued`` events with titles padded to about ``pad`` bytes."""
    filler = "关于进一步优化营商环境的若干措施" * (pad // 48 + 1)
    return [
        {
            "event_id": f"{tag}-{i}",
            "type": "document.issued",
            "unit": "sh-gov",
            "document_id": f"沪府办〔2026〕{tag}-{i}号",
            "issued_at": today_shanghai(),
            "kind": "policy",
            "disclosure": "proactive",
            "title": filler[: max(1, pad // 3)],
        }
        for i in range(n)
    ]


# -- NDJSON batches ----------------------------------------------------------------------


@pytest.mark.parametrize(
    ("tag", "size", "sizes", "chunked"),
    [
        ("half-16k", 512 * 1024, (16 * 1024,), False),  # the batch the issue saw lose 968
        ("one-mib-odd", 1000 * 1024, (1000, 7777, 16 * 1024 + 3), False),  # lines cut anywhere
        ("chunked", 700 * 1024, (4096, 65536), True),
    ],
)
def test_an_ndjson_batch_in_pieces_is_taken_whole(
    mon: Monitor, tag: str, size: int, sizes: tuple[int, ...], chunked: bool
) -> None:
    events = documents(tag, 1000, size // 1000 - 200)
    body = ndjson(events)
    assert size * 0.9 < len(body) <= LIMIT, len(body)
    status, answer = piecewise.send(
        mon.port, "/v1/events", body, content_type=NDJSON, sizes=sizes,
        headers=signed(body), chunked=chunked,
    )  # fmt: skip
    assert status == 202, answer
    ids = [e["event_id"] for e in events]
    assert answer["accepted"] == 1000 and answer["event_ids"] == ids
    assert [i for i in journaled(mon) if i.startswith(f"{tag}-")] == ids


def test_a_body_over_the_limit_is_refused_with_413_and_nothing_is_taken(mon: Monitor) -> None:
    events = documents("big", 1100, 960)
    body = ndjson(events)
    assert len(body) > LIMIT
    status, answer = piecewise.send(
        mon.port, "/v1/events", body, content_type=NDJSON, headers=signed(body)
    )
    assert status == 413 and "over the limit" in answer["error"], answer
    # the same without Content-Length (chunked): refused once the limit is passed
    status, answer = piecewise.send(
        mon.port, "/v1/events", body, content_type=NDJSON, headers=signed(body), chunked=True
    )
    assert status == 413 and "over the limit" in answer["error"], answer
    assert not [i for i in journaled(mon) if i.startswith("big-")]


@pytest.mark.parametrize("chunked", [False, True], ids=["content-length", "chunked"])
def test_a_client_gone_mid_body_leaves_nothing_taken(mon: Monitor, chunked: bool) -> None:
    tag = f"gone-{int(chunked)}"
    body = ndjson(documents(tag, 800, 600))
    piecewise.send_and_vanish(
        mon.port, "/v1/events", body, content_type=NDJSON, headers=signed(body), chunked=chunked
    )
    time.sleep(0.5)
    # the worker is still fine, and took nothing of the broken request
    ok = ndjson(documents(f"after-{tag}", 2, 100))
    status, answer = piecewise.send(
        mon.port, "/v1/events", ok, content_type=NDJSON, headers=signed(ok)
    )
    assert status == 202 and answer["accepted"] == 2, answer
    assert not [i for i in journaled(mon) if i.startswith(f"{tag}-")]


@settings(
    max_examples=12,
    deadline=None,
    suppress_health_check=[HealthCheck.function_scoped_fixture, HealthCheck.too_slow],
)
@given(
    n=st.integers(min_value=1, max_value=120),
    sizes=st.lists(st.integers(min_value=1, max_value=40_000), min_size=1, max_size=6),
    seq=st.integers(min_value=0, max_value=10**9),
)
def test_property_the_accepted_ids_are_the_body_ids(
    mon: Monitor, n: int, sizes: list[int], seq: int
) -> None:
    tag = f"prop{seq}-{n}-{len(sizes)}"
    events = documents(tag, n, 400)
    body = ndjson(events)
    status, answer = piecewise.send(
        mon.port, "/v1/events", body, content_type=NDJSON, sizes=sizes, pause=0.0,
        headers=signed(body),
    )  # fmt: skip
    assert status == 202, answer
    assert answer["event_ids"] == [e["event_id"] for e in events]


# -- CAP and the CMS webhooks ----------------------------------------------------------------

IPAWS = CORPUS / "cap" / "oasiscap" / "ipaws-5e7e0fc5023f1930efcf3deb.xml"


def need(path: Path) -> bytes:
    if not path.is_file():
        pytest.fail(MISSING)  # CI always has ../shared: a missing corpus is a failure
    return path.read_bytes()


def test_a_cap_alert_near_one_mib_in_pieces_is_accepted(mon: Monitor) -> None:
    """A real IPAWS alert with its area grown to real-world size (a detailed polygon list)."""
    text = need(IPAWS).decode("utf-8")
    area = re.search(r"<area>.*?</area>", text, re.S)
    assert area is not None, "the IPAWS alert has an <area>"
    copies = (LIMIT - 30_000 - len(text.encode())) // len(area.group().encode())
    grown = text.replace(area.group(), area.group() * (copies + 1), 1)
    body = grown.encode("utf-8")
    assert LIMIT * 0.75 < len(body) <= LIMIT, len(body)
    status, answer = piecewise.send(
        mon.port, "/v1/events", body, content_type="application/cap+xml",
        sizes=(16 * 1024, 5000), headers=signed(body),
    )  # fmt: skip
    assert status == 202, answer
    (event_id,) = answer["event_ids"]
    assert "402013233923688" in event_id
    assert event_id in journaled(mon)


def strapi_body() -> bytes:
    data = json.loads(need(CORPUS / "cms" / "strapi" / "entry.publish.json"))
    data["entry"]["govclock_url"] = "https://www.sh.example/zcjd/0108.html"
    data["entry"]["body"] = "<p>" + "政策解读正文。" * 40_000 + "</p>"  # ~840 KB, as CMSs send
    return json.dumps(data, ensure_ascii=False).encode()


def wordpress_body() -> bytes:
    data = json.loads(need(CORPUS / "cms" / "wordpress" / "wp-rest-PostModel.json"))
    data["content"]["rendered"] = "<p>" + "公告正文内容。" * 40_000 + "</p>"
    return json.dumps(data, ensure_ascii=False).encode()


def ghost_body() -> bytes:
    data = copy.deepcopy(ghost_bodies()["post.published"])
    data["post"]["current"]["html"] = "<p>" + "新闻发布正文。" * 40_000 + "</p>"
    return json.dumps(data, ensure_ascii=False).encode()


@pytest.mark.parametrize("adapter", ["ghost", "strapi", "wordpress"])
def test_each_webhook_adapter_takes_a_large_payload_in_pieces(mon: Monitor, adapter: str) -> None:
    body = {"ghost": ghost_body, "strapi": strapi_body, "wordpress": wordpress_body}[adapter]()
    assert 600_000 < len(body) <= LIMIT, len(body)
    if adapter == "ghost":
        now_ms = int(time.time() * 1000)
        sig = ghost_signature_header(SECRETS["ghost"].encode(), now_ms, body)
        headers = {GHOST_SIGNATURE_HEADER: sig}
    else:
        headers = signed(body, adapter)
    status, answer = piecewise.send(
        mon.port, f"/v1/hooks/{adapter}", body, content_type="application/json",
        sizes=(16 * 1024, 999), headers=headers,
    )  # fmt: skip
    assert status == 202, answer
    (event_id,) = answer["event_ids"]
    assert event_id.startswith(f"{adapter}:{adapter}:") and event_id in journaled(mon)
    # over the limit, the same route refuses before adapting anything
    status, answer = piecewise.send(
        mon.port, f"/v1/hooks/{adapter}", body + b" " * LIMIT, content_type="application/json",
        headers=headers,
    )  # fmt: skip
    assert status == 413, answer


# -- fuzzing the HTTP layer of a live worker ---------------------------------------------

FUZZ_ROUTES = [
    ("/v1/events", "application/json"),
    ("/v1/events", NDJSON),
    ("/v1/events", "application/cap+xml"),
    ("/v1/hooks/ghost", "application/json"),
    ("/v1/hooks/strapi", "application/json"),
    ("/v1/hooks/wordpress", "application/json"),
    ("/v1/hooks/nope", "application/json"),
    ("/v1/obligations/first_release_5h:X/ack", "application/json"),
    ("/v1/channels/twilio/status", "application/x-www-form-urlencoded"),
    ("/v1/channels/twilio/inbound", "application/x-www-form-urlencoded"),
    ("/v1/internal/reply-candidates", "application/json"),
    ("/a/not-a-token", "application/x-www-form-urlencoded"),
]


def fuzz_headers(path: str, body: bytes) -> dict[str, str]:
    """Signed like the real sender would, so the body reaches the parsers."""
    headers = {"Accept": "application/json"}
    if path == "/v1/hooks/ghost":
        now_ms = int(time.time() * 1000)
        headers[GHOST_SIGNATURE_HEADER] = ghost_signature_header(
            SECRETS["ghost"].encode(), now_ms, body
        )
    elif path.startswith("/v1/hooks/") and path != "/v1/hooks/nope":
        headers.update(signed(body, path.rsplit("/", 1)[1]))
    elif path == "/v1/events":
        headers.update(signed(body))
    return headers


@settings(
    max_examples=150,
    deadline=None,
    suppress_health_check=[HealthCheck.function_scoped_fixture, HealthCheck.too_slow],
)
@given(
    route=st.sampled_from(FUZZ_ROUTES),
    body=fuzzing.bodies,
    sizes=st.lists(st.integers(min_value=1, max_value=70_000), min_size=1, max_size=3),
)
def test_fuzz_every_route_answers_4xx_with_a_reason_or_2xx(
    mon: Monitor, route: tuple[str, str], body: bytes, sizes: list[int]
) -> None:
    path, content_type = route
    status, answer = piecewise.send(
        mon.port, path, body, content_type=content_type, sizes=sizes, pause=0.0,
        headers=fuzz_headers(path, body),
    )  # fmt: skip
    assert status < 500, (path, body[:80], status, answer)
    if status >= 400:
        assert isinstance(answer, dict) and isinstance(answer.get("error"), str | dict), answer


def test_the_fuzzed_worker_logged_no_exception(mon: Monitor) -> None:
    """Runs after the fuzz test (file order): nothing it sent raised in the worker."""
    log = mon.log_path.read_text(errors="replace")
    for needle in ("Traceback", "Error handling request", "Unhandled exception"):
        assert needle not in log, log[log.find(needle) - 2000 : log.find(needle) + 2000]


# -- paging the obligations of a live worker ----------------------------------------------


def get(mon: Monitor, path: str) -> tuple[int, Any]:
    return request(mon.port, "GET", path)


def test_pages_of_a_live_worker_chain_to_every_obligation_once(mon: Monitor) -> None:
    events = documents("page", 45, 100)
    body = ndjson(events)
    status, _ = piecewise.send(
        mon.port, "/v1/events", body, content_type=NDJSON, headers=signed(body)
    )
    assert status == 202
    wanted = {f"online_posting_10wd:{e['document_id']}" for e in events}

    def everything() -> list[dict[str, Any]]:
        status, answer = get(mon, "/v1/obligations?rule=online_posting_10wd&limit=5000")
        got = answer["obligations"] if status == 200 else []
        return got if wanted <= {o["id"] for o in got} else []

    full = [o["id"] for o in wait_for("the 45 obligations", everything, 30)]
    paged, path = [], "/v1/obligations?rule=online_posting_10wd&limit=7"
    while True:
        status, answer = get(mon, path)
        assert status == 200 and len(answer["obligations"]) <= 7, answer
        paged += [o["id"] for o in answer["obligations"]]
        if answer["next"] is None:
            break
        path = f"/v1/obligations?rule=online_posting_10wd&limit=7&cursor={answer['next']}"
    assert paged == full and len(set(paged)) == len(paged)
    status, answer = get(mon, f"/v1/obligations?rule=other&cursor={answer['next'] or 'x'}")
    assert status == 400 and answer["parameter"] == "cursor", answer
    status, answer = get(mon, "/v1/obligations?limit=5001")
    assert status == 400 and answer["parameter"] == "limit", answer
    one = full[0].split(":", 1)[1]
    status, answer = get(mon, f"/v1/obligations?subject_id={quote(one)}")
    assert status == 200 and [o["subject_id"] for o in answer["obligations"]] == [one], answer
