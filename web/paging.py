"""``GET /v1/obligations``: the query, its cursor, and a page read without stalling the loop.

Pages are ordered by due time, then id. ``limit`` (default 500, at most 5,000) caps a page;
``next`` is an opaque cursor for the page after it, bound to the filters it was made with
(a cursor sent with other filters is refused). Keyset paging: the cursor names the last
``(due_at, id)`` returned, so obligations opened, closed or moved meanwhile neither repeat
nor vanish from the pages still to come unless their own due time moved across the cursor.

The scan reads each partition's index (deadlines/query.py) in steps of at most
:data:`STEP_ENTRIES` entries and yields to the event loop between steps and every
:data:`VIEWS_PER_YIELD` rendered obligations, so a query never holds the worker (its
sweeper, its ledger agent) for more than a few milliseconds.
"""

from __future__ import annotations

import asyncio
import base64
import hashlib
import time
from collections.abc import Iterable, Mapping
from dataclasses import asdict, dataclass
from datetime import datetime
from typing import Any

import orjson

from deadlines.query import Filters, Key, ObligationIndex
from deadlines.report import obligation_view
from deadlines.timeparse import parse_as_of

__all__ = [
    "DEFAULT_LIMIT",
    "MAX_LIMIT",
    "Query",
    "QueryError",
    "decode_cursor",
    "encode_cursor",
    "local_page",
    "parse_query",
]

DEFAULT_LIMIT = 500
MAX_LIMIT = 5000
#: Index entries looked at between two yields to the event loop.
STEP_ENTRIES = 2000
#: Obligations rendered to JSON-ready dicts between two yields.
VIEWS_PER_YIELD = 250
#: The query parameters a list request may carry (``local`` is the peers' own).
PARAMETERS = ("status", "unit", "rule", "subject_id", "due_before", "limit", "cursor", "local")


class QueryError(ValueError):
    """A bad list request (400): ``parameter`` names what is wrong."""

    def __init__(self, parameter: str, message: str) -> None:
        super().__init__(f"{parameter}: {message}")
        self.parameter = parameter


@dataclass(frozen=True)
class Query:
    filters: Filters
    after: Key | None
    limit: int

    def peer_params(self, cursor: str | None) -> dict[str, str]:
        """The same query for another worker (``due_before`` as parsed here)."""
        out = {k: str(v) for k, v in asdict(self.filters).items() if v is not None}
        out["limit"] = str(self.limit)
        if cursor:
            out["cursor"] = cursor
        return out


def _fingerprint(f: Filters) -> str:
    raw = orjson.dumps(asdict(f), option=orjson.OPT_SORT_KEYS)
    return hashlib.sha256(raw).hexdigest()[:12]


def encode_cursor(key: Key, f: Filters) -> str:
    raw = orjson.dumps([key[0], key[1], _fingerprint(f)])
    return base64.urlsafe_b64encode(raw).decode().rstrip("=")


def decode_cursor(text: str, f: Filters) -> Key:
    try:
        raw = base64.urlsafe_b64decode(text + "=" * (-len(text) % 4))
        due, oid, fp = orjson.loads(raw)
        if not isinstance(due, int) or not isinstance(oid, str) or not isinstance(fp, str):
            raise TypeError
    except (ValueError, TypeError):
        raise QueryError("cursor", "not a cursor this API gave (copy `next` as it is)") from None
    if fp != _fingerprint(f):
        raise QueryError("cursor", "made for other filters: send the filters it was made with")
    return due, oid


def _limit(text: str | None) -> int:
    if text is None or text == "":
        return DEFAULT_LIMIT
    if not (text.isascii() and text.isdigit()) or not 1 <= int(text) <= MAX_LIMIT:
        raise QueryError("limit", f"{text!r} is not a whole number from 1 to {MAX_LIMIT}")
    return int(text)


def _due_before(text: str | None) -> int | None:
    if not text:
        return None
    if text.isascii() and text.isdigit() and len(text) <= 12:
        return int(text)
    try:
        return parse_as_of(text, int(time.time()))
    except ValueError as exc:
        raise QueryError("due_before", str(exc).removeprefix("--as-of: ")) from None


def parse_query(q: Mapping[str, str]) -> Query:
    """The list query of a request's parameters; raises :class:`QueryError`."""
    unknown = sorted(set(q) - set(PARAMETERS))
    if unknown:
        raise QueryError(unknown[0], f"unknown parameter; known: {', '.join(PARAMETERS)}")
    filters = Filters(
        status=q.get("status") or None,
        unit=q.get("unit") or None,
        rule=q.get("rule") or None,
        subject_id=q.get("subject_id") or None,
        due_before=_due_before(q.get("due_before")),
    )
    cursor = q.get("cursor")
    after = decode_cursor(cursor, filters) if cursor else None
    return Query(filters, after, _limit(q.get("limit")))


async def local_page(
    indexes: Iterable[ObligationIndex], query: Query
) -> tuple[list[dict[str, Any]], Key | None]:
    """This worker's first ``limit`` matches after the cursor, rendered, and the key to
    continue after when there may be more (None: the last page)."""
    found: list[tuple[Key, Any]] = []
    more = False
    for index in indexes:
        after = query.after
        taken = 0
        while True:
            step = index.step(query.filters, after, query.limit - taken, STEP_ENTRIES)
            found += step.matches
            taken += len(step.matches)
            await asyncio.sleep(0)
            if step.done:
                break
            if taken >= query.limit:
                more = True
                break
            after = step.last
    found.sort(key=lambda item: item[0])
    if len(found) > query.limit:
        found, more = found[: query.limit], True
    views = []
    for i, (_, ob) in enumerate(found, start=1):
        views.append(obligation_view(ob))
        if i % VIEWS_PER_YIELD == 0:
            await asyncio.sleep(0)
    return views, (found[-1][0] if more and found else None)


def view_key(view: Mapping[str, Any]) -> Key:
    """The ``(due_at, id)`` of a rendered obligation (as a peer sends it)."""
    return int(datetime.fromisoformat(str(view["due_at"])).timestamp()), str(view["id"])
