"""Journal compaction: what is dropped is only what settled into the archive, and the kept
lines rebuild the same open state as the whole journal (worker/compaction.py)."""

from __future__ import annotations

import json
from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import Any

from archive.store import Archive
from config.settings import Settings
from deadlines.ledger import Ledger
from deadlines.report import obligation_view
from deadlines.retention import Retirer
from govclock.bench_history import issued_event, published_event
from schemas.events import parse_event
from streams.journal import Journal
from worker.compaction import compact_journal
from worker.context import load_worker

NOW = datetime(2026, 9, 1, 12, tzinfo=UTC)
UNIT = "市教育局"


def history(old: int, fresh: int) -> list[dict[str, Any]]:
    """``old`` documents issued and published in March (long settled by NOW), ``fresh``
    issued a day before NOW and not yet published, and one publication whose trigger never
    came, from March (expired) and one from last week (kept)."""
    events: list[dict[str, Any]] = []

    def issued(doc: str, at: datetime) -> dict[str, Any]:
        return issued_event(doc, UNIT, at)

    def published(doc: str, at: datetime) -> dict[str, Any]:
        return published_event(doc, UNIT, at)

    march = datetime(2026, 3, 2, 1, tzinfo=UTC)
    for i in range(old):
        events += [issued(f"OLD{i}", march), published(f"OLD{i}", march + timedelta(days=2))]
    for i in range(fresh):
        events.append(issued(f"NEW{i}", NOW - timedelta(days=1)))
    events.append(published("ORPHAN-OLD", march))
    events.append(published("ORPHAN-NEW", NOW - timedelta(days=7)))
    return events


def open_views(lines: list[bytes], settings: Settings) -> list[dict[str, Any]]:
    core = load_worker(settings, 1)
    led = Ledger(core.book, core.calendar)
    led.retirer = Retirer(settings.retention)
    for line in lines:
        led.apply(parse_event(json.loads(line)))
    led.tick(int(NOW.timestamp()))
    return sorted((obligation_view(ob) for ob in led.obligations()), key=lambda v: v["id"])


def test_compaction_drops_only_settled_history_and_rebuilds_the_same_state(
    tmp_path: Path,
) -> None:
    settings = Settings(data_dir=tmp_path)
    journal = Journal(tmp_path / "journal")
    events = history(old=200, fresh=5)
    journal.append(events)
    before = list(journal.read())
    (tmp_path / "journal" / "events.jsonl").open("ab").write(b'{"torn": ')  # a torn tail
    archive = Archive.open(f"sqlite:///{tmp_path / 'archive.sqlite3'}")
    done = compact_journal(journal, settings, archive, int(NOW.timestamp()))
    after = list(journal.read())
    assert (done.kept, done.dropped) == (len(after), len(before) - len(after))
    # every obligation of the dropped lines is in the archive (one per old document)
    assert done.archived == 200
    for i in (0, 199):
        found = archive.get(f"online_posting_10wd:OLD{i}")
        assert found is not None and found["status"] == "met" and found["archived"] is True
    kept_ids = {json.loads(line)["event_id"] for line in after}
    assert kept_ids == {f"iss-NEW{i}" for i in range(5)} | {"pub-ORPHAN-NEW"}
    assert open_views(after, settings) == open_views(before, settings)
    assert [v["status"] for v in open_views(after, settings)] == ["pending"] * 5
    # compacting again changes nothing
    again = compact_journal(journal, settings, archive, int(NOW.timestamp()))
    assert (again.kept, again.dropped) == (len(after), 0)


def test_lines_that_are_not_events_are_kept(tmp_path: Path) -> None:
    journal = Journal(tmp_path / "journal")
    journal.append([{"type": "not.a.type", "event_id": "x"}])
    archive = Archive.open(f"sqlite:///{tmp_path / 'archive.sqlite3'}")
    done = compact_journal(journal, Settings(data_dir=tmp_path), archive, int(NOW.timestamp()))
    assert (done.kept, done.dropped) == (1, 0)


def test_lines_appended_while_compacting_are_kept(tmp_path: Path) -> None:
    """The child filters the journal as it was; what came meanwhile is copied over as is."""
    from worker.compaction import _filter_only

    settings = Settings(data_dir=tmp_path)
    journal = Journal(tmp_path / "journal")
    journal.append(history(old=50, fresh=2))
    done = _filter_only(journal.directory, settings, int(NOW.timestamp()))
    late = history(old=0, fresh=0)[:1]  # an orphan publication from March, appended now
    late[0]["event_id"] = "pub-late"
    journal.append(late)
    journal.install(journal.compacting, done.upto)
    ids = [json.loads(line)["event_id"] for line in journal.read()]
    assert ids[-1] == "pub-late"  # kept although it names only an expired subject
    assert set(ids[:-1]) == {"iss-NEW0", "iss-NEW1", "pub-ORPHAN-NEW"}


def test_a_running_worker_compacts_in_a_child_process(tmp_path: Path) -> None:
    from worker.compaction import compact_in_child

    settings = Settings(data_dir=tmp_path)
    journal = Journal(tmp_path / "journal")
    journal.append(history(old=50, fresh=2))
    done = compact_in_child(journal, settings, int(NOW.timestamp()))
    assert (done.kept, done.dropped, done.archived) == (3, 101, 50)
    assert len(list(journal.read())) == 3
    with Archive.open(settings.archive_database_url) as archive:
        assert archive.get("online_posting_10wd:OLD7") is not None


def test_a_first_start_has_no_journal_to_compact(tmp_path: Path) -> None:
    journal = Journal(tmp_path / "journal")
    archive = Archive.open(f"sqlite:///{tmp_path / 'archive.sqlite3'}")
    done = compact_journal(journal, Settings(data_dir=tmp_path), archive, int(NOW.timestamp()))
    assert (done.kept, done.dropped) == (0, 0) and not journal.path.exists()
