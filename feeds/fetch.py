"""Fetching one feed source over HTTP, and the backoff between polls.

:func:`fetch` is one conditional GET with aiohttp (feedparser has no HTTP timeout, so it
only ever sees the bytes, in :func:`sources.feeds.parse_feed`):

- timeouts: connect, read (between two chunks) and total (a slow-loris server that trickles
  a byte at a time is cut off by the total);
- a body cap (15 MiB by default, as Miniflux): a ``Content-Length`` over it is refused
  unread, and the body is read chunk by chunk up to the cap (aiohttp's ``read(n)`` returns
  what has arrived, so one call is not the body);
- conditional GET: the previous result's ``ETag`` and ``Last-Modified`` are sent as
  ``If-None-Match`` / ``If-Modified-Since``, and a 304 is ``not_modified``;
- outcomes (the ``feed.polled`` contract): 2xx ``ok``; 304 ``not_modified``; 403, 412, 418
  ``blocked`` (anti-bot pages); 429 and 503 ``http_error`` with ``Retry-After`` (seconds or
  an HTTP date) parsed; other 4xx/5xx ``http_error``; timeouts ``timeout``; refused, reset,
  DNS failures and a body over the cap ``network_error``.

:func:`poll` fetches and parses, returning the ``feed.polled`` and ``feed.item`` event dicts.
:func:`next_poll` is the pure backoff: capped exponential with jitter, honouring Retry-After
for that source only (never per host), and never giving up on a source.
"""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass, field
from datetime import UTC, datetime
from email.utils import parsedate_to_datetime
from typing import Any

import aiohttp

from schemas.events import PollOutcome, feed_polled_event_id
from sources.feeds import FeedParse, parse_feed

__all__ = [
    "BLOCKED_STATUSES",
    "RETRY_AFTER_STATUSES",
    "FetchLimits",
    "FetchResult",
    "PollResult",
    "fetch",
    "next_poll",
    "parse_retry_after",
    "poll",
]

#: Statuses that are anti-bot refusals (RSSHub, WAFs): ``blocked``.
BLOCKED_STATUSES = frozenset({403, 412, 418})
#: Statuses whose ``Retry-After`` is honoured.
RETRY_AFTER_STATUSES = frozenset({429, 503})
USER_AGENT = "govclock-feeds/0.1 (+https://govclock.example/feeds)"
_CHUNK = 64 * 1024


@dataclass(frozen=True, slots=True)
class FetchLimits:
    """Timeouts (seconds) and the body cap (bytes) of one fetch."""

    connect_s: float = 10.0
    read_s: float = 20.0
    total_s: float = 60.0
    max_bytes: int = 15 * 1024 * 1024


@dataclass(frozen=True, slots=True)
class FetchResult:
    """One fetch of one source: its outcome and, when ``ok``, the body and headers."""

    source_id: str
    url: str
    at: datetime
    outcome: PollOutcome
    http_status: int | None = None
    body: bytes | None = None
    headers: Mapping[str, str] = field(default_factory=dict)
    #: The validators to send next time (kept from the previous result on a 304 or failure).
    etag: str | None = None
    last_modified: str | None = None
    #: Seconds the server asked us to wait (429/503 ``Retry-After``), if it said.
    retry_after: float | None = None
    detail: str | None = None

    def polled_event(self, unit: str, items: int | None = None, **extra: Any) -> dict[str, Any]:
        """The ``feed.polled`` event dict of this fetch (``extra`` overrides fields)."""
        event: dict[str, Any] = {
            "event_id": feed_polled_event_id(self.source_id, self.at),
            "type": "feed.polled",
            "unit": unit,
            "source": "feed-poller",
            "source_id": self.source_id,
            "at": self.at.isoformat(timespec="seconds"),
            "outcome": self.outcome,
            "http_status": self.http_status,
            "detail": (self.detail or "")[:2000] or None,
            "items": items,
        }
        event.update(extra)
        return {k: v for k, v in event.items() if v is not None}


def parse_retry_after(value: str | None, at: datetime) -> float | None:
    """Seconds to wait from ``at``: ``Retry-After`` as delta-seconds or an HTTP date (a date
    in the past is 0). None when absent or unreadable."""
    if value is None:
        return None
    text = value.strip()
    if text.isdigit():
        return float(int(text))
    try:
        when = parsedate_to_datetime(text)
    except (TypeError, ValueError, IndexError):
        return None
    if when.tzinfo is None:
        when = when.replace(tzinfo=UTC)
    return max(0.0, (when - at).total_seconds())


def next_poll(
    interval: float,
    failures: int,
    retry_after: float | None = None,
    jitter: float = 0.0,
    cap: float = 6 * 3600.0,
    retry_after_cap: float = 24 * 3600.0,
) -> float:
    """Seconds until a source's next poll (pure; the caller draws ``jitter`` in [0, 1]).

    No failures: ``interval``. After ``failures`` consecutive failures: ``interval * 2**n``,
    capped at ``max(cap, interval)``; it never stops: a source down for a week is still tried
    every ``cap``. Up to 10 % jitter spreads sources that failed together. A ``Retry-After``
    is honoured (up to ``retry_after_cap``, so a hostile value cannot silence a source) when
    longer than the backoff."""
    if interval <= 0:
        raise ValueError("interval must be positive")
    jitter = min(max(jitter, 0.0), 1.0)
    ceiling = max(cap, interval)
    delay = interval if failures <= 0 else min(interval * 2.0 ** min(failures, 60), ceiling)
    delay *= 1.0 + 0.1 * jitter
    if retry_after is not None and retry_after > delay:
        delay = min(retry_after, max(retry_after_cap, delay))
    return delay


def _conditional(previous: FetchResult | None) -> dict[str, str]:
    out: dict[str, str] = {}
    if previous is not None:
        if previous.etag:
            out["If-None-Match"] = previous.etag
        if previous.last_modified:
            out["If-Modified-Since"] = previous.last_modified
    return out


def _status_outcome(status: int) -> PollOutcome:
    if status == 304:
        return "not_modified"
    if 200 <= status < 300:
        return "ok"
    if status in BLOCKED_STATUSES:
        return "blocked"
    return "http_error"


async def _read_capped(resp: aiohttp.ClientResponse, cap: int) -> bytes | None:
    """The body, read chunk by chunk; None once it passes ``cap`` bytes."""
    chunks: list[bytes] = []
    size = 0
    while True:
        chunk = await resp.content.read(_CHUNK)
        if not chunk:
            return b"".join(chunks)
        size += len(chunk)
        if size > cap:
            return None
        chunks.append(chunk)


async def fetch(
    session: aiohttp.ClientSession,
    source_id: str,
    url: str,
    *,
    previous: FetchResult | None = None,
    limits: FetchLimits = FetchLimits(),
    headers: Mapping[str, str] | None = None,
    at: datetime | None = None,
) -> FetchResult:
    """One conditional GET of ``url`` (see the module doc); never raises for the network."""
    at = at or datetime.now(UTC)
    etag = previous.etag if previous else None
    modified = previous.last_modified if previous else None
    request_headers = {"User-Agent": USER_AGENT, "Accept-Encoding": "gzip, deflate"}
    request_headers.update(headers or {})
    request_headers.update(_conditional(previous))
    timeout = aiohttp.ClientTimeout(
        total=limits.total_s, sock_connect=limits.connect_s, sock_read=limits.read_s
    )

    def failed(outcome: PollOutcome, detail: str, status: int | None = None) -> FetchResult:
        return FetchResult(
            source_id, url, at, outcome, status, detail=detail, etag=etag, last_modified=modified
        )

    try:
        async with session.get(url, headers=request_headers, timeout=timeout) as resp:
            status = resp.status
            got = {k: v for k, v in resp.headers.items()}
            outcome = _status_outcome(status)
            if outcome != "ok":
                retry = None
                if status in RETRY_AFTER_STATUSES:
                    retry = parse_retry_after(resp.headers.get("Retry-After"), at)
                if outcome == "not_modified":
                    etag = resp.headers.get("ETag") or etag
                    modified = resp.headers.get("Last-Modified") or modified
                return FetchResult(
                    source_id,
                    url,
                    at,
                    outcome,
                    status,
                    headers=got,
                    retry_after=retry,
                    detail=None if outcome == "not_modified" else f"HTTP {status} {resp.reason}",
                    etag=etag,
                    last_modified=modified,
                )
            declared = resp.content_length
            if declared is not None and declared > limits.max_bytes:
                return failed(
                    "network_error",
                    f"body over the cap: Content-Length {declared} > {limits.max_bytes}",
                    status,
                )
            body = await _read_capped(resp, limits.max_bytes)
            if body is None:
                return failed(
                    "network_error", f"body over the cap of {limits.max_bytes} bytes", status
                )
            return FetchResult(
                source_id,
                url,
                at,
                "ok",
                status,
                body=body,
                headers=got,
                etag=resp.headers.get("ETag"),
                last_modified=resp.headers.get("Last-Modified"),
            )
    except (TimeoutError, aiohttp.ServerTimeoutError) as exc:
        return failed("timeout", f"timed out: {type(exc).__name__} {exc}".strip())
    except (aiohttp.ClientError, OSError, ValueError) as exc:
        return failed("network_error", f"{type(exc).__name__}: {exc}")


@dataclass(frozen=True, slots=True)
class PollResult:
    """A fetch, its parse (when the fetch was ``ok``), and the events they make."""

    fetch: FetchResult
    parsed: FeedParse | None
    polled: dict[str, Any]
    items: list[dict[str, Any]]


async def poll(
    session: aiohttp.ClientSession,
    source_id: str,
    url: str,
    unit: str,
    *,
    previous: FetchResult | None = None,
    limits: FetchLimits = FetchLimits(),
    headers: Mapping[str, str] | None = None,
    at: datetime | None = None,
) -> PollResult:
    """Fetch and parse one source: the ``feed.polled`` event and its ``feed.item`` events
    (a body with nothing usable makes the poll a ``parse_error`` with the reason)."""
    result = await fetch(
        session, source_id, url, previous=previous, limits=limits, headers=headers, at=at
    )
    if result.outcome != "ok" or result.body is None:
        return PollResult(result, None, result.polled_event(unit), [])
    parsed = parse_feed(
        result.body, result.headers, source_id=source_id, unit=unit, seen_at=result.at
    )
    if parsed.outcome == "parse_error":
        event = result.polled_event(unit, 0, outcome="parse_error", detail=parsed.reason)
        return PollResult(result, parsed, event, [])
    detail = f"recovered: {parsed.bozo}"[:2000] if parsed.bozo else None
    event = result.polled_event(unit, len(parsed.items), detail=detail)
    return PollResult(result, parsed, event, parsed.items)
