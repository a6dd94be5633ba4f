"""Closed by default off loopback (web/access.py, config/readers.py): route classes, reader
tokens, the readers file's errors, the cluster credential, the start-up refusals, and the
middleware over real HTTP (aiohttp's test server)."""

from __future__ import annotations

import hashlib
import logging
import os
from collections.abc import Iterator
from pathlib import Path
from typing import Any
from urllib.parse import quote

import pytest
from aiohttp import ClientSession, web
from aiohttp.test_utils import TestClient, TestServer
from yarl import URL

from config.readers import (
    TOKEN_PREFIX,
    Readers,
    ReadersError,
    hash_token,
    load_readers,
    mint_token,
    parse_readers,
)
from config.settings import Settings, SettingsError, load_settings
from govclock.cli import main as cli_main
from web.access import (
    CLUSTER_HEADER,
    CLUSTER_WINDOW_S,
    READER_KEY,
    AccessPolicy,
    ClusterKey,
    PeerAuth,
    RequestFacts,
    access_middleware,
    bearer_token,
    build_policy,
    check_start,
    classify,
    decide,
    is_loopback,
    loggable_path,
    start_notes,
    start_problems,
)

# The same table web/routes.py gives (not imported: it would pull in Faust's app).
PUBLIC = (
    ("/v1/events", True),
    ("/v1/hooks/", False),
    ("/a/", False),
    ("/v1/channels/twilio/", False),
)
FORWARDED = "X-Govclock-Forwarded"
NOW = 1_773_037_200.0
SECRET = "a-cluster-secret-of-32-bytes-ok!"
OLD, NEW = "tok-old-0123456789", "tok-new-0123456789"


@pytest.fixture(autouse=True)
def _no_settings_from_env(monkeypatch: pytest.MonkeyPatch) -> None:
    for name in [k for k in os.environ if k.startswith("GOVCLOCK_") or k == "KAFKA_BROKER"]:
        monkeypatch.delenv(name)


def settings(**values: Any) -> Settings:
    return load_settings(env_file=None, **values)


def readers_yaml(path: Path, text: str) -> Path:
    path.write_text(text, encoding="utf-8")
    return path


READERS = Readers(
    parse_readers(
        {"readers": {"board": {"token_sha256": [hash_token(NEW), hash_token(OLD)]}}}, "r.yaml"
    ).readers
)


def policy(
    readers: Readers | None = READERS,
    reads_open: bool = False,
    cluster: ClusterKey | None = None,
) -> AccessPolicy:
    return AccessPolicy(readers, reads_open, cluster, PUBLIC, FORWARDED)


def facts(
    route: str, headers: dict[str, str] | None = None, method: str = "GET", path_qs: str = ""
) -> RequestFacts:
    return RequestFacts(method, route, path_qs or route, headers or {}, NOW)


# -- pure parts ---------------------------------------------------------------------------


@pytest.mark.parametrize(
    ("host", "loopback"),
    [
        ("127.0.0.1", True),
        ("127.8.9.10", True),
        ("::1", True),
        ("[::1]", True),
        ("localhost", True),
        ("LocalHost", True),
        ("0.0.0.0", False),
        ("::", False),
        ("10.0.0.5", False),
        ("govclock-0.govclock", False),
        ("localhost.example", False),
    ],
)
def test_loopback_is_127_8_and_1_and_localhost_only(host: str, loopback: bool) -> None:
    assert is_loopback(host) is loopback


@pytest.mark.parametrize(
    ("route", "kind"),
    [
        ("/healthz", "open"),
        ("/readyz", "open"),
        ("/metrics", "open"),
        ("/v1/events", "public"),
        ("/v1/hooks/{source_name}", "public"),
        ("/a/{token}", "public"),
        ("/v1/channels/twilio/status", "public"),
        ("/v1/channels/twilio/inbound", "public"),
        ("/v1/internal/reply-candidates", "internal"),
        ("/v1/obligations", "read"),
        ("/v1/obligations/{obligation_id}", "read"),
        ("/v1/obligations/{obligation_id}/escalation", "read"),
        ("/v1/obligations/{obligation_id}/ack", "read"),
        ("/v1/events/", "read"),  # exact only: anything else is not public
        ("/metrics/x", "read"),
        ("/nowhere", "read"),  # unknown: closed like a read route
    ],
)
def test_routes_are_classified_open_public_internal_or_read(route: str, kind: str) -> None:
    assert classify(route, PUBLIC) == kind


def test_bearer_tokens_are_read_from_the_authorization_header() -> None:
    assert bearer_token("Bearer abc") == "abc"
    assert bearer_token("bearer   abc  ") == "abc"
    for bad in (None, "", "Bearer", "Bearer ", "Basic abc", "abc"):
        assert bearer_token(bad) is None


def test_minted_tokens_are_random_and_stored_as_their_sha256() -> None:
    token, digest = mint_token()
    assert token.startswith(TOKEN_PREFIX) and len(token) > 40
    assert digest == hashlib.sha256(token.encode()).hexdigest() == hash_token(token)
    assert mint_token()[0] != token


def test_a_reader_is_found_by_either_of_its_tokens_and_nobody_by_another() -> None:
    assert (r := READERS.identify(NEW)) is not None and r.name == "board"
    assert (r := READERS.identify(OLD)) is not None and r.name == "board"  # rotation
    for bad in ("", "tok-new-012345678", hash_token(NEW), "x" * 10_000):
        assert READERS.identify(bad) is None


def test_the_token_command_prints_a_token_and_its_hash(capsys: pytest.CaptureFixture[str]) -> None:
    assert cli_main(["token", "duty-board"]) == 0
    out = capsys.readouterr().out
    token = next(w for w in out.split() if w.startswith(TOKEN_PREFIX))
    assert f"- {hash_token(token)}" in out and "duty-board:" in out
    data = {"readers": {"duty-board": {"token_sha256": [hash_token(token)]}}}
    assert parse_readers(data, "x").identify(token) is not None
    assert cli_main(["token", "bad name\n"]) == 2


@pytest.mark.parametrize(
    ("text", "message"),
    [
        ("[]", "expected a mapping with 'readers:"),
        ("readers: {}", "lists no reader"),
        ("readers:\n  board: {}\nother: 1", "unknown key(s) ['other']"),
        ("readers:\n  'a b': {token_sha256: []}", "readers.a b: a reader's name"),
        ("readers:\n  board: [x]", "readers.board: expected a mapping"),
        ("readers:\n  board: {}", "readers.board.token_sha256: missing"),
        ("readers:\n  board: {token: x}", "readers.board: unknown key(s) ['token']"),
        ("readers:\n  board: {token_sha256: []}", "readers.board.token_sha256: expected one"),
    ],
)
def test_readers_file_errors_name_the_file_the_reader_and_the_field(
    tmp_path: Path, text: str, message: str
) -> None:
    path = readers_yaml(tmp_path / "readers.yaml", text)
    with pytest.raises(ReadersError) as err:
        load_readers(path)
    assert str(err.value).startswith(str(path)) and message in str(err.value), err.value


def test_a_token_pasted_instead_of_its_hash_is_refused_without_showing_it(
    tmp_path: Path,
) -> None:
    token, _ = mint_token()
    path = readers_yaml(tmp_path / "r.yaml", f"readers:\n  board:\n    token_sha256: [{token}]")
    with pytest.raises(ReadersError) as err:
        load_readers(path)
    text = str(err.value)
    assert "readers.board.token_sha256[1]: not a SHA-256" in text and token not in text


def test_one_hash_for_two_readers_is_refused(tmp_path: Path) -> None:
    h = hash_token(NEW)
    path = readers_yaml(
        tmp_path / "r.yaml", f"readers:\n  a: {{token_sha256: {h}}}\n  b: {{token_sha256: {h}}}"
    )
    with pytest.raises(ReadersError, match=r"readers\.b\.token_sha256: a hash listed for a too"):
        load_readers(path)
    with pytest.raises(ReadersError, match="not valid YAML"):
        load_readers(readers_yaml(tmp_path / "bad.yaml", "readers: [\n"))
    with pytest.raises(ReadersError, match="cannot read"):
        load_readers(tmp_path / "missing.yaml")


def test_a_single_hash_string_is_accepted_and_upper_case_hex_is_normalised() -> None:
    r = parse_readers({"readers": {"b": {"token_sha256": hash_token(NEW).upper()}}}, "x")
    assert r.identify(NEW) is not None


# -- the cluster credential ------------------------------------------------------------------


def test_a_peer_call_is_signed_over_method_path_and_time() -> None:
    key = ClusterKey((SECRET.encode(),))
    value = key.sign("GET", "/v1/obligations?local=1", NOW)
    assert key.verify(value, "GET", "/v1/obligations?local=1", NOW + 5) is None
    assert "does not match" in (key.verify(value, "POST", "/v1/obligations?local=1", NOW) or "")
    assert "does not match" in (key.verify(value, "GET", "/v1/obligations", NOW) or "")
    other = ClusterKey((b"another-secret-of-enough-bytes",))
    assert "does not match" in (other.verify(value, "GET", "/v1/obligations?local=1", NOW) or "")
    late = NOW + CLUSTER_WINDOW_S + 1
    assert "off this worker's clock" in (
        key.verify(value, "GET", "/v1/obligations?local=1", late) or ""
    )
    assert "malformed" in (key.verify("x", "GET", "/", NOW) or "")
    assert SECRET not in value


def test_cluster_secret_rotation_first_signs_all_verify() -> None:
    old = ClusterKey((b"old-secret-0123456789",))
    both = ClusterKey((SECRET.encode(), b"old-secret-0123456789"))
    assert both.verify(old.sign("GET", "/x", NOW), "GET", "/x", NOW) is None
    assert old.verify(both.sign("GET", "/x", NOW), "GET", "/x", NOW) is not None


# -- decisions ------------------------------------------------------------------------------


def test_read_routes_need_a_readers_token() -> None:
    p = policy()
    assert decide(p, facts("/v1/obligations")).status == 401
    assert decide(p, facts("/v1/obligations", {"Authorization": "Bearer nope"})).status == 401
    ok = decide(p, facts("/v1/obligations/{obligation_id}", {"Authorization": f"Bearer {OLD}"}))
    assert ok.allowed and ok.reader == "board"
    ack = decide(
        p, facts("/v1/obligations/{obligation_id}/ack", {"Authorization": "Bearer x"}, "POST")
    )
    assert not ack.allowed and ack.status == 401


def test_without_a_readers_file_reads_are_open_on_loopback_and_403_off_it() -> None:
    assert decide(policy(None, reads_open=True), facts("/v1/obligations")).allowed
    closed = decide(policy(None, reads_open=False), facts("/v1/obligations"))
    assert closed.status == 403 and "GOVCLOCK_READERS_FILE" in closed.error


def test_open_and_public_routes_need_no_token() -> None:
    p = policy(None, reads_open=False, cluster=ClusterKey.random())
    for route in ("/healthz", "/readyz", "/metrics", "/v1/events", "/a/{token}"):
        assert decide(p, facts(route)).allowed, route


def test_forwarded_requests_and_internal_routes_need_the_cluster_credential() -> None:
    key = ClusterKey((SECRET.encode(),))
    p = policy(cluster=key)
    path = "/v1/obligations?rule=x&local=1"
    forged = {FORWARDED: "1"}
    for route in ("/v1/obligations", "/a/{token}", "/healthz"):
        assert decide(p, facts(route, forged, path_qs=path)).status == 401, route
    assert decide(p, facts("/v1/internal/reply-candidates", method="POST")).status == 401
    good = {FORWARDED: "1", CLUSTER_HEADER: key.sign("GET", path, NOW)}
    d = decide(p, facts("/v1/obligations", good, path_qs=path))
    assert d.allowed and d.kind == "internal"  # a peer needs no reader token
    moved = decide(p, facts("/v1/obligations", good, path_qs="/v1/obligations?local=1"))
    assert not moved.allowed
    signed = {CLUSTER_HEADER: key.sign("POST", "/v1/internal/r", NOW)}
    assert decide(p, facts("/v1/internal/r", signed, "POST")).allowed


def test_without_a_cluster_key_peer_calls_are_unchecked_as_before() -> None:
    p = policy(None, reads_open=True, cluster=None)
    assert decide(p, facts("/v1/obligations", {FORWARDED: "1"})).allowed
    assert decide(p, facts("/v1/internal/reply-candidates", method="POST")).allowed


# -- settings: refusals and notes ---------------------------------------------------------


def test_off_loopback_without_sources_the_start_is_refused_in_one_line() -> None:
    s = settings(web_host="0.0.0.0")
    with pytest.raises(SettingsError) as err:
        check_start(s)
    text = str(err.value)
    assert "\n" not in text
    for name in ("GOVCLOCK_SOURCES_FILE", "GOVCLOCK_WEB_HOST (0.0.0.0)", "GOVCLOCK_ALLOW_UNSIGNED"):
        assert name in text
    check_start(settings(web_host="0.0.0.0", allow_unsigned=True))
    check_start(settings())  # loopback: as before
    check_start(settings(web_host="::1"))


def test_allowing_unsigned_intake_is_a_warning_at_every_start() -> None:
    s = settings(web_host="0.0.0.0", allow_unsigned=True)
    notes = start_notes(s, build_policy(s, PUBLIC, FORWARDED))
    warnings = [text for level, text in notes if level == logging.WARNING]
    assert any("GOVCLOCK_ALLOW_UNSIGNED=true: unsigned events" in w for w in warnings), notes
    assert any("read routes closed (403)" in w for w in warnings), notes


def test_several_workers_off_loopback_need_a_cluster_secret(tmp_path: Path) -> None:
    sources = tmp_path / "sources.yaml"
    base: dict[str, Any] = {"web_host": "10.0.0.5", "sources_file": sources}
    cluster = settings(kafka_broker="k:9092", **base)
    (problem,) = start_problems(cluster)
    assert problem.startswith("GOVCLOCK_CLUSTER_SECRET: required with KAFKA_BROKER")
    with pytest.raises(SettingsError, match="GOVCLOCK_CLUSTER_SECRET"):
        build_policy(cluster, PUBLIC, FORWARDED)
    assert start_problems(settings(kafka_broker="k:9092", cluster_secret=SECRET, **base)) == []
    # the embedded broker means one worker: a random key of its own closes the internals
    one = build_policy(settings(**base), PUBLIC, FORWARDED).cluster
    assert one is not None and one.generated


def test_a_readers_file_on_loopback_with_several_workers_needs_the_secret_too(
    tmp_path: Path,
) -> None:
    path = readers_yaml(tmp_path / "r.yaml", f"readers:\n  b: {{token_sha256: {hash_token(NEW)}}}")
    (problem,) = start_problems(settings(kafka_broker="k:9092", readers_file=path))
    assert "GOVCLOCK_READERS_FILE is set" in problem  # else X-Govclock-Forwarded skips it
    p = build_policy(settings(readers_file=path), PUBLIC, FORWARDED)
    assert p.readers is not None and p.reads_open and p.cluster is not None
    # loopback with nothing configured: exactly as before
    plain = build_policy(settings(kafka_broker="k:9092"), PUBLIC, FORWARDED)
    assert plain.readers is None and plain.reads_open and plain.cluster is None


def test_a_bad_readers_file_stops_the_start(tmp_path: Path) -> None:
    with pytest.raises(ReadersError, match="cannot read"):
        check_start(settings(readers_file=tmp_path / "none.yaml"))


def test_the_cluster_secret_is_masked_and_a_short_one_refused_without_its_value() -> None:
    shown = dict(settings(cluster_secret=SECRET).describe())
    assert shown["GOVCLOCK_CLUSTER_SECRET"] == "********" and SECRET not in str(shown)
    os.environ["GOVCLOCK_CLUSTER_SECRET"] = "short-secret"
    try:
        with pytest.raises(SettingsError) as err:
            load_settings(env_file=None)
    finally:
        del os.environ["GOVCLOCK_CLUSTER_SECRET"]
    assert "GOVCLOCK_CLUSTER_SECRET='********'" in str(err.value)
    assert "short-secret" not in str(err.value)


def test_ack_links_and_control_characters_never_reach_a_log_line() -> None:
    assert loggable_path("/a/v1.4.abcdef") == "/a/…"
    assert loggable_path("/v1/obligations/x\ny:规则") == "/v1/obligations/x\\ny:规则"


# -- the middleware over real HTTP --------------------------------------------------------


async def _ok(request: web.Request) -> web.Response:
    return web.json_response({"ok": True, "reader": request.get(READER_KEY)})


def _forwarding(peer: PeerAuth) -> Any:
    """Like web/acks.py's Acks.forward: the request, sent on to ``request.url`` (here: the
    same server) as a peer call, signed over the URL taken from the incoming request."""

    async def handler(request: web.Request) -> web.Response:
        if FORWARDED in request.headers:
            return web.json_response({"forwarded": True})
        url = request.url
        headers = {FORWARDED: "1", **peer.headers("POST", url)}
        async with ClientSession() as session, session.post(url, headers=headers) as r:
            return web.json_response({"status": r.status, "body": await r.json()})

    return handler


@pytest.fixture
async def served() -> Iterator[Any]:
    key = ClusterKey((SECRET.encode(),))
    app = web.Application(middlewares=[access_middleware(policy(cluster=key))])
    for path in ("/v1/obligations", "/v1/obligations/{obligation_id}", "/healthz"):
        app.router.add_get(path, _ok)
    app.router.add_post("/v1/internal/reply-candidates", _ok)
    app.router.add_post("/v1/events", _ok)
    app.router.add_post("/v1/obligations/{obligation_id}/ack", _forwarding(PeerAuth(key)))
    client = TestClient(TestServer(app))
    await client.start_server()
    try:
        yield client, PeerAuth(key)
    finally:
        await client.close()


async def test_the_middleware_answers_json_401_and_passes_readers_and_peers(
    served: Any, caplog: pytest.LogCaptureFixture
) -> None:
    client, peer = served
    caplog.set_level(logging.DEBUG, logger="govclock.access")
    r = await client.get("/v1/obligations")
    assert r.status == 401 and "Bearer" in (await r.json())["error"]
    assert r.headers["WWW-Authenticate"].startswith("Bearer")
    r = await client.get("/v1/obligations", headers={"Authorization": "Bearer wrong-token-123"})
    assert r.status == 401 and (await r.json()) == {"error": "unknown API token"}
    r = await client.get("/v1/obligations", headers={"Authorization": f"Bearer {NEW}"})
    assert r.status == 200 and (await r.json())["reader"] == "board"
    assert (await client.get("/healthz")).status == 200
    assert (await client.post("/v1/events", data=b"{}")).status == 200  # signatures: its own

    # a peer's signature covers what aiohttp sends: an id with ':' and a query, encoded
    url = URL(str(client.make_url("/"))).with_path("/v1/obligations/first_release_5h:I 1")
    url = url.with_query({"local": "1", "rule": "规则"})
    r = await client.session.get(url, headers={FORWARDED: "1", **peer.headers("GET", url)})
    assert r.status == 200, await r.text()
    r = await client.get(url.path_qs, headers={FORWARDED: "1"})
    assert r.status == 401
    internal = URL(str(client.make_url("/v1/internal/reply-candidates")))
    r = await client.session.post(internal, data=b"{}", headers=peer.headers("POST", internal))
    assert r.status == 200
    assert (await client.post("/v1/internal/reply-candidates", data=b"{}")).status == 401

    # a request forwarded from the URL the server saw (forward_ack, forward_link)
    ack = "/v1/obligations/" + quote("first_release_5h:I 一") + "/ack?x=%2F"
    r = await client.post(ack, headers={"Authorization": f"Bearer {OLD}"})
    assert (await r.json()) == {"status": 200, "body": {"forwarded": True}}

    logged = caplog.text
    assert "reader board" in logged and "unknown API token" in logged
    for secret in (NEW, "wrong-token-123", SECRET):
        assert secret not in logged
