"""Time arguments: RFC 3339 with an offset, a bare date (Asia/Shanghai), or ``now`` (passed in)."""

from __future__ import annotations

from datetime import date, datetime

from deadlines.calendar import day_end
from schemas.events import DATE_RE, INSTANT_RE


def parse_as_of(text: str, now: int) -> int:
    """``now`` (the ``now`` given), ``2026-03-10T12:00:00+08:00`` or ``2026-03-10`` (the end of
    that day)."""
    if text == "now":
        return now
    hint = "give RFC 3339 with an offset (2026-03-10T12:00:00+08:00), a date, or 'now'"
    try:
        if DATE_RE.match(text):
            return day_end(date.fromisoformat(text).toordinal())
        if INSTANT_RE.match(text):
            return int(datetime.fromisoformat(text).timestamp())
    except ValueError as exc:
        raise ValueError(f"--as-of: {text!r}: {exc}") from None
    raise ValueError(f"--as-of: {text!r} is not a time I can read; {hint}")
