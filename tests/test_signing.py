"""Request signatures: govclock's HMAC scheme and Ghost's X-Ghost-Signature."""

from __future__ import annotations

import hashlib
import hmac
import json

import pytest

from web import signing
from web.signing import (
    SIGNATURE_HEADER,
    SOURCE_HEADER,
    TIMESTAMP_HEADER,
    SignatureError,
    ghost_signature_header,
    sign,
    signature_header,
    verify,
    verify_ghost,
)

SECRET = b"s3cret"
SECRETS = {"cms-sh": SECRET, "ims": b"other-secret"}
NOW = 1773037200  # 2026-03-09T14:20:00+08:00
BODY = b'{"event_id":"e1"}'


def _verify(
    body: bytes = BODY,
    *,
    source: str | None = "cms-sh",
    ts: str | None = str(NOW),
    sig: str | None = None,
    now: int = NOW,
    window_s: int = 300,
) -> str:
    if sig is None:
        sig = signature_header(SECRET, NOW, BODY)
    return verify(SECRETS, source, ts, sig, body, now, window_s)


def _reason(**kwargs: object) -> str:
    with pytest.raises(SignatureError) as err:
        _verify(**kwargs)  # type: ignore[arg-type]
    assert str(err.value) == err.value.reason
    return err.value.reason


# --- govclock's scheme ----------------------------------------------------------------------


def test_sign_matches_openssl_vector() -> None:
    # printf '1773037200.{"event_id":"e1"}' | openssl dgst -sha256 -hmac s3cret
    expected = "c94f31667d86ebf54c854376e1f49f491cccdf9bf58cdfb4ea5510f2b1c9d6a1"
    assert sign(SECRET, NOW, BODY) == expected
    assert signature_header(SECRET, NOW, BODY) == "sha256=" + expected


def test_header_names() -> None:
    assert (SOURCE_HEADER, TIMESTAMP_HEADER, SIGNATURE_HEADER) == (
        "X-Govclock-Source",
        "X-Govclock-Timestamp",
        "X-Govclock-Signature",
    )


def test_good_signature_returns_the_source() -> None:
    assert _verify() == "cms-sh"
    # surrounding whitespace in headers and upper-case hex are tolerated
    sig = "  sha256=" + sign(SECRET, NOW, BODY).upper() + " "
    assert verify(SECRETS, " cms-sh ", f" {NOW} ", sig, BODY, NOW) == "cms-sh"


def test_tampered_body_rejected() -> None:
    assert "mismatch" in _reason(body=b'{"event_id":"e2"}')
    assert "mismatch" in _reason(body=BODY + b"\n")


def test_tampered_timestamp_rejected() -> None:
    # still inside the window, so only the MAC can catch it
    assert "mismatch" in _reason(ts=str(NOW - 1))


def test_wrong_secret_rejected() -> None:
    assert "mismatch" in _reason(sig=signature_header(b"guess", NOW, BODY))
    # another source's valid signature does not pass as this source
    assert "mismatch" in _reason(sig=signature_header(SECRETS["ims"], NOW, BODY))


def test_replay_window() -> None:
    old = NOW - 301
    reason = _reason(ts=str(old), sig=signature_header(SECRET, old, BODY))
    assert "outside the replay window" in reason and "301 s old" in reason
    future = NOW + 301
    reason = _reason(ts=str(future), sig=signature_header(SECRET, future, BODY))
    assert "outside the replay window" in reason and "in the future" in reason
    # the edges are inside
    for ts in (NOW - 300, NOW + 300):
        assert _verify(ts=str(ts), sig=signature_header(SECRET, ts, BODY)) == "cms-sh"
    # a narrower window is honoured
    assert "outside" in _reason(
        ts=str(NOW - 10), sig=signature_header(SECRET, NOW - 10, BODY), window_s=5
    )


@pytest.mark.parametrize(
    ("kwargs", "needle"),
    [
        ({"source": None}, "missing X-Govclock-Source"),
        ({"source": "  "}, "missing X-Govclock-Source"),
        ({"ts": None}, "missing X-Govclock-Timestamp"),
        ({"ts": ""}, "missing X-Govclock-Timestamp"),
        ({"sig": ""}, "missing X-Govclock-Signature"),
        ({"source": "cms-bj"}, "unknown source 'cms-bj'"),
        ({"ts": "yesterday"}, "expected Unix seconds"),
        ({"ts": "-5"}, "expected Unix seconds"),
        ({"ts": "1773037200.5"}, "expected Unix seconds"),
        ({"ts": "1773037200000"}, "milliseconds"),
        ({"sig": sign(SECRET, NOW, BODY)}, "expected sha256=<64 hex digits"),
        ({"sig": "sha1=" + "0" * 40}, "expected sha256="),
        ({"sig": "sha256=abc"}, "expected sha256="),
        ({"sig": "sha256=" + "g" * 64}, "expected sha256="),
    ],
)
def test_bad_headers_rejected(kwargs: dict[str, object], needle: str) -> None:
    assert needle in _reason(**kwargs)


def test_signature_none_is_missing() -> None:
    with pytest.raises(SignatureError, match="missing X-Govclock-Signature"):
        verify(SECRETS, "cms-sh", str(NOW), None, BODY, NOW)


def test_secret_rotation_accepts_either_secret() -> None:
    secrets = {"cms-sh": [b"new-secret", SECRET]}
    for secret in (SECRET, b"new-secret"):
        sig = signature_header(secret, NOW, BODY)
        assert verify(secrets, "cms-sh", str(NOW), sig, BODY, NOW) == "cms-sh"
    with pytest.raises(SignatureError, match="mismatch"):
        verify(secrets, "cms-sh", str(NOW), signature_header(b"x", NOW, BODY), BODY, NOW)


def test_comparison_is_constant_time(monkeypatch: pytest.MonkeyPatch) -> None:
    calls: list[tuple[str, str]] = []
    real = hmac.compare_digest

    def spy(a: str, b: str) -> bool:
        calls.append((a, b))
        return real(a, b)

    monkeypatch.setattr(signing.hmac, "compare_digest", spy)
    assert _verify() == "cms-sh"
    with pytest.raises(SignatureError):
        _verify(body=b"tampered")
    assert len(calls) == 2


# --- Ghost ----------------------------------------------------------------------------------

GHOST_SECRET = b"ghost-secret"


def ghost_header(secret: bytes, body: bytes, ts_ms: int) -> str:
    """Ghost's algorithm, written out independently of web.signing: webhook-trigger.js
    sends `sha256=${hmac_sha256(secret, `${reqPayload}${ts}`)}, t=${ts}`, ts = Date.now()."""
    mac = hmac.new(secret, body + str(ts_ms).encode(), hashlib.sha256).hexdigest()
    return f"sha256={mac}, t={ts_ms}"


def test_ghost_vector_matches_openssl() -> None:
    # printf '{"post":{}}1773037200123' | openssl dgst -sha256 -hmac ghost-secret
    header = ghost_header(GHOST_SECRET, b'{"post":{}}', 1773037200123)
    assert header == (
        "sha256=f0feb029e69d3e4ce9e7cc0c291b23d30d88adaf1d1438886a7622cd270c5f4d, t=1773037200123"
    )
    assert ghost_signature_header(GHOST_SECRET, 1773037200123, b'{"post":{}}') == header


def test_ghost_signature_verified() -> None:
    # the body as Ghost sends it: JSON.stringify output, compact, non-ASCII as UTF-8
    body = json.dumps(
        {"post": {"current": {"title": "关于宝山区仓库火灾的情况通报", "status": "published"}}},
        ensure_ascii=False,
        separators=(",", ":"),
    ).encode("utf-8")
    ts_ms = NOW * 1000 + 456
    header = ghost_header(GHOST_SECRET, body, ts_ms)
    assert verify_ghost(GHOST_SECRET, header, body) == ts_ms
    assert verify_ghost(GHOST_SECRET, header, body, now=NOW + 100) == ts_ms
    # no space after the comma is fine too
    assert verify_ghost(GHOST_SECRET, header.replace(", ", ","), body) == ts_ms


def test_ghost_tampering_rejected() -> None:
    body = b'{"post":{"current":{"id":"1"}}}'
    ts_ms = NOW * 1000
    header = ghost_header(GHOST_SECRET, body, ts_ms)
    with pytest.raises(SignatureError, match="mismatch"):
        verify_ghost(GHOST_SECRET, header, body + b" ")
    with pytest.raises(SignatureError, match="mismatch"):
        verify_ghost(b"wrong", header, body)
    with pytest.raises(SignatureError, match="mismatch"):  # re-dated
        verify_ghost(GHOST_SECRET, header.replace(f"t={ts_ms}", f"t={ts_ms + 1}"), body)


def test_ghost_body_only_signature_rejected() -> None:
    # What Ghost's older trigger.js sent: the MAC over the body alone, t outside it.
    body = b'{"post":{}}'
    mac = hmac.new(GHOST_SECRET, body, hashlib.sha256).hexdigest()
    with pytest.raises(SignatureError, match="mismatch"):
        verify_ghost(GHOST_SECRET, f"sha256={mac}, t={NOW * 1000}", body)


def test_ghost_replay_window_in_milliseconds() -> None:
    body = b"{}"
    old = (NOW - 301) * 1000
    with pytest.raises(SignatureError, match="301 s old"):
        verify_ghost(GHOST_SECRET, ghost_header(GHOST_SECRET, body, old), body, now=NOW)
    # without `now` there is no window check (the caller chose not to have one)
    assert verify_ghost(GHOST_SECRET, ghost_header(GHOST_SECRET, body, old), body) == old


@pytest.mark.parametrize(
    ("header", "needle"),
    [
        (None, "missing X-Ghost-Signature"),
        ("", "missing X-Ghost-Signature"),
        ("sha256=" + "0" * 64, "t=<milliseconds>"),
        ("t=1773037200000", "sha256=<64 hex digits>"),
        ("sha256=zz, t=1773037200000", "sha256=<64 hex digits>"),
        ("sha256=" + "0" * 64 + ", t=soon", "t=<milliseconds>"),
        ("sha256=" + "0" * 64 + ", t=1, t=2", "expected"),
        ("garbage", "expected"),
    ],
)
def test_ghost_bad_headers(header: str | None, needle: str) -> None:
    with pytest.raises(SignatureError) as err:
        verify_ghost(GHOST_SECRET, header, b"{}")
    assert needle in err.value.reason
