"""The compliance archive (archive/) on both of its databases: embedded SQLite and a real
PostgreSQL (tests/pgserver.py, a private cluster started for the session).

The obligations archived are made by the real core: a small history (incidents with
releases on time, late, never, by date only, and incidents downgraded; disclosure
applications answered or not) is replayed through ``deadlines.replay`` in two halves, so some
obligations are archived missed first and late afterwards (a second version). What the
archive answers is compared with the core's own views and ``deadlines.report.on_time_rates``.
"""

from __future__ import annotations

import itertools
import os
import re
import subprocess
import sys
import threading
import time
from collections.abc import Callable, Iterator
from dataclasses import dataclass, replace
from datetime import datetime
from pathlib import Path
from typing import Any

import pytest
from alembic.autogenerate import compare_metadata
from alembic.runtime.migration import MigrationContext
from sqlalchemy import Column, Integer, MetaData, Table, func, inspect, select, text
from sqlalchemy.exc import DBAPIError

from archive.engine import make_engine, normalize_url
from archive.migrate import current_revision, head_revision
from archive.records import epoch
from archive.store import Archive, ArchiveError, ArchiveRecord, page_key, record_from_view, safe_url
from archive.tables import CLOSED_STATUSES, metadata, obligations
from config.packs import load_rulebook
from config.settings import SettingsError, load_settings
from deadlines.calendar import WorkCalendar
from deadlines.ledger import Ledger, instant
from deadlines.obligations import Obligation
from deadlines.replay import replay
from deadlines.report import obligation_view, on_time_rates
from deadlines.timefmt import CST
from schemas.events import DocumentPublished, Event, event_time, parse_event
from tests import pgserver
from tests.pgserver import PostgresServer

ROOT = Path(__file__).resolve().parent.parent
DOC = ROOT / "docs" / "archive.md"
HOUR = 3600
DAY = 86400
#: Monday 2 March 2026, 08:00 in Shanghai (March 2026 has no public holidays).
BASE = int(datetime.fromisoformat("2026-03-02T08:00:00+08:00").timestamp())
UNITS = ("市教育局", "市卫生健康委员会", "sh-yingji")
_DATABASES = itertools.count(1)

pytestmark = pytest.mark.timeout(120)


# --- the databases ---------------------------------------------------------------------------


@pytest.fixture(params=["sqlite", "postgresql"])
def archive_url(request: pytest.FixtureRequest, tmp_path: Path) -> str:
    """A URL of an empty archive database: a SQLite file, or a new PostgreSQL database."""
    if request.param == "sqlite":
        return f"sqlite:///{tmp_path / 'data' / 'archive.sqlite3'}"
    server: PostgresServer = request.getfixturevalue("postgres_server")
    return server.create_database(f"archive_{os.getpid()}_{next(_DATABASES)}")


@pytest.fixture
def archive(archive_url: str) -> Iterator[Archive]:
    with Archive.open(archive_url) as opened:
        yield opened


def row_count(archive: Archive) -> int:
    with archive.engine.connect() as conn:
        return int(conn.execute(select(func.count()).select_from(obligations)).scalar_one())


# --- obligations made by the real core -------------------------------------------------------


def _iso(epoch: int) -> str:
    return datetime.fromtimestamp(epoch, CST).isoformat()


def _event(etype: str, eid: str, unit: str, **fields: Any) -> Event:
    return parse_event({"type": etype, "event_id": eid, "unit": unit, **fields})


def _release(eid: str, unit: str, at: int | str, iid: str) -> Event:
    return _event(
        "document.published",
        eid,
        unit,
        publication_id=eid,
        published_at=at if isinstance(at, str) else _iso(at),
        kind="press_release",
        channel="portal",
        url=f"https://gov.example/{eid}",
        refs={"incident_id": iid},
        title=f"关于{iid}的情况通报",
    )


def _incidents(n: int) -> list[Event]:
    out = []
    for i in range(n):
        unit, at, iid = UNITS[i % 3], BASE + i * 5 * HOUR, f"I-{i:03d}"
        facts = {"incident_id": iid, "title": f"仓库火灾{i}", "severity": "II"}
        out.append(_event("incident.reported", f"inc-{i}", unit, occurred_at=_iso(at), **facts))
        shape = i % 6
        if shape in (0, 4):  # on time
            out.append(_release(f"rel-{i}", unit, at + 2 * HOUR, iid))
        elif shape == 1:  # late
            out.append(_release(f"rel-{i}", unit, at + 9 * HOUR, iid))
        elif shape == 3:  # a date without a time, against a 5-hour window
            day = datetime.fromtimestamp(at + HOUR, CST).date().isoformat()
            out.append(_release(f"rel-{i}", unit, day, iid))
        elif shape == 5:  # downgraded: the duty no longer holds
            again = {**facts, "severity": "III"}
            out.append(_event("incident.updated", f"upd-{i}", unit, occurred_at=_iso(at), **again))
        # shape 2: never released (missed)
    return out


def _applications(n: int) -> list[Event]:
    out = []
    for j in range(n):
        unit, at, app = UNITS[j % 3], BASE + j * DAY, f"依申请-{j:03d}"
        out.append(
            _event(
                "application.received", f"app-{j}", unit, application_id=app, received_at=_iso(at)
            )
        )
        if j % 3 != 2:
            reply_at = at + (5 if j % 3 == 0 else 40) * DAY
            out.append(
                _event(
                    "document.published",
                    f"reply-{j}",
                    unit,
                    publication_id=f"reply-{j}",
                    published_at=_iso(reply_at),
                    kind="reply",
                    channel="mail",
                    url=f"https://gov.example/reply/{j}",
                    refs={"application_id": app},
                )
            )
    return out


@dataclass
class History:
    """The closed obligations after each half (the first as views: the core's obligations
    change in place), and the URL of every publication."""

    first: dict[str, dict[str, Any]]
    final: list[Obligation]
    urls: dict[str, str]
    mid: int
    end: int


def _closed(ledger: Ledger) -> list[Obligation]:
    return sorted(
        (ob for ob in ledger.obligations() if ob.status in CLOSED_STATUSES), key=lambda o: o.id
    )


@pytest.fixture(scope="module")
def history() -> History:
    timed = sorted(
        ((instant(event_time(e))[0], e) for e in _incidents(48) + _applications(18)),
        key=lambda pair: pair[0],
    )
    urls = {e.event_id: e.url for _, e in timed if isinstance(e, DocumentPublished)}
    mid, end = BASE + 40 * DAY, BASE + 75 * DAY
    ledger = Ledger(load_rulebook(), WorkCalendar.official())
    replay(ledger, list(enumerate(e for t, e in timed if t <= mid)), mid)
    first = {ob.id: obligation_view(ob) for ob in _closed(ledger)}
    replay(ledger, list(enumerate(e for t, e in timed if t > mid)), end, start=mid)
    return History(first, _closed(ledger), urls, mid, end)


def closed_at(ob: Obligation) -> int:
    return ob.full_timeline()[-1][0]


def view_record(view: dict[str, Any], version: int, urls: dict[str, str]) -> ArchiveRecord:
    """The record of a view, closed at its last timeline entry."""
    closed = max(epoch(entry["at"]) for entry in view["timeline"])
    url = urls.get(view["fulfilled_by"]) if view["fulfilled_by"] else None
    return record_from_view(view, version, closed, url)


def record(ob: Obligation, version: int, urls: dict[str, str]) -> ArchiveRecord:
    return view_record(obligation_view(ob), version, urls)


def archive_history(archive: Archive, h: History) -> dict[str, int]:
    """Archive the first half's closed obligations as version 1, then every one that is new
    or changed after the second half as the next version; the newest version of each."""
    versions = dict.fromkeys(h.first, 1)
    assert archive.write([view_record(v, 1, h.urls) for v in h.first.values()]) == len(h.first)
    changed = []
    for ob in h.final:
        if ob.id not in versions:
            versions[ob.id] = 1
        elif obligation_view(ob) != h.first[ob.id]:
            versions[ob.id] += 1
        else:
            continue
        changed.append(record(ob, versions[ob.id], h.urls))
    assert archive.write(changed) == len(changed)
    return versions


def test_the_history_has_every_closed_status_and_second_versions(history: History) -> None:
    """The fixture exercises what it claims (else the comparisons below prove little)."""
    statuses = {ob.status for ob in history.final}
    assert statuses == set(CLOSED_STATUSES)
    assert {ob.unit for ob in history.final} >= set(UNITS)
    first = {ob_id: view["status"] for ob_id, view in history.first.items()}
    again = [ob.id for ob in history.final if first.get(ob.id) == "missed" and ob.status == "late"]
    assert len(again) >= 3
    assert len(history.final) > len(history.first) > 20


# --- schema and migrations -------------------------------------------------------------------


def test_the_migrations_create_the_schema_of_the_tables_module(archive: Archive) -> None:
    assert current_revision(archive.engine) == head_revision() == "0001"
    found = inspect(archive.engine)
    assert set(found.get_table_names()) == {"archived_obligations", "alembic_version"}
    assert {ix["name"] for ix in found.get_indexes("archived_obligations")} == {
        ix.name for ix in obligations.indexes
    }
    assert found.get_pk_constraint("archived_obligations")["constrained_columns"] == [
        "obligation_id",
        "version",
    ]
    with archive.engine.connect() as conn:
        assert compare_metadata(MigrationContext.configure(conn), metadata) == []
        # The same comparison does see a difference (so the empty list above means something).
        other = MetaData()
        for table in metadata.tables.values():
            table.to_metadata(other)
        Table("archived_obligations", other, Column("extra", Integer), extend_existing=True)
        diffs = compare_metadata(MigrationContext.configure(conn), other)
        assert [d[0] for d in diffs] == ["add_column"]


def test_timestamps_are_timezone_aware_on_postgresql(archive: Archive) -> None:
    columns = {c["name"]: c for c in inspect(archive.engine).get_columns("archived_obligations")}
    if archive.dialect == "postgresql":
        assert str(columns["due_at"]["type"]) == "TIMESTAMP"
        assert getattr(columns["due_at"]["type"], "timezone", None) is True
        assert str(columns["view"]["type"]) == "JSONB"
    else:
        assert str(columns["due_at"]["type"]) == "DATETIME"
    assert columns["fulfilled_at"]["nullable"] and not columns["closed_at"]["nullable"]


OPEN_AT = """
import sys, time
from archive.store import Archive
time.sleep(max(0.0, float(sys.argv[2]) - time.time()))  # all start at the same instant
Archive.open(sys.argv[1]).close()
"""


def test_opening_again_and_at_once_migrates_once(archive_url: str) -> None:
    """Four processes open a new archive at the same instant; then this one opens it."""
    start_at = str(time.time() + 2.0)
    procs = [
        subprocess.Popen(
            [sys.executable, "-c", OPEN_AT, archive_url, start_at],
            cwd=ROOT,
            stderr=subprocess.PIPE,
            text=True,
        )
        for _ in range(4)
    ]
    errors = [p.communicate(timeout=60)[1] for p in procs]
    assert [p.returncode for p in procs] == [0, 0, 0, 0], errors
    with Archive.open(archive_url) as archive, archive.engine.connect() as conn:
        assert conn.execute(text("SELECT version_num FROM alembic_version")).all() == [("0001",)]


def test_alembic_can_be_run_by_hand_with_the_bundled_ini(tmp_path: Path) -> None:
    url = f"sqlite:///{tmp_path / 'by-hand.sqlite3'}"
    ini = ROOT / "archive" / "alembic.ini"
    alembic = Path(sys.executable).with_name("alembic")
    run = subprocess.run(
        [str(alembic), "-c", str(ini), "-x", f"url={url}", "upgrade", "head"],
        cwd=ROOT,
        capture_output=True,
        text=True,
        timeout=60,
    )
    assert run.returncode == 0, run.stderr
    assert current_revision(Archive.open(url).engine) == "0001"
    again = subprocess.run(
        [sys.executable, "-m", "archive.migrate", url],
        cwd=ROOT,
        capture_output=True,
        text=True,
        timeout=60,
    )
    assert again.returncode == 0 and again.stdout.strip().endswith("0001 -> 0001"), again


# --- writing ---------------------------------------------------------------------------------


def test_a_record_is_written_once_and_a_new_version_is_kept_beside_it(
    archive: Archive, history: History
) -> None:
    ob = next(o for o in history.final if o.status == "late")
    first = record(ob, 1, history.urls)
    assert archive.write([first]) == 1
    assert archive.write([first]) == 0
    assert archive.write([first, first]) == 0
    assert row_count(archive) == 1
    second = replace(first, version=2, status="met", view={**first.view, "status": "met"})
    assert archive.write([first, second]) == 1
    assert row_count(archive) == 2 and archive.versions(ob.id) == [1, 2]
    assert archive.get(ob.id) == {**second.view, "archived": True}
    # what is stored, column by column
    with archive.engine.connect() as conn:
        row = conn.execute(select(obligations).where(obligations.c.version == 1)).one()._asdict()
    assert row["evidence_url"] == history.urls[ob.fulfilled_by or ""]
    assert row["fulfilled_by"] == ob.fulfilled_by
    assert int(row["due_at"].timestamp()) == ob.due_at
    assert row["due_at"].utcoffset().total_seconds() == 0
    assert int(row["closed_at"].timestamp()) == closed_at(ob)
    assert row["timeline"] == obligation_view(ob)["timeline"]
    assert row["rule_version"] == ob.rule.key and row["status"] == "late"


def test_many_records_in_one_call(archive: Archive, history: History) -> None:
    """More than one statement's worth (BATCH = 500); a rewrite counts only the new ones."""
    base = record(history.final[0], 1, history.urls)
    many = [
        replace(
            base,
            obligation_id=f"{base.obligation_id}#{i}",
            view={**base.view, "id": f"{base.obligation_id}#{i}"},
        )
        for i in range(1300)
    ]
    assert archive.write(many) == 1300
    more = [*many[1000:], *(replace(r, version=2) for r in many[:10])]
    assert archive.write(more) == 10
    assert row_count(archive) == 1310
    assert archive.write([]) == 0


def test_two_writers_at_once_write_each_record_once(archive_url: str, history: History) -> None:
    records = [record(ob, 1, history.urls) for ob in history.final]
    archives = [Archive.open(archive_url), Archive.open(archive_url)]
    barrier = threading.Barrier(len(archives))
    counts: list[int] = []

    def writer(a: Archive) -> None:
        barrier.wait()
        for start in range(0, len(records), 7):
            counts.append(a.write(records[start : start + 7]))

    threads = [threading.Thread(target=writer, args=(a,)) for a in archives]
    for t in threads:
        t.start()
    for t in threads:
        t.join(timeout=60)
    try:
        assert sum(counts) == len(records) and len(counts) == 2 * len(range(0, len(records), 7))
        assert row_count(archives[0]) == len(records)
    finally:
        for a in archives:
            a.close()


# --- reading ---------------------------------------------------------------------------------


def test_get_returns_the_view_marked_archived(archive: Archive, history: History) -> None:
    versions = archive_history(archive, history)
    for ob in history.final:
        assert archive.get(ob.id) == {**obligation_view(ob), "archived": True}
        assert archive.versions(ob.id) == list(range(1, versions[ob.id] + 1))
    assert archive.get("first_release_5h:no-such-incident") is None


def _expected(h: History, keep: Callable[[Obligation], bool]) -> list[dict[str, Any]]:
    obs = sorted((ob for ob in h.final if keep(ob)), key=lambda o: (o.due_at, o.id))
    return [{**obligation_view(ob), "archived": True} for ob in obs]


def test_query_filters_by_unit_rule_status_and_period(archive: Archive, history: History) -> None:
    archive_history(archive, history)
    big = 100_000
    assert archive.query(limit=big) == _expected(history, lambda o: True)
    assert archive.query(unit="市教育局", limit=big) == _expected(
        history, lambda o: o.unit == "市教育局"
    )
    assert archive.query(rule_id="application_reply_20wd", limit=big) == _expected(
        history, lambda o: o.rule.id == "application_reply_20wd"
    )
    assert archive.query(statuses={"late", "missed"}, limit=big) == _expected(
        history, lambda o: o.status in ("late", "missed")
    )
    assert archive.query(statuses=(), limit=big) == []
    lo, hi = BASE + 2 * DAY, BASE + 9 * DAY
    assert archive.query(due_from=lo, due_to=hi, limit=big) == _expected(
        history, lambda o: lo <= o.due_at < hi
    )
    assert archive.query(closed_from=history.mid, limit=big) == _expected(
        history, lambda o: closed_at(o) >= history.mid
    )
    both = archive.query(unit="市教育局", statuses=["met"], due_to=hi, limit=big)
    assert both == _expected(
        history, lambda o: o.unit == "市教育局" and o.status == "met" and o.due_at < hi
    )
    assert both and len({row["id"] for row in both}) == len(both)


def test_keyset_pages_give_the_rows_of_one_big_page(archive: Archive, history: History) -> None:
    archive_history(archive, history)
    whole = archive.query(limit=100_000)
    for kwargs in ({}, {"unit": "市卫生健康委员会"}, {"statuses": ["met", "unverifiable"]}):
        one = archive.query(limit=100_000, **kwargs)
        pages: list[dict[str, Any]] = []
        after = None
        while page := archive.query(limit=7, after=after, **kwargs):
            assert len(page) <= 7
            pages += page
            after = page_key(page[-1])
        assert pages == one and len(one) > 7
    assert len(whole) == len(history.final)
    keys = [page_key(row) for row in whole]
    assert keys == sorted(keys) and len(set(keys)) == len(keys)


def test_rates_equal_the_cores_on_time_rates(archive: Archive, history: History) -> None:
    """Computed by SQL over the newest versions; the same numbers as the report's Python."""
    archive_history(archive, history)
    assert archive.rates() == on_time_rates(history.final)
    assert archive.rates(unit="市教育局") == on_time_rates(
        [o for o in history.final if o.unit == "市教育局"]
    )
    lo, hi = BASE + 3 * DAY, BASE + 30 * DAY
    assert archive.rates(due_from=lo, due_to=hi) == on_time_rates(
        [o for o in history.final if lo <= o.due_at < hi]
    )
    assert archive.rates(closed_to=history.mid) == on_time_rates(
        [o for o in history.final if closed_at(o) < history.mid]
    )
    overall = archive.rates()["overall"]
    assert overall["decided"] == overall["met"] + overall["late"] + overall["missed"] > 0
    assert 0 < overall["on_time_rate"] < 1


def test_the_documented_monthly_query_runs_and_agrees(archive: Archive, history: History) -> None:
    """The example SQL of docs/archive.md for this dialect: on-time rate per unit and month
    in Asia/Shanghai, against the same figures from the core."""
    archive_history(archive, history)
    blocks = re.findall(
        r"```sql\n-- (\w+): on-time rate per unit per month\n(.*?)```",
        DOC.read_text(encoding="utf-8"),
        re.S,
    )
    sql = dict(blocks)[archive.dialect]
    with archive.engine.connect() as conn:
        got = {(r.unit, r.month): (r.decided, r.on_time_rate) for r in conn.execute(text(sql))}
    want: dict[tuple[str, str], list[int]] = {}
    for ob in history.final:
        month = datetime.fromtimestamp(ob.due_at, CST).strftime("%Y-%m")
        counts = want.setdefault((ob.unit, month), [0, 0])
        counts[0] += ob.status in ("met", "late", "missed")
        counts[1] += ob.status == "met"
    assert set(got) == set(want)
    for key, (decided, met) in want.items():
        rate = None if not decided else round(met / decided, 4)
        got_rate = None if got[key][1] is None else round(float(got[key][1]), 4)
        assert (got[key][0], got_rate) == (decided, rate), key


def test_chinese_text_round_trips(archive: Archive, history: History) -> None:
    archive_history(archive, history)
    rows = archive.query(unit="市教育局", limit=1000)
    assert rows and {row["unit"] for row in rows} == {"市教育局"}
    app = next(r for r in archive.query(rule_id="application_reply_20wd") if "依申请" in r["id"])
    assert app["subject_id"].startswith("依申请-")
    assert set(archive.rates(unit="市教育局")["by_unit"]) == {"市教育局"}
    with archive.engine.connect() as conn:
        units = set(conn.execute(select(obligations.c.unit).distinct()).scalars())
    assert units >= {"市教育局", "市卫生健康委员会"}


# --- records, URLs and settings --------------------------------------------------------------


def test_record_from_view_refuses_what_is_not_closed_or_not_a_view(history: History) -> None:
    view = obligation_view(history.final[0])
    for bad in ({**view, "status": "pending"}, {**view, "status": "paused"}):
        with pytest.raises(ValueError, match="not closed"):
            record_from_view(bad, 1, BASE)
    with pytest.raises(ValueError, match="'id'"):
        record_from_view({k: v for k, v in view.items() if k != "id"}, 1, BASE)
    with pytest.raises(ValueError, match="no UTC offset"):
        record_from_view({**view, "due_at": "2026-03-02T08:00:00"}, 1, BASE)
    with pytest.raises(ValueError, match="version"):
        record_from_view(view, 0, BASE)
    with pytest.raises(ValueError, match="the view's id"):
        replace(record_from_view(view, 1, BASE), obligation_id="other:id")
    with pytest.raises(ValueError, match="the view's due_at"):
        replace(record_from_view(view, 1, BASE), due_at=BASE)
    good = record_from_view(view, 3, BASE, "https://gov.example/x")
    assert (good.version, good.closed_at, good.evidence_url) == (3, BASE, "https://gov.example/x")
    assert good.view == view and good.view is not view


SECRET = "s3cr3t-Pa55"


@pytest.mark.parametrize(
    "url",
    [
        f"postgresql+psycopg://govclock:{SECRET}@db.example.gov.cn:5432/archive",
        f"postgresql://reporter:{SECRET}@10.0.0.5/archive?sslmode=require",
        "sqlite:////var/lib/govclock/archive.sqlite3",
    ],
)
def test_safe_url_never_shows_the_password(url: str) -> None:
    shown = safe_url(url)
    assert SECRET not in shown
    assert shown.split("@")[-1] == url.split("@")[-1]  # the host and database stay visible
    if "@" in url:
        assert "***" in shown


def test_a_failed_open_names_no_password() -> None:
    with pytest.raises(ArchiveError) as caught:
        Archive.open(f"postgresql+psycopg://govclock:{SECRET}@127.0.0.1:1/archive")
    assert SECRET not in str(caught.value) and "127.0.0.1:1" in str(caught.value)
    with pytest.raises(ArchiveError, match="SQLite or PostgreSQL"):
        Archive.open(f"mysql://u:{SECRET}@h/db")


def test_postgres_urls_are_taken_to_mean_psycopg() -> None:
    assert normalize_url("postgres://u@h/db").drivername == "postgresql+psycopg"
    assert normalize_url("postgresql://u@h/db").drivername == "postgresql+psycopg"
    with pytest.raises(ValueError, match="psycopg"):
        normalize_url("postgresql+psycopg2://u@h/db")


def test_the_archive_setting(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.delenv("GOVCLOCK_ARCHIVE_URL", raising=False)
    default = load_settings(env_file=None, data_dir=tmp_path / "var")
    assert default.archive_url is None
    assert default.archive_database_url == f"sqlite:///{tmp_path / 'var' / 'archive.sqlite3'}"
    url = f"postgresql+psycopg://govclock:{SECRET}@db.example.gov.cn/archive"
    monkeypatch.setenv("GOVCLOCK_ARCHIVE_URL", url)
    configured = load_settings(env_file=None)
    assert configured.archive_database_url == url
    shown = dict(configured.describe())["GOVCLOCK_ARCHIVE_URL"]
    assert SECRET not in shown and "db.example.gov.cn/archive" in shown
    monkeypatch.setenv("GOVCLOCK_ARCHIVE_URL", f"mysql://govclock:{SECRET}@db/archive")
    with pytest.raises(SettingsError) as caught:
        load_settings(env_file=None)
    assert "GOVCLOCK_ARCHIVE_URL" in str(caught.value) and SECRET not in str(caught.value)


def test_the_default_archive_is_created_in_the_data_dir(tmp_path: Path) -> None:
    settings = load_settings(env_file=None, data_dir=tmp_path / "fresh" / "var")
    with Archive.open(settings.archive_database_url) as archive:
        assert archive.dialect == "sqlite"
        with archive.engine.connect() as conn:
            assert conn.exec_driver_sql("PRAGMA journal_mode").scalar() == "wal"
    assert (tmp_path / "fresh" / "var" / "archive.sqlite3").is_file()


# --- what docs/archive.md promises -----------------------------------------------------------


def _sql_blocks() -> list[str]:
    return re.findall(r"```sql\n(.*?)```", DOC.read_text(encoding="utf-8"), re.S)


def test_every_example_query_of_the_docs_runs(archive: Archive, history: History) -> None:
    """Each example runs on the dialect it is written for (PostgreSQL unless labelled
    ``-- sqlite:``); Grafana's ``$__timeFilter`` is replaced by what Grafana expands it to."""
    archive_history(archive, history)
    blocks = [b for b in _sql_blocks() if "CREATE ROLE" not in b]
    mine = [b for b in blocks if b.startswith("-- sqlite:") == (archive.dialect == "sqlite")]
    assert len(blocks) >= 6 and mine
    grafana = "due_at BETWEEN '2026-01-01T00:00:00Z' AND '2026-12-31T23:59:59Z'"
    with archive.engine.connect() as conn:
        for sql in mine:
            rows = conn.execute(text(sql.replace("$__timeFilter(due_at)", grafana))).all()
            if "市教育局" not in sql and "I-2026-031" not in sql:
                assert rows, sql


def test_the_documented_read_only_role_reads_and_cannot_write(
    postgres_server: PostgresServer, history: History
) -> None:
    name = f"archive_{os.getpid()}_{next(_DATABASES)}"
    url = postgres_server.create_database(name)
    (block,) = [b for b in _sql_blocks() if "CREATE ROLE" in b]
    with Archive.open(url) as archive:
        archive.write([record(ob, 1, history.urls) for ob in history.final[:5]])
        with archive.engine.begin() as conn:
            conn.exec_driver_sql("DROP ROLE IF EXISTS govclock_reports")  # roles are cluster-wide
            for statement in block.replace("DATABASE govclock ", f"DATABASE {name} ").split(";"):
                if statement.strip():
                    conn.exec_driver_sql(statement)
    reader = url.replace("//govclock@", "//govclock_reports@")
    with Archive(make_engine(reader)) as ro:
        assert len(ro.query()) == 5 and ro.rates() == on_time_rates(history.final[:5])
        with pytest.raises(DBAPIError, match=r"read-only|permission denied"):
            ro.write([record(history.final[6], 1, history.urls)])


def test_an_archive_newer_than_the_code_is_refused_not_touched(archive_url: str) -> None:
    with Archive.open(archive_url) as archive, archive.engine.begin() as conn:
        conn.execute(text("UPDATE alembic_version SET version_num = '9999'"))
    with pytest.raises(ArchiveError, match=r"cannot migrate.*9999"):
        Archive.open(archive_url)
    with Archive(make_engine(archive_url)) as archive:
        assert current_revision(archive.engine) == "9999"
        assert inspect(archive.engine).has_table("archived_obligations")


def test_the_server_fixture_fails_without_the_binaries_and_picks_the_highest(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    for version in ("13", "15", "9.6"):
        bindir = tmp_path / version / "bin"
        bindir.mkdir(parents=True)
        for name in pgserver.BINARIES:
            (bindir / name).write_text("#!/bin/sh\n")
            (bindir / name).chmod(0o755)
    (tmp_path / "16" / "bin").mkdir(parents=True)  # a client-only install: no server
    assert pgserver.find_bindir(tmp_path) == tmp_path / "15" / "bin"
    assert pgserver.find_bindir(tmp_path / "16") is None
    monkeypatch.setattr(pgserver, "find_bindir", lambda: None)
    with pytest.raises(pytest.fail.Exception, match="make tools"):
        pgserver.PostgresServer()
