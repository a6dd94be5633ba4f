"""The compliance report: every obligation with its timeline, and on-time rates.

On-time rate = met / (met + late + missed). Pending and paused obligations are not decided
yet; ``unverifiable`` ones (evidence with a date but no time, against an hour window) and
cancelled ones are counted but left out of the rate.
"""

from __future__ import annotations

from collections.abc import Iterable
from typing import Any

from deadlines.obligations import LATE, MET, MISSED, STATUSES, Obligation
from deadlines.timefmt import CST, rfc3339

__all__ = [
    "CST",
    "build_report",
    "on_time_rates",
    "optional_rfc3339",
    "rates_of",
    "rates_of_counts",
    "rates_of_views",
]

DECIDED = (MET, LATE, MISSED)


def optional_rfc3339(epoch: int | None) -> str | None:
    return None if epoch is None else rfc3339(epoch)


def obligation_view(ob: Obligation) -> dict[str, Any]:
    return {
        "id": ob.id,
        "rule_id": ob.rule.id,
        "rule_version": ob.rule.key,
        "subject_id": ob.subject_id,
        "unit": ob.unit,
        "opened_at": optional_rfc3339(ob.opened_at),
        "due_at": optional_rfc3339(ob.due_at),
        "status": ob.status,
        "fulfilled_at": optional_rfc3339(ob.fulfilled_at),
        "fulfilled_by": ob.fulfilled_by,
        "fulfilled_date_only": ob.fulfilled_date_only,
        "calendar_assumed": ob.calendar_assumed,
        "timeline": [
            {"at": rfc3339(at), "kind": kind, "event_id": event_id, "detail": detail}
            for at, kind, event_id, detail in ob.full_timeline()
        ],
    }


def _rates(groups: dict[str, dict[str, int]]) -> dict[str, dict[str, Any]]:
    out: dict[str, dict[str, Any]] = {}
    for name in sorted(groups):
        counts = groups[name]
        decided = sum(counts[s] for s in DECIDED)
        out[name] = {
            **{s: counts[s] for s in STATUSES},
            "decided": decided,
            "on_time_rate": round(counts[MET] / decided, 4) if decided else None,
        }
    return out


def on_time_rates(obligations: Iterable[Obligation]) -> dict[str, Any]:
    return rates_of((ob.unit, ob.rule.id, ob.status) for ob in obligations)


def rates_of_views(views: Iterable[dict[str, Any]]) -> dict[str, Any]:
    """:func:`on_time_rates` of obligations as JSON (the API's and the archive's views)."""
    return rates_of((str(v["unit"]), str(v["rule_id"]), str(v["status"])) for v in views)


def rates_of(triples: Iterable[tuple[str, str, str]]) -> dict[str, Any]:
    """Counts and on-time rates overall, per unit and per rule, of ``(unit, rule, status)``."""
    return rates_of_counts((unit, rule, status, 1) for unit, rule, status in triples)


def rates_of_counts(rows: Iterable[tuple[str, str, str, int]]) -> dict[str, Any]:
    """:func:`rates_of` from counted rows ``(unit, rule, status, n)`` (a SQL GROUP BY's)."""
    by_unit: dict[str, dict[str, int]] = {}
    by_rule: dict[str, dict[str, int]] = {}
    total = dict.fromkeys(STATUSES, 0)
    for unit, rule, status, n in rows:
        for groups, key in ((by_unit, unit), (by_rule, rule)):
            counts = groups.get(key)
            if counts is None:
                counts = groups[key] = dict.fromkeys(STATUSES, 0)
            counts[status] += n
        total[status] += n
    return {
        "overall": _rates({"all": total})["all"],
        "by_unit": _rates(by_unit),
        "by_rule": _rates(by_rule),
    }


def sort_key(ob: Obligation) -> tuple[int, str]:
    return (ob.opened_at, ob.id)


def build_report(obligations: Iterable[Obligation], **meta: Any) -> dict[str, Any]:
    """The JSON report: ``meta`` first, then obligations (oldest first) and rates."""
    obs = sorted(obligations, key=sort_key)
    return {**meta, "obligations": [obligation_view(o) for o in obs], "on_time": on_time_rates(obs)}
