"""Reading event histories (JSON Lines) with line numbers, keeping bad lines as rejections."""

from __future__ import annotations

from pathlib import Path

from deadlines.replay import Rejected
from schemas.events import Event, EventError, parse_event_json


class HistoryError(ValueError):
    """A bad line in ``--strict`` mode."""


def read_history(
    path: Path, strict: bool = False
) -> tuple[list[tuple[int, Event]], list[Rejected]]:
    """Parse every non-blank line; a bad line is reported by number and reason."""
    events: list[tuple[int, Event]] = []
    rejected: list[Rejected] = []
    with path.open("rb") as fh:
        for number, raw in enumerate(fh, start=1):
            if not raw.strip():
                continue
            try:
                events.append((number, parse_event_json(raw)))
            except EventError as exc:
                if strict:
                    raise HistoryError(f"{path}:{number}: {exc}") from None
                rejected.append(Rejected(line=number, reason=str(exc)))
    return events, rejected
