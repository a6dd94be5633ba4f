"""Formatting instants for people and reports: RFC 3339 in China Standard Time."""

from __future__ import annotations

from datetime import datetime, timedelta, timezone
from functools import lru_cache

from deadlines.calendar import CST_OFFSET_SECONDS

CST = timezone(timedelta(seconds=CST_OFFSET_SECONDS), "Asia/Shanghai")


@lru_cache(maxsize=1 << 16)
def rfc3339(epoch: int) -> str:
    """Epoch seconds as RFC 3339 with the +08:00 offset (cached: deadlines share instants,
    day ends above all, and a page renders thousands of them)."""
    return datetime.fromtimestamp(epoch, tz=CST).isoformat()
