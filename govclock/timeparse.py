"""Command-line time arguments: RFC 3339 with an offset, a bare date (Asia/Shanghai), or now."""

from __future__ import annotations

import time
from datetime import date, datetime

from deadlines.calendar import day_end


def parse_as_of(text: str) -> int:
    """``now``, ``2026-03-10T12:00:00+08:00`` or ``2026-03-10`` (the end of that day)."""
    if text == "now":
        return int(time.time())
    try:
        if len(text) == 10:
            return day_end(date.fromisoformat(text).toordinal())
        value = datetime.fromisoformat(text)
    except ValueError:
        raise ValueError(f"--as-of: {text!r} is not RFC 3339, a date, or 'now'") from None
    if value.tzinfo is None:
        raise ValueError(f"--as-of: {text!r} needs an offset, e.g. +08:00")
    return int(value.timestamp())
