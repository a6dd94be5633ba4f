"""Implausible times: when an event's timestamps cannot be true at the moment it arrives.

A live monitor that takes a ``published_at`` of 2099 would close an obligation before the
page exists; one of 1800 would open duties that ended two centuries ago. The policy, applied
by the receiving worker with its own clock (``now``) before anything is journaled:

- no timestamp later than ``now + future_skew_s`` (default 10 minutes: clocks drift, a CMS
  stamps a page a little before it is served); a bare date counts as its Asia/Shanghai day,
  refused only when that day has not begun by ``now + future_skew_s``;
- no timestamp before ``earliest`` (default 2000-01-01, Asia/Shanghai).

Replay (``govclock replay``) never applies it: its clock is the history's own, and history
may be as old as it is. Pure: the clock is passed in.
"""

from __future__ import annotations

from dataclasses import dataclass
from datetime import UTC, date, datetime, timedelta, timezone

from pydantic import BaseModel

from schemas.events import FieldError

__all__ = ["EARLIEST", "FUTURE_SKEW_S", "TimePolicy", "implausible_times"]

#: How far after its arrival a timestamp may lie (clock skew between sender and worker).
FUTURE_SKEW_S = 600
#: The earliest time an event may name.
EARLIEST = date(2000, 1, 1)
_SHANGHAI = timezone(timedelta(hours=8))


@dataclass(frozen=True)
class TimePolicy:
    """The bounds a live event's times must keep (settings ``GOVCLOCK_FUTURE_SKEW_S`` and
    ``GOVCLOCK_EARLIEST_TIME``)."""

    future_skew_s: int = FUTURE_SKEW_S
    earliest: date = EARLIEST


def _problem(value: datetime | date, now: int, policy: TimePolicy) -> str | None:
    latest = datetime.fromtimestamp(now + policy.future_skew_s, UTC)
    if isinstance(value, datetime):
        if value > latest:
            ahead = int(value.timestamp()) - now
            return (
                f"{value.isoformat()} is {ahead} s after this worker's clock "
                f"(more than the {policy.future_skew_s} s allowed): not yet true"
            )
        if value.astimezone(_SHANGHAI).date() < policy.earliest:
            return f"{value.isoformat()} is before {policy.earliest.isoformat()}"
        return None
    if value > latest.astimezone(_SHANGHAI).date():
        return f"{value.isoformat()} has not begun in Asia/Shanghai: not yet true"
    if value < policy.earliest:
        return f"{value.isoformat()} is before {policy.earliest.isoformat()}"
    return None


def implausible_times(event: BaseModel, now: int, policy: TimePolicy) -> list[FieldError]:
    """Each timestamp of a validated event that the policy refuses, named by its field."""
    out: list[FieldError] = []
    for name in type(event).model_fields:
        value = getattr(event, name)
        if isinstance(value, date):
            message = _problem(value, now, policy)
            if message is not None:
                out.append(FieldError(field=name, message=message))
    return out
