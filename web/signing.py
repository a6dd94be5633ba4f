"""Request signatures for ``POST /v1/events``: who sent a body, and that it is fresh.

Pure functions; the web view reads the headers and calls :func:`verify` (govclock's own
scheme, for any sender) or :func:`verify_ghost` (Ghost's ``X-Ghost-Signature``), and answers
401 with the :class:`SignatureError` reason when they raise.

govclock's scheme (docs/integrations.md has Python and curl+openssl examples)::

    X-Govclock-Source:    cms-sh                      (names the shared secret)
    X-Govclock-Timestamp: 1773037200                  (Unix seconds, when the request is sent)
    X-Govclock-Signature: sha256=<hex HMAC-SHA256(secret, "<timestamp>." + body)>

The timestamp is inside the MAC, so a captured request cannot be re-dated; a request older
or newer than the replay window (300 s by default) is refused, so it cannot be replayed
later. Within the window a replay is harmless: events are idempotent by ``event_id``.

Ghost's scheme, as Ghost's own code builds it (``ghost/core/core/server/services/webhooks/
webhook-trigger.js`` in TryGhost/Ghost)::

    X-Ghost-Signature: sha256=<hex HMAC-SHA256(secret, body + "<t>")>, t=<t>

with ``t`` = ``Date.now()``, **milliseconds**, appended to the body *after* it (no
separator). Ghost versions whose ``trigger.js`` signed the body alone (``t`` outside the MAC)
are refused: their timestamp proves nothing.
"""

from __future__ import annotations

import hashlib
import hmac
import re
from collections.abc import Collection, Mapping

__all__ = [
    "DEFAULT_WINDOW_S",
    "GHOST_SIGNATURE_HEADER",
    "SIGNATURE_HEADER",
    "SIGNATURE_PREFIX",
    "SOURCE_HEADER",
    "TIMESTAMP_HEADER",
    "SignatureError",
    "ghost_signature_header",
    "sign",
    "signature_header",
    "verify",
    "verify_ghost",
]

SOURCE_HEADER = "X-Govclock-Source"
TIMESTAMP_HEADER = "X-Govclock-Timestamp"
SIGNATURE_HEADER = "X-Govclock-Signature"
GHOST_SIGNATURE_HEADER = "X-Ghost-Signature"
#: The only algorithm: ``sha256=<64 lowercase hex digits>``.
SIGNATURE_PREFIX = "sha256="
#: How far (either way) a request's timestamp may be from the receiver's clock, in seconds.
DEFAULT_WINDOW_S = 300

_HEX64 = re.compile(r"^[0-9a-fA-F]{64}$")
_DIGITS = re.compile(r"^[0-9]{1,16}$")
#: Above this a "seconds" timestamp is certainly milliseconds (the year 5138 in seconds).
_MS_THRESHOLD = 10**11


class SignatureError(ValueError):
    """A request whose signature cannot be accepted; ``reason`` says why (safe to send back)."""

    def __init__(self, reason: str) -> None:
        super().__init__(reason)
        self.reason = reason


def _mac(secret: bytes, message: bytes) -> str:
    return hmac.new(secret, message, hashlib.sha256).hexdigest()


def sign(secret: bytes, timestamp: int, body: bytes) -> str:
    """The hex HMAC-SHA256 of ``f"{timestamp}."`` + ``body`` (what follows ``sha256=``)."""
    return _mac(secret, f"{int(timestamp)}.".encode("ascii") + body)


def signature_header(secret: bytes, timestamp: int, body: bytes) -> str:
    """The ``X-Govclock-Signature`` value: ``sha256=<hex>``."""
    return SIGNATURE_PREFIX + sign(secret, timestamp, body)


def _secrets_of(value: bytes | Collection[bytes]) -> list[bytes]:
    # One secret, or several while a secret is being rotated (any one may match).
    if isinstance(value, bytes | bytearray):
        return [bytes(value)]
    return [bytes(s) for s in value]


def _check_window(timestamp: int, now: int, window_s: int) -> None:
    age = now - timestamp
    if age > window_s:
        raise SignatureError(
            f"timestamp outside the replay window: {age} s old (at most {window_s} s); "
            "sign each request when sending it, with a synchronised clock"
        )
    if -age > window_s:
        raise SignatureError(
            f"timestamp outside the replay window: {-age} s in the future (at most "
            f"{window_s} s); check the sender's clock"
        )


def verify(
    secrets: Mapping[str, bytes | Collection[bytes]],
    source: str | None,
    timestamp_header: str | None,
    signature_header: str | None,
    body: bytes,
    now: int,
    window_s: int = DEFAULT_WINDOW_S,
) -> str:
    """Check a govclock-signed request; return the verified source or raise SignatureError.

    ``secrets`` maps each source to its secret (or to several, during a rotation); ``now``
    is the receiver's clock in Unix seconds. The comparison is constant-time.
    """
    if source is None or not source.strip():
        raise SignatureError(f"missing {SOURCE_HEADER} header")
    source = source.strip()
    if timestamp_header is None or not timestamp_header.strip():
        raise SignatureError(f"missing {TIMESTAMP_HEADER} header")
    if signature_header is None or not signature_header.strip():
        raise SignatureError(f"missing {SIGNATURE_HEADER} header")
    if source not in secrets:
        raise SignatureError(f"unknown source {source!r} in {SOURCE_HEADER}")
    text = timestamp_header.strip()
    if not _DIGITS.match(text):
        raise SignatureError(
            f"bad {TIMESTAMP_HEADER} {text[:40]!r}: expected Unix seconds, e.g. 1773037200"
        )
    timestamp = int(text)
    if timestamp >= _MS_THRESHOLD:
        raise SignatureError(
            f"bad {TIMESTAMP_HEADER} {text!r}: looks like milliseconds; send Unix seconds"
        )
    _check_window(timestamp, now, window_s)
    value = signature_header.strip()
    digest = value[len(SIGNATURE_PREFIX) :] if value.startswith(SIGNATURE_PREFIX) else ""
    if not _HEX64.match(digest):
        raise SignatureError(
            f"bad {SIGNATURE_HEADER}: expected {SIGNATURE_PREFIX}<64 hex digits of "
            "HMAC-SHA256(secret, timestamp + '.' + body)>"
        )
    digest = digest.lower()
    # Check every candidate secret, so the time taken does not say which one matched.
    matched = False
    for secret in _secrets_of(secrets[source]):
        matched |= hmac.compare_digest(sign(secret, timestamp, body), digest)
    if not matched:
        raise SignatureError(
            "signature mismatch: HMAC-SHA256 over timestamp + '.' + the exact body bytes, "
            "with this source's secret, does not match"
        )
    return source


def ghost_signature_header(secret: bytes, timestamp_ms: int, body: bytes) -> str:
    """The ``X-Ghost-Signature`` value Ghost would send (for tests and local tools)."""
    ts = str(int(timestamp_ms))
    return f"{SIGNATURE_PREFIX}{_mac(secret, body + ts.encode('ascii'))}, t={ts}"


def verify_ghost(
    secret: bytes,
    header_value: str | None,
    body: bytes,
    *,
    now: int | None = None,
    window_s: int = DEFAULT_WINDOW_S,
) -> int:
    """Check Ghost's ``X-Ghost-Signature: sha256=<hex>, t=<ms>``; return ``t`` (milliseconds).

    The MAC is HMAC-SHA256(secret, body + str(t)). With ``now`` (Unix seconds) the timestamp
    must also be within ``window_s`` of it; Ghost's own retries resend the same header and
    finish well inside the default 300 s.
    """
    if header_value is None or not header_value.strip():
        raise SignatureError(f"missing {GHOST_SIGNATURE_HEADER} header")
    fields: dict[str, str] = {}
    for part in header_value.split(","):
        key, sep, val = part.strip().partition("=")
        if not sep or key in fields:
            raise SignatureError(
                f"bad {GHOST_SIGNATURE_HEADER}: expected 'sha256=<hex>, t=<milliseconds>'"
            )
        fields[key] = val.strip()
    digest, ts = fields.get("sha256", ""), fields.get("t", "")
    if not _HEX64.match(digest) or not _DIGITS.match(ts):
        raise SignatureError(
            f"bad {GHOST_SIGNATURE_HEADER}: expected 'sha256=<64 hex digits>, t=<milliseconds>'"
        )
    if now is not None:
        _check_window(int(ts) // 1000, now, window_s)
    expected = _mac(secret, body + ts.encode("ascii"))
    if not hmac.compare_digest(expected, digest.lower()):
        raise SignatureError(
            "Ghost signature mismatch: HMAC-SHA256(secret, body + t) does not match; check "
            "the webhook's secret (Ghost versions that signed the body alone are not accepted)"
        )
    return int(ts)
