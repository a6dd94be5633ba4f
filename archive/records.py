"""What is archived of one closed obligation: :class:`ArchiveRecord`, built from its view.

The view is the obligation's JSON as the API and the reports show it
(``deadlines.report.obligation_view``: times as RFC 3339 strings); the record keeps it whole,
plus the columns reports filter and group by, with times as epoch seconds.
"""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass
from datetime import UTC, datetime
from typing import Any

from archive.tables import CLOSED_STATUSES

__all__ = ["ArchiveRecord", "epoch", "instant", "record_from_view"]


@dataclass(frozen=True, slots=True)
class ArchiveRecord:
    """One version of one closed obligation. ``(obligation_id, version)`` is written once."""

    obligation_id: str
    version: int
    rule_id: str
    rule_version: str
    unit: str
    subject_id: str
    status: str
    opened_at: int
    due_at: int
    fulfilled_at: int | None
    closed_at: int
    fulfilled_by: str | None
    fulfilled_date_only: bool
    calendar_assumed: bool
    timeline: list[dict[str, Any]]
    view: dict[str, Any]
    evidence_url: str | None = None

    def __post_init__(self) -> None:
        if isinstance(self.version, bool) or not isinstance(self.version, int):
            raise ValueError(f"{self.obligation_id}: version must be an integer")
        if self.version < 1:
            raise ValueError(f"{self.obligation_id}: version {self.version} (must be ≥ 1)")
        if self.status not in CLOSED_STATUSES:
            raise ValueError(
                f"{self.obligation_id}: status {self.status!r} is not closed "
                f"({', '.join(CLOSED_STATUSES)})"
            )
        if not self.obligation_id:
            raise ValueError("an archived obligation needs its id")
        # The view is what readers get, and pages are keyed by (due_at, id) from the columns:
        # the two must agree.
        if self.view.get("id") != self.obligation_id:
            raise ValueError(f"{self.obligation_id}: the view's id is {self.view.get('id')!r}")
        due = self.view.get("due_at")
        if not isinstance(due, str) or epoch(due, "due_at") != self.due_at:
            raise ValueError(f"{self.obligation_id}: the view's due_at {due!r} is not due_at")

    def row(self, archived_at: datetime) -> dict[str, Any]:
        """The table row (times as aware UTC datetimes)."""
        return {
            "obligation_id": self.obligation_id,
            "version": self.version,
            "rule_id": self.rule_id,
            "rule_version": self.rule_version,
            "unit": self.unit,
            "subject_id": self.subject_id,
            "status": self.status,
            "opened_at": instant(self.opened_at),
            "due_at": instant(self.due_at),
            "fulfilled_at": None if self.fulfilled_at is None else instant(self.fulfilled_at),
            "closed_at": instant(self.closed_at),
            "archived_at": archived_at,
            "evidence_url": self.evidence_url,
            "fulfilled_by": self.fulfilled_by,
            "fulfilled_date_only": self.fulfilled_date_only,
            "calendar_assumed": self.calendar_assumed,
            "timeline": self.timeline,
            "view": self.view,
        }


def instant(seconds: int) -> datetime:
    """Epoch seconds as an aware UTC datetime."""
    return datetime.fromtimestamp(seconds, UTC)


def epoch(text: str, field: str = "time") -> int:
    """Epoch seconds of an RFC 3339 string; an offset is required."""
    try:
        value = datetime.fromisoformat(text)
    except (TypeError, ValueError):
        raise ValueError(f"{field}: {text!r} is not an RFC 3339 time") from None
    if value.tzinfo is None:
        raise ValueError(f"{field}: {text!r} has no UTC offset")
    return int(value.timestamp())


def _text(view: Mapping[str, Any], key: str) -> str:
    value = view.get(key)
    if not isinstance(value, str) or not value:
        raise ValueError(f"obligation view: {key!r} must be a non-empty string, not {value!r}")
    return value


def _flag(view: Mapping[str, Any], key: str) -> bool:
    value = view.get(key, False)
    if not isinstance(value, bool):
        raise ValueError(f"obligation view: {key!r} must be true or false, not {value!r}")
    return value


def record_from_view(
    view: Mapping[str, Any], version: int, closed_at: int, evidence_url: str | None = None
) -> ArchiveRecord:
    """The record of ``view`` (``deadlines.report.obligation_view``'s shape) as closed at
    ``closed_at`` (epoch seconds); ``evidence_url`` is the URL of the ``fulfilled_by``
    event when it is known. Raises ValueError naming what is missing or wrong."""
    fulfilled = view.get("fulfilled_at")
    fulfilled_by = view.get("fulfilled_by")
    timeline = view.get("timeline", [])
    if not isinstance(timeline, list):
        raise ValueError("obligation view: 'timeline' must be a list")
    if fulfilled_by is not None and not isinstance(fulfilled_by, str):
        raise ValueError("obligation view: 'fulfilled_by' must be an event id or null")
    return ArchiveRecord(
        obligation_id=_text(view, "id"),
        version=version,
        rule_id=_text(view, "rule_id"),
        rule_version=_text(view, "rule_version"),
        unit=_text(view, "unit"),
        subject_id=_text(view, "subject_id"),
        status=_text(view, "status"),
        opened_at=epoch(_text(view, "opened_at"), "opened_at"),
        due_at=epoch(_text(view, "due_at"), "due_at"),
        fulfilled_at=None if fulfilled is None else epoch(fulfilled, "fulfilled_at"),
        closed_at=closed_at,
        fulfilled_by=fulfilled_by,
        fulfilled_date_only=_flag(view, "fulfilled_date_only"),
        calendar_assumed=_flag(view, "calendar_assumed"),
        timeline=list(timeline),
        view=dict(view),
        evidence_url=evidence_url,
    )
