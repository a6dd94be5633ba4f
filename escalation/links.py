"""Signed acknowledgement links for escalation messages: ``{public_url}/a/{token}``.

The SMS that pages someone (:func:`deadlines.escalation.compose`) keeps its text within one
70-character UCS-2 segment *without* the link; the link is what it costs on top. A message
longer than 70 characters is sent as concatenated segments of 67, so text (≤ 70) plus link
(≤ :data:`MAX_LINK_CHARS` = 64) stays within two segments (134). The token is therefore
**24 characters** (18 bytes, base64url, no padding), and the whole link is
``len(public_url) + 27`` characters: a public URL of up to 37 characters keeps every message
within two segments.

Design (the trade-off): a token that *carries* the obligation id and the person id cannot be
that short — obligation ids are ``rule:subject`` with Chinese document numbers
(``online_posting_10wd:沪交规〔2026〕2号`` is 43 UTF-8 bytes before any encoding). So a token
(version 2) carries only::

    version (1 byte) | level (4 bits) + escalation partition (12 bits)
    | expiry, minutes since the epoch (4, big-endian) | ref (3) | tag (8)

* ``partition`` — the partition of ``govclock-escalation-inputs`` that holds the obligation's
  escalation (:func:`streams.topics.escalation_partition`): a worker that receives the link
  reads it (:func:`token_partition`, before any verification: it is only a routing hint) and
  forwards the request to the worker that owns that partition, which can resolve ``ref``.
  Like everything in the body it is covered by the tag. Levels 1–15, partitions 0–4095.
* ``ref`` — the first 3 bytes of SHA-256 over (obligation id, person id): a short handle to
  look the pair up, derived from the pair alone, so the worker that owns the escalation can
  rebuild its index from its escalation states after a restart or a rebalance (every person a
  message went to is in ``EscalationState.sent``). It is not secret (the page shows the
  obligation to whoever holds the link anyway) and it does not depend on the secret, so an
  index of refs survives key rotation.
* ``tag`` — HMAC-SHA256 with the secret over the first 10 bytes **and** the full obligation
  id and person id, truncated to 64 bits. So the signature binds all five claims (obligation,
  level, person, partition, expiry); the lookup only supplies candidates and cannot make a
  token say anything else. 64 bits are ample against online guessing (each guess is a
  request).

The price: the verifier needs a **lookup** ``ref -> [(obligation id, person id), …]`` that the
caller provides — :class:`AckIndex` (filled as links are made: ``make_ack_url(..., index=)``,
and rebuilt from the escalation states: :meth:`AckIndex.add_states`). A ref collision is
harmless: each candidate is tried and only the one the tag was made for verifies. A token
whose pair is not in the index (state lost) is refused as ``unknown``: a fresh message
carries a fresh link. The live worker keeps one index per worker for the partitions it owns
(``LiveNotifier.refs``) and forwards a link to the owner of the token's partition
(web/ack_links.py); a self-contained token would need no index but would cost a third SMS
segment.

Pure functions: time is passed in (``now``, ``Notify.at``), nothing reads the clock. The tag
is compared with :func:`hmac.compare_digest`. Secrets: at least 16 bytes (32 random bytes
recommended, e.g. ``python -c 'import secrets; print(secrets.token_urlsafe(32))'``);
:func:`verify` takes several for rotation (the newest first; links are made with the first).
"""

from __future__ import annotations

import base64
import binascii
import hashlib
import hmac
import re
from collections.abc import Callable, Iterable, Sequence
from dataclasses import dataclass
from typing import ClassVar, Protocol
from urllib.parse import urlsplit

from config.secrets import MIN_SECRET_BYTES
from deadlines.escalation_state import EscalationState, Notify
from deadlines.escalation_texts import MAX_TEXT_CHARS

__all__ = [
    "ACK_PATH",
    "DEFAULT_TTL_S",
    "MAX_LINK_CHARS",
    "TOKEN_CHARS",
    "AckClaim",
    "AckError",
    "AckIndex",
    "Lookup",
    "RefSink",
    "ack_ref",
    "ack_url",
    "base_url_problems",
    "make_ack_url",
    "make_token",
    "normalize_base_url",
    "sms_segments",
    "token_partition",
    "verify",
]

#: The path prefix of acknowledgement links; the route is ``/a/{token}``.
ACK_PATH = "/a/"
#: How long a link works after the message was decided (``Notify.at``): 3 days.
DEFAULT_TTL_S = 3 * 86_400
#: Characters of a token (18 bytes in base64url without padding).
TOKEN_CHARS = 24
#: Two concatenated UCS-2 segments (2 × 67) minus the longest text compose() makes.
MAX_LINK_CHARS = 2 * 67 - MAX_TEXT_CHARS
#: The highest level (rung) a token can carry (4 bits).
MAX_LEVEL = 15
#: Escalation partitions a token can name: 0 to MAX_PARTITIONS - 1 (12 bits).
MAX_PARTITIONS = 4096

_VERSION = 2
_TAG_BYTES = 8
_REF_BYTES = 3
_BODY_BYTES = 1 + 2 + 4 + _REF_BYTES  # version, level+partition, expiry minutes, ref
_TOKEN = re.compile(rf"^[A-Za-z0-9_-]{{{TOKEN_CHARS}}}$")
_MAC_DOMAIN = b"govclock-ack\x00"
_REF_DOMAIN = b"govclock-ack-ref\x00"

Secret = bytes | str
#: ``ref`` (6 hex digits) -> the (obligation id, person id) pairs that may have made it.
Lookup = Callable[[str], Iterable[tuple[str, str]]]


class RefSink(Protocol):
    """Where made links are registered: an :class:`AckIndex`, or a shared store the caller
    writes (e.g. a Faust global table ``ref -> [[obligation id, person id], …]``)."""

    def add(self, obligation_id: str, person_id: str) -> object: ...


class AckError(ValueError):
    """A token that cannot be accepted. ``reason`` is one of ``malformed``, ``unknown``,
    ``forged``, ``expired``; the message (English) and ``message_zh`` are safe to show."""

    MESSAGES: ClassVar[dict[str, tuple[str, str]]] = {
        "malformed": ("this is not an acknowledgement link", "这不是有效的确认链接"),
        "unknown": (
            "this acknowledgement link is not known here (wrong link, or the monitor lost it)",
            "找不到此确认链接(链接有误或已失效)",
        ),
        "forged": ("this acknowledgement link's signature does not match", "确认链接签名不符"),
        "expired": ("this acknowledgement link has expired", "确认链接已过期"),
    }

    def __init__(self, reason: str, detail: str = "") -> None:
        english, chinese = self.MESSAGES[reason]
        super().__init__(f"{english}{f': {detail}' if detail else ''}")
        self.reason = reason
        self.message_zh = chinese


@dataclass(frozen=True, slots=True)
class AckClaim:
    """What a verified token says: this person may acknowledge this obligation at this rung
    until ``expires_at`` (epoch seconds); ``partition``: where its escalation lives."""

    obligation_id: str
    level: int
    person_id: str
    expires_at: int
    ref: str
    partition: int = 0


# ---------------------------------------------------------------------------------------
# Tokens


def _secret_bytes(secret: Secret) -> bytes:
    raw = secret.encode("utf-8") if isinstance(secret, str) else bytes(secret)
    if len(raw) < MIN_SECRET_BYTES:
        raise ValueError(
            f"the acknowledgement secret must be at least {MIN_SECRET_BYTES} bytes "
            f"(got {len(raw)}); use 32 random bytes"
        )
    return raw


def _lp(text: str) -> bytes:
    raw = text.encode("utf-8")
    return len(raw).to_bytes(4, "big") + raw


def _ref_bytes(obligation_id: str, person_id: str) -> bytes:
    digest = hashlib.sha256(_REF_DOMAIN + _lp(obligation_id) + _lp(person_id)).digest()
    return digest[:_REF_BYTES]


def ack_ref(obligation_id: str, person_id: str) -> str:
    """The lookup handle of (obligation, person): 6 hex digits (what :data:`Lookup` gets)."""
    return _ref_bytes(obligation_id, person_id).hex()


def _tag(secret: bytes, body: bytes, obligation_id: str, person_id: str) -> bytes:
    msg = _MAC_DOMAIN + body + _lp(obligation_id) + _lp(person_id)
    return hmac.new(secret, msg, hashlib.sha256).digest()[:_TAG_BYTES]


def _b64(raw: bytes) -> str:
    return base64.urlsafe_b64encode(raw).decode("ascii").rstrip("=")


def make_token(
    obligation_id: str,
    level: int,
    person_id: str,
    expires_at: int,
    secret: Secret,
    partition: int = 0,
) -> str:
    """A token for (obligation, level, person) valid until ``expires_at`` (rounded up to the
    minute), naming the escalation ``partition`` that can resolve it."""
    if not 1 <= level <= MAX_LEVEL:
        raise ValueError(f"level must be 1-{MAX_LEVEL}, got {level}")
    if not 0 <= partition < MAX_PARTITIONS:
        raise ValueError(f"partition must be 0-{MAX_PARTITIONS - 1}, got {partition}")
    minutes = -(-expires_at // 60)
    if not 0 <= minutes < 1 << 32:
        raise ValueError(f"expiry {expires_at} out of range")
    body = (
        bytes([_VERSION])
        + (level << 12 | partition).to_bytes(2, "big")
        + minutes.to_bytes(4, "big")
        + _ref_bytes(obligation_id, person_id)
    )
    return _b64(body + _tag(_secret_bytes(secret), body, obligation_id, person_id))


def _decode(token: str) -> bytes:
    if not isinstance(token, str) or not _TOKEN.match(token):
        raise AckError("malformed", f"expected {TOKEN_CHARS} characters of base64url")
    try:
        raw = base64.urlsafe_b64decode(token)
    except (binascii.Error, ValueError):
        raise AckError("malformed", "not base64url") from None
    if raw[0] != _VERSION:
        raise AckError("malformed", f"unknown token version {raw[0]}")
    return raw


def token_partition(token: str) -> int:
    """The escalation partition a token names, **unverified** (only to route the request to
    the worker that can verify it); raises :class:`AckError` (``malformed``)."""
    raw = _decode(token)
    return int.from_bytes(raw[1:3], "big") & (MAX_PARTITIONS - 1)


def verify(token: str, secrets: Secret | Sequence[Secret], now: int, lookup: Lookup) -> AckClaim:
    """The claim of a genuine, unexpired token; raises :class:`AckError` otherwise.

    ``secrets``: one secret, or several (rotation: any may have signed). ``lookup``: ref ->
    candidate (obligation id, person id) pairs (e.g. an :class:`AckIndex`). Signature first,
    then expiry: only a genuine token is ever reported as expired."""
    raw = _decode(token)
    body, tag = raw[:_BODY_BYTES], raw[_BODY_BYTES:]
    packed = int.from_bytes(body[1:3], "big")
    level, partition = packed >> 12, packed & (MAX_PARTITIONS - 1)
    expires_at = int.from_bytes(body[3:7], "big") * 60
    ref = body[7:_BODY_BYTES].hex()
    keys = (
        [_secret_bytes(secrets)]
        if isinstance(secrets, str | bytes)
        else [_secret_bytes(s) for s in secrets]
    )
    if not keys:
        raise ValueError("no acknowledgement secret given")
    candidates = list(dict.fromkeys(lookup(ref)))
    if not candidates:
        raise AckError("unknown", f"ref {ref}")
    match: tuple[str, str] | None = None
    for obligation_id, person_id in candidates:
        if _ref_bytes(obligation_id, person_id).hex() != ref:
            continue  # a lookup that answers loosely cannot widen what the token says
        for key in keys:  # no early exit: every candidate and key is checked
            if hmac.compare_digest(_tag(key, body, obligation_id, person_id), tag):
                match = (obligation_id, person_id)
    if match is None:
        raise AckError("forged")
    if level < 1:
        raise AckError("malformed", "level 0")
    if now >= expires_at:
        raise AckError("expired", f"{now - expires_at} s ago")
    return AckClaim(match[0], level, match[1], expires_at, ref, partition)


# ---------------------------------------------------------------------------------------
# Links


def normalize_base_url(base_url: str) -> str:
    """``http(s)://host[:port][/path]`` without a trailing slash; raises ValueError."""
    url = base_url.strip().rstrip("/")
    parts = urlsplit(url)
    if parts.scheme not in ("http", "https") or not parts.netloc:
        raise ValueError(f"{base_url!r} is not an http(s) URL (e.g. https://gk.example.cn)")
    if parts.query or parts.fragment:
        raise ValueError(f"{base_url!r}: no query or fragment in the public URL")
    return url


def base_url_problems(base_url: str) -> list[str]:
    """What is wrong with a public URL for acknowledgement links (to log at start-up)."""
    try:
        url = normalize_base_url(base_url)
    except ValueError as exc:
        return [str(exc)]
    size = len(url) + len(ACK_PATH) + TOKEN_CHARS
    if size > MAX_LINK_CHARS:
        return [
            f"acknowledgement links are {size} characters with {url!r}; over "
            f"{MAX_LINK_CHARS} a long message needs a third SMS segment "
            f"(keep the public URL within {MAX_LINK_CHARS - len(ACK_PATH) - TOKEN_CHARS})"
        ]
    return []


def ack_url(
    notify: Notify,
    base_url: str,
    secret: Secret,
    now: int | None = None,
    *,
    ttl: int = DEFAULT_TTL_S,
    index: RefSink | None = None,
    partition: int = 0,
) -> str:
    """The signed link for one message: ``{base_url}/a/{token}``, valid ``ttl`` seconds from
    ``now`` (default: ``notify.at``, when the core decided the message), naming the escalation
    ``partition``. With ``index``, the (obligation, person) pair is registered so that
    :func:`verify` can find it."""
    issued = notify.at if now is None else now
    token = make_token(
        notify.obligation_id, notify.level, notify.person_id, issued + ttl, secret, partition
    )
    if index is not None:
        index.add(notify.obligation_id, notify.person_id)
    return f"{normalize_base_url(base_url)}{ACK_PATH}{token}"


def make_ack_url(
    base_url: str,
    secret: Secret,
    *,
    ttl: int = DEFAULT_TTL_S,
    index: RefSink | None = None,
    partition: Callable[[str], int] | None = None,
) -> Callable[[Notify], str]:
    """``Notifier.ack_url``: each message's link, valid ``ttl`` from ``Notify.at``.
    ``partition``: obligation id -> its escalation partition (default: 0, one worker)."""
    base = normalize_base_url(base_url)
    _secret_bytes(secret)  # fail at start-up, not at the first page

    def build(notify: Notify) -> str:
        p = partition(notify.obligation_id) if partition is not None else 0
        return ack_url(notify, base, secret, ttl=ttl, index=index, partition=p)

    return build


class AckIndex:
    """ref -> (obligation id, person id) pairs: the :data:`Lookup` for :func:`verify`.

    In memory. Fill it as links are made (``make_ack_url(..., index=index)``) and, after a
    restart, from the restored escalation states (:meth:`add_states`). :meth:`discard` drops
    an obligation that is over (its links then answer ``unknown``)."""

    def __init__(self) -> None:
        self._refs: dict[str, set[tuple[str, str]]] = {}
        self._by_obligation: dict[str, set[str]] = {}

    def add(self, obligation_id: str, person_id: str) -> str:
        ref = ack_ref(obligation_id, person_id)
        self._refs.setdefault(ref, set()).add((obligation_id, person_id))
        self._by_obligation.setdefault(obligation_id, set()).add(person_id)
        return ref

    def add_notify(self, notify: Notify) -> str:
        return self.add(notify.obligation_id, notify.person_id)

    def add_state(self, state: EscalationState) -> int:
        """Every person the state sent a message to (pairs already known cost a set lookup);
        returns how many messages were read."""
        known = self._by_obligation.get(state.obligation_id, set())
        for sent in state.sent:
            if sent.contact.person_id not in known:
                self.add(state.obligation_id, sent.contact.person_id)
                known = self._by_obligation[state.obligation_id]
        return len(state.sent)

    def add_states(self, states: Iterable[EscalationState]) -> int:
        """Every person each state sent a message to; returns how many messages were read."""
        return sum(self.add_state(state) for state in states)

    def clear(self) -> None:
        """Forget everything (before rebuilding from the states of newly owned partitions)."""
        self._refs.clear()
        self._by_obligation.clear()

    def discard(self, obligation_id: str) -> None:
        for person_id in self._by_obligation.pop(obligation_id, set()):
            ref = ack_ref(obligation_id, person_id)
            pairs = self._refs.get(ref)
            if pairs is not None:
                pairs.discard((obligation_id, person_id))
                if not pairs:
                    del self._refs[ref]

    def __call__(self, ref: str) -> list[tuple[str, str]]:
        return sorted(self._refs.get(ref, ()))

    def __len__(self) -> int:
        return sum(len(p) for p in self._refs.values())


# ---------------------------------------------------------------------------------------
# SMS size

_GSM_BASIC = frozenset(
    "@£$¥èéùìòÇ\nØø\rÅåΔ_ΦΓΛΩΠΨΣΘΞÆæßÉ !\"#¤%&'()*+,-./0123456789:;<=>?¡"
    "ABCDEFGHIJKLMNOPQRSTUVWXYZÄÖÑÜ§¿abcdefghijklmnopqrstuvwxyzäöñüà"
)
_GSM_EXTENDED = frozenset("^{}\\[~]|€\f")


def sms_segments(text: str) -> int:
    """How many SMS segments ``text`` takes: GSM-7 (160, or 153 per part; extension
    characters count twice) when every character is in the GSM alphabet, else UCS-2 (70, or
    67 per part, counting UTF-16 code units, as carriers and Twilio do)."""
    if all(c in _GSM_BASIC or c in _GSM_EXTENDED for c in text):
        units = sum(2 if c in _GSM_EXTENDED else 1 for c in text)
        single, part = 160, 153
    else:
        units = len(text.encode("utf-16-le")) // 2
        single, part = 70, 67
    if units <= single:
        return 1
    return -(-units // part)
