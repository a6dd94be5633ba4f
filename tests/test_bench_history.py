"""The history benchmark's pieces: the history it generates and its archive phase."""

from __future__ import annotations

from datetime import UTC, datetime
from pathlib import Path

from govclock.bench_history import archive_rate, archived_rows, history

NOW = datetime(2026, 12, 1, tzinfo=UTC)


def test_the_history_is_mostly_settled_with_a_fixed_open_set() -> None:
    events = list(history(1000, 100, NOW))
    assert len(events) == 1000
    published = {e["refs"]["document_id"] for e in events if e["type"] == "document.published"}
    issued = {e["document_id"] for e in events if e["type"] == "document.issued"}
    assert issued - published == {f"O{i}" for i in range(100)}
    assert len(published) == 450


def test_the_archive_phase_writes_every_row(tmp_path: Path) -> None:
    path = tmp_path / "archive.sqlite3"
    assert archive_rate(f"sqlite:///{path}", rows=1000, batch=250) > 0
    assert archived_rows(path) == 1000
