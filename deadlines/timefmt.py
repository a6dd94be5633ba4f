"""Formatting instants for people and reports: RFC 3339 in China Standard Time."""

from __future__ import annotations

from datetime import datetime, timedelta, timezone

from deadlines.calendar import CST_OFFSET_SECONDS

CST = timezone(timedelta(seconds=CST_OFFSET_SECONDS), "Asia/Shanghai")


def rfc3339(epoch: int) -> str:
    """Epoch seconds as RFC 3339 with the +08:00 offset."""
    return datetime.fromtimestamp(epoch, tz=CST).isoformat()
