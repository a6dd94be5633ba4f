"""RSS, Atom and JSON Feed bytes -> ``feed.item`` event dicts (pure: no I/O, no clock).

:func:`parse_feed` takes the body of one fetch and its response headers (the fetcher is
above, in ``feeds/``) and runs feedparser on the bytes with those headers, so the charset of
``Content-Type``, the XML declaration and BOMs decide the encoding (GB2312/GBK/GB18030, Big5,
UTF-16/32). A feed feedparser had to recover (``bozo``: not well-formed, a wrong charset) is
noted in :attr:`FeedParse.bozo`, and the items it recovered are kept. Nothing usable (no feed
root and no items) is a ``parse_error`` with the reason.

The dedupe key (``item_id``) of an item is its guid (Atom id), else its link, else a hash of
its content. When more than 5 % of one fetch's guids are empty or repeated (feeds that put
the same text, or nothing, in every guid), the fetch's keys are, as FreshRSS does,
``hash:`` + SHA-256 of link and date, with the title added only where those two collide.

Dates are never invented (:func:`read_date`): the feed's own text is kept
(``published_raw``) with the precision it has; a timestamp without a zone is read in the
site's offset (+08:00 by default); a date-only value, or a midnight the feed uses for "this
day" (``00:00:00`` in its own offset, or 16:00:00 UTC, RSSHub's rendering of a Shanghai
date), is that day in Asia/Shanghai, not the previous day; no date leaves ``published_at``
out with precision ``none``. ``seen_at`` is passed in.
"""

from __future__ import annotations

import hashlib
import html
import io
import re
from collections import Counter
from collections.abc import Mapping
from dataclasses import dataclass, field
from datetime import UTC, date, datetime, timedelta, timezone
from email.utils import parsedate_tz
from typing import Any, Literal

import feedparser

from schemas.events import EventError, feed_item_event_id, parse_event

__all__ = [
    "BROKEN_GUID_SHARE",
    "SHANGHAI",
    "FeedParse",
    "parse_feed",
    "read_date",
]

SHANGHAI = timezone(timedelta(hours=8))
#: Above this share of empty or repeated guids in one fetch, guids are not trusted.
BROKEN_GUID_SHARE = 0.05
#: The title of an item whose feed gives none (the contract requires one).
UNTITLED = "(untitled)"
_MAX_TEXT = 2000
_MAX_ID = 200
_CONTROL = re.compile(r"[\x00-\x08\x0b\x0c\x0e-\x1f\x7f]")
_TAG = re.compile(r"<[^>]*>")
_SPACE = re.compile(r"\s+")
_URL = re.compile(r"^[A-Za-z][A-Za-z0-9+.-]*:\S+$")
_DAY = re.compile(r"^(\d{4})-(\d{1,2})-(\d{1,2})$")
_ISO = re.compile(
    r"^(\d{4})-(\d{1,2})-(\d{1,2})[Tt ](\d{1,2}):(\d{2})(?::(\d{2})(?:[.,]\d+)?)?"
    r"\s*(Z|z|UTC|GMT|[+-]\d{2}:?\d{2})?$"
)
_HAS_SECONDS = re.compile(r"\d{1,2}:\d{2}:\d{2}")

Precision = Literal["second", "minute", "day", "none"]


@dataclass(frozen=True, slots=True)
class FeedParse:
    """What one fetch's body came to."""

    #: ``ok`` (a feed, perhaps with no items) or ``parse_error`` (nothing usable).
    outcome: Literal["ok", "parse_error"]
    #: ``feed.item`` event dicts, each already valid against the contract, in feed order.
    items: list[dict[str, Any]] = field(default_factory=list)
    #: Why nothing usable came out (``parse_error`` only).
    reason: str | None = None
    #: What feedparser had to recover from, if anything (its items are kept).
    bozo: str | None = None
    #: The encoding feedparser decoded with, and the format it saw (``rss20``, ``atom10``…).
    encoding: str | None = None
    version: str = ""
    #: Entries left out, each with why (no key, a duplicate in the same fetch, …).
    skipped: list[str] = field(default_factory=list)
    #: Whether the FreshRSS-style fallback keys were used (the guids were broken).
    guid_fallback: bool = False


# -- text --------------------------------------------------------------------------------


def _text(value: Any, limit: int = _MAX_TEXT) -> str | None:
    """Plain text: markup stripped, entities decoded, control characters and runs of
    whitespace removed; None when nothing is left."""
    if not isinstance(value, str):
        return None
    out = _SPACE.sub(" ", _CONTROL.sub("", html.unescape(_TAG.sub(" ", value)))).strip()
    return out[:limit] or None


def _link(value: Any) -> str | None:
    if not isinstance(value, str):
        return None
    value = value.strip()
    return value if _URL.match(value) and len(value) <= _MAX_TEXT else None


def _raw(entry: Mapping[str, Any], key: str) -> Any:
    """A key as feedparser stored it (its dict ``get`` maps deprecated aliases, and warns)."""
    return dict.get(entry, key) if isinstance(entry, dict) else entry.get(key)


def _hash(*parts: str) -> str:
    return hashlib.sha256("\n".join(parts).encode("utf-8")).hexdigest()


def _bounded_id(value: str) -> str:
    value = _CONTROL.sub("", value).strip()
    return value if len(value) <= _MAX_ID else "sha256:" + _hash(value)


# -- dates -------------------------------------------------------------------------------


def _offset(zone: str | None, naive: timezone) -> timezone:
    if zone is None:
        return naive
    if zone in ("Z", "z", "UTC", "GMT"):
        return UTC
    sign = -1 if zone[0] == "-" else 1
    digits = zone[1:].replace(":", "")
    return timezone(sign * timedelta(hours=int(digits[:2]), minutes=int(digits[2:])))


def _as_day(at: datetime) -> date | None:
    """The day a midnight stands for: 00:00:00 in the feed's own offset is that day; 16:00:00
    UTC is RSSHub's rendering of 00:00 Asia/Shanghai, so the next day. Otherwise None."""
    if (at.hour, at.minute, at.second) == (0, 0, 0):
        return at.date()
    if at.utcoffset() == timedelta(0) and (at.hour, at.minute, at.second) == (16, 0, 0):
        return (at + timedelta(hours=8)).date()
    return None


def _parse(raw: str, naive: timezone) -> tuple[datetime | date, Precision] | None:
    day = _DAY.match(raw)
    if day:
        return date(int(day[1]), int(day[2]), int(day[3])), "day"
    iso = _ISO.match(raw)
    if iso:
        y, mo, d, h, mi = (int(iso[i]) for i in range(1, 6))
        sec = iso[6]
        at = datetime(y, mo, d, h, mi, int(sec or 0), tzinfo=_offset(iso[7], naive))
        return at, "second" if sec is not None else "minute"
    parts = parsedate_tz(raw)
    if parts is not None and parts[0] > 0:
        zone = naive if parts[9] is None else timezone(timedelta(seconds=parts[9]))
        at = datetime(*parts[:6], tzinfo=zone)
        return at, "second" if _HAS_SECONDS.search(raw) else "minute"
    return None


def read_date(
    raw: Any, parsed: Any = None, naive: timezone = SHANGHAI
) -> tuple[str | None, Precision]:
    """The ``published_at`` text of a feed date and its precision (``None, "none"`` when it
    gives none). ``parsed`` is feedparser's UTC ``struct_time``, used only when the text is
    in no form read here; ``naive`` is the offset of a time given without a zone."""
    text = raw.strip() if isinstance(raw, str) else ""
    value: tuple[datetime | date, Precision] | None = None
    if text:
        try:
            value = _parse(text, naive)
        except (ValueError, OverflowError):
            value = None
    if value is None and parsed is not None:
        try:
            t = tuple(parsed)
            value = datetime(t[0], t[1], t[2], t[3], t[4], t[5], tzinfo=UTC), "second"
        except (TypeError, ValueError, OverflowError):
            value = None
    if value is None:
        return None, "none"
    at, precision = value
    if isinstance(at, datetime):
        day = _as_day(at)
        if day is None:
            return at.isoformat(timespec="seconds"), precision
        at = day
    if not 1 <= at.year <= 9999:
        return None, "none"
    return at.isoformat(), "day"


# -- keys --------------------------------------------------------------------------------


def _broken(values: list[str | None]) -> bool:
    """More than :data:`BROKEN_GUID_SHARE` of the values are empty or repeats."""
    if not values:
        return False
    counts = Counter(v for v in values if v)
    bad = sum(1 for v in values if not v) + sum(n - 1 for n in counts.values())
    return bad > BROKEN_GUID_SHARE * len(values)


def _keys(entries: list[Mapping[str, Any]]) -> tuple[list[str | None], bool]:
    """The dedupe key of each entry, and whether the fallback keys were used."""
    guids = [_text(e.get("id"), 10**6) for e in entries]
    if not _broken(guids):
        keys: list[str | None] = []
        for e, guid in zip(entries, guids, strict=True):
            link = _text(e.get("link"), 10**6)
            if guid:
                keys.append(_bounded_id(guid))
            elif link:
                keys.append(_bounded_id(link))
            else:
                content = _content(e)
                keys.append("hash:" + _hash(*content) if any(content) else None)
        return keys, False
    pairs = [
        (
            _text(e.get("link"), 10**6) or "",
            _text(_raw(e, "published") or _raw(e, "updated")) or "",
        )
        for e in entries
    ]
    seen = Counter(pairs)
    keys = []
    for e, (link, when) in zip(entries, pairs, strict=True):
        parts = [link, when]
        if seen[(link, when)] > 1 or not (link or when):
            parts.append(_text(e.get("title"), 10**6) or "")
        if not any(parts):
            parts = _content(e)
        keys.append("hash:" + _hash(*parts) if any(parts) else None)
    return keys, True


def _content(entry: Mapping[str, Any]) -> list[str]:
    """What an entry says (title, summary, content, date): the last resort of a key."""
    parts = [_text(_raw(entry, k), 10**6) or "" for k in ("title", "summary", "published")]
    for content in entry.get("content") or ():
        parts.append(_text(content.get("value"), 10**6) or "")
    return parts


# -- the parse ---------------------------------------------------------------------------


def _item(
    entry: Mapping[str, Any],
    key: str,
    *,
    source_id: str,
    unit: str,
    source: str,
    seen_at: str,
    naive: timezone,
) -> dict[str, Any]:
    # dict.get: the raw keys, not feedparser's deprecated updated -> published mapping.
    raw = _raw(entry, "published") or _raw(entry, "updated") or _raw(entry, "created")
    parsed = _raw(entry, "published_parsed") or _raw(entry, "updated_parsed")
    published_at, precision = read_date(raw, parsed, naive)
    summary = _text(entry.get("summary"))
    title = _text(entry.get("title")) or UNTITLED
    item: dict[str, Any] = {
        "event_id": feed_item_event_id(source_id, key),
        "type": "feed.item",
        "unit": unit,
        "source": source,
        "source_id": source_id,
        "item_id": key,
        "title": title,
        "summary": summary,
        "link": _link(entry.get("link")),
        "author": _text(entry.get("author"), 200),
        "published_at": published_at,
        "published_raw": _text(raw, 200),
        "published_precision": precision,
        "seen_at": seen_at,
    }
    return {k: v for k, v in item.items() if v is not None}


def _lower(headers: Mapping[str, str]) -> dict[str, str]:
    return {k.lower(): v for k, v in headers.items()}


def parse_feed(
    body: bytes,
    headers: Mapping[str, str],
    *,
    source_id: str,
    unit: str,
    seen_at: datetime,
    source: str = "feed-poller",
    naive: timezone = SHANGHAI,
) -> FeedParse:
    """The ``feed.item`` events of one fetch's ``body`` (see the module doc)."""
    try:
        parsed = feedparser.parse(io.BytesIO(body), response_headers=_lower(headers))
    except Exception as exc:  # feedparser recovers from almost anything; never crash a poll
        return FeedParse("parse_error", reason=f"feedparser failed: {type(exc).__name__}: {exc}")
    bozo = None
    if parsed.get("bozo"):
        why = parsed.get("bozo_exception")
        bozo = f"{type(why).__name__}: {why}" if why is not None else "bozo"
    version = parsed.get("version") or ""
    encoding = parsed.get("encoding")
    entries: list[Mapping[str, Any]] = list(parsed.get("entries") or ())
    if not entries and not version:
        reason = bozo or "not a feed: no RSS, Atom or JSON Feed root and no items"
        if not body.strip():
            reason = "empty body"
        return FeedParse("parse_error", reason=reason, bozo=bozo, encoding=encoding)
    keys, fallback = _keys(entries)
    seen_text = seen_at.isoformat(timespec="seconds")
    items: list[dict[str, Any]] = []
    skipped: list[str] = []
    taken: set[str] = set()
    for n, (entry, key) in enumerate(zip(entries, keys, strict=True)):
        if key is None:
            skipped.append(f"entry {n}: no guid, link, title, summary or date to key it by")
            continue
        if key in taken:
            skipped.append(f"entry {n}: repeats item_id {key!r} of this fetch")
            continue
        item = _item(
            entry,
            key,
            source_id=source_id,
            unit=unit,
            source=source,
            seen_at=seen_text,
            naive=naive,
        )
        try:
            parse_event(item)
        except EventError as exc:
            skipped.append(f"entry {n}: {exc}")
            continue
        taken.add(key)
        items.append(item)
    if entries and not items:
        return FeedParse(
            "parse_error",
            reason="no usable item: " + "; ".join(skipped[:3]),
            bozo=bozo,
            encoding=encoding,
            version=version,
            skipped=skipped,
            guid_fallback=fallback,
        )
    return FeedParse(
        "ok",
        items=items,
        bozo=bozo,
        encoding=encoding,
        version=version,
        skipped=skipped,
        guid_fallback=fallback,
    )
