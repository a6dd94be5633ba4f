"""``govclock report``: the archive plus what is open gives the same rates as a replay of the
whole history, on SQLite and PostgreSQL; CSV opens in Excel/WPS (govclock/compliance.py)."""

from __future__ import annotations

import csv
import io
import itertools
import os
from datetime import timedelta
from pathlib import Path
from typing import Any

import pytest

from archive.store import Archive
from deadlines.calendar import WorkCalendar
from deadlines.ledger import Ledger
from deadlines.replay import replay
from deadlines.report import obligation_view, rates_of_views
from deadlines.retention import Retention, Retirer
from govclock import compliance
from govclock.bench import T0, Mix, _book
from schemas.events import parse_event
from tests.pgserver import PostgresServer
from worker.archiving import records_of

BOOK = _book(200)
CAL = WorkCalendar.official()
AS_OF = int((T0 + timedelta(days=200)).timestamp())
PERIOD = compliance.Period.of_dates("2026-02-01", "2026-04-01", None, None)
_DATABASES = itertools.count()


@pytest.fixture(params=["sqlite", "postgresql"])
def archive(request: pytest.FixtureRequest, tmp_path: Path) -> Any:
    if request.param == "sqlite":
        url = f"sqlite:///{tmp_path / 'archive.sqlite3'}"
    else:
        server: PostgresServer = request.getfixturevalue("postgres_server")
        url = server.create_database(f"report_{os.getpid()}_{next(_DATABASES)}")
    with Archive.open(url) as opened:
        yield opened


def events() -> list[tuple[int, Any]]:
    history = Mix(seed=11).history(4000, span_days=120)
    return [(i, parse_event(e)) for i, e in enumerate(history, start=1)]


def test_archive_plus_open_equals_a_replay_of_everything(archive: Archive) -> None:
    history = events()
    whole = replay(Ledger(BOOK, CAL), history, AS_OF).ledger
    expected = [obligation_view(ob) for ob in whole.obligations()]

    hot = Ledger(BOOK, CAL)
    hot.retirer = Retirer(Retention())
    replay(hot, history, AS_OF)
    settled, _ = hot.retirer.take()
    assert len(settled) > len(list(hot.obligations()))  # most of the history settled
    assert archive.write(records_of(settled)) == len(settled)
    opened = [obligation_view(ob) for ob in hot.obligations() if PERIOD.keeps(obligation_view(ob))]
    report = compliance.build([*opened, *compliance.archived_views(archive, PERIOD)], PERIOD)

    in_period = [v for v in expected if PERIOD.keeps(v)]
    assert report["obligations"] == len(in_period) > 100
    assert report["on_time"] == rates_of_views(in_period)
    assert report["archived"] > len(in_period) // 2  # most of the period came from the archive
    late_or_missed = {v["id"] for v in in_period if v["status"] in ("late", "missed")}
    assert {e["id"] for e in report["exceptions"]} == late_or_missed != set()
    # the archive's own SQL rates agree with the same period's archived rows
    sql = archive.rates(due_from=PERIOD.start, due_to=PERIOD.end)
    archived = list(compliance.archived_views(archive, PERIOD))
    assert sql == rates_of_views(archived)


def test_csv_has_a_bom_chinese_headers_and_the_exceptions() -> None:
    views = [
        {
            "id": "doc_online_10wd:D1",
            "unit": "市教育局",
            "rule_id": "doc_online_10wd",
            "due_at": "2026-03-13T23:59:59+08:00",
            "status": "missed",
            "fulfilled_at": None,
            "fulfilled_by": None,
            "timeline": [{"at": "2026-03-13T23:59:59+08:00", "kind": "breached"}],
            "archived": True,
        },
        {
            "id": "doc_online_10wd:D2",
            "unit": "市教育局",
            "rule_id": "doc_online_10wd",
            "due_at": "2026-03-14T23:59:59+08:00",
            "status": "met",
            "fulfilled_at": "2026-03-10T10:00:00+08:00",
            "fulfilled_by": "pub-2",
        },
    ]
    report = compliance.build(views, PERIOD)
    text = compliance.render(report, "csv")
    assert text.startswith("\ufeff")
    rows = list(csv.reader(io.StringIO(text.removeprefix("\ufeff"))))
    assert rows[0][:3] == ["范围", "名称", "应判定"]
    assert ["unit", "市教育局", "2", "1", "0", "1", "0", "0.5000"] in rows
    (missed,) = [r for r in rows if r and r[0] == "doc_online_10wd:D1"]
    assert missed[4] == "超时未办" and missed[-1] == "archive" and "no evidence" in missed[7]
    english = compliance.render(report, "csv", "en")
    assert "on_time_rate" in english.splitlines()[0]


def test_a_period_keeps_due_times_from_inclusive_to_exclusive() -> None:
    period = compliance.Period.of_dates("2026-03-01", "2026-03-02", "u", None)
    view = {"unit": "u", "rule_id": "r"}
    assert period.keeps({**view, "due_at": "2026-03-01T00:00:00+08:00"})
    assert not period.keeps({**view, "due_at": "2026-03-02T00:00:00+08:00"})
    assert not period.keeps({**view, "unit": "v", "due_at": "2026-03-01T12:00:00+08:00"})
    with pytest.raises(ValueError, match="must be after"):
        compliance.Period.of_dates("2026-03-02", "2026-03-01", None, None)


def test_open_views_follow_the_cursor_and_refuse_a_partial_answer() -> None:
    pages = {
        None: {
            "obligations": [
                {"id": "a", "unit": "u", "rule_id": "r", "due_at": "2026-03-01T00:00:00+08:00"}
            ],
            "next": "c1",
        },
        "c1": {
            "obligations": [
                {"id": "b", "unit": "u", "rule_id": "r", "due_at": "2026-01-01T00:00:00+08:00"}
            ],
            "next": None,
        },
    }
    asked: list[str] = []

    def fetch(url: str) -> Any:
        asked.append(url)
        return pages["c1" if "cursor=c1" in url else None]

    got = list(compliance.open_views("http://127.0.0.1:1/", PERIOD, fetch))
    assert [v["id"] for v in got] == ["a"]  # b is due before the period
    assert len(asked) == 2 and all("due_before=" in u for u in asked)
    with pytest.raises(RuntimeError, match="partitions"):
        list(
            compliance.open_views(
                "http://x", PERIOD, lambda _: {"partial": True, "missing_partitions": [1]}
            )
        )
