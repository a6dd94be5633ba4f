"""The compliance-archive board (dashboards/archive_board.py) on a real PostgreSQL.

The archive is filled the way the workers fill it: a generated history replayed through the
pure core with retention, and what settles written with ``worker.archiving.records_of``. On
top, scripted re-closings give some obligations a second version (an older ``missed`` under
a ``late``; a newer ``cancelled`` or ``unverifiable`` over a ``met`` or ``missed``), so a
query that forgot the newest-version rule would count wrong.

Then every SQL target of every panel and every variable of the freshly built dashboard runs
as the read-only reporting role of docs/archive.md, with Grafana's macros expanded the way
Grafana does (:class:`Grafana`): ``$__timeFilter(col)`` → ``col BETWEEN '<from>' AND
'<to>'`` (RFC 3339 UTC, as the PostgreSQL data source writes them) and a multi-value
variable → its values as quoted literals joined by commas (All: every option the variable's
own query returned). Each must return rows, and the figures must equal what the archive's
Python side says (``Archive.query`` / ``Archive.rates``, ``deadlines.report.rates_of_views``).
"""

from __future__ import annotations

import json
import os
import re
import sys
from collections.abc import Callable, Iterator, Mapping, Sequence
from dataclasses import dataclass
from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import Any
from zoneinfo import ZoneInfo

import pytest
from sqlalchemy import Engine

ROOT = Path(__file__).resolve().parents[1]
if str(ROOT) not in sys.path:  # dashboards/ is not an installed package
    sys.path.insert(0, str(ROOT))

from archive.engine import make_engine  # noqa: E402
from archive.records import ArchiveRecord, record_from_view  # noqa: E402
from archive.store import Archive  # noqa: E402
from archive.tables import CLOSED_STATUSES, TABLE  # noqa: E402
from dashboards import archive_board, build  # noqa: E402
from deadlines.calendar import WorkCalendar  # noqa: E402
from deadlines.ledger import Ledger  # noqa: E402
from deadlines.replay import replay  # noqa: E402
from deadlines.report import rates_of_views  # noqa: E402
from deadlines.retention import Retention, Retirer  # noqa: E402
from deadlines.timefmt import rfc3339  # noqa: E402
from govclock.bench import T0, Mix, _book  # noqa: E402
from schemas.events import parse_event  # noqa: E402
from tests.pgserver import PostgresServer  # noqa: E402
from worker.archiving import records_of  # noqa: E402

BEIJING = ZoneInfo("Asia/Shanghai")
UNITS = 6
#: Seed 4 has obligations due in the first hours of a Beijing month (still the previous
#: month in UTC), which tells Beijing months from UTC ones (see the guard below).
SEED = 4
AS_OF = int((T0 + timedelta(days=330)).timestamp())
DOC = ROOT / "docs" / "archive.md"
READER = "govclock_board_reader"  # roles are cluster-wide: not the docs' own name
STATUSES = ("met", "late", "missed", "unverifiable", "cancelled")
DAY = 86_400


def beijing(year: int, month: int, day: int) -> int:
    return int(datetime(year, month, day, tzinfo=BEIJING).timestamp())


def beijing_month(t: int) -> str:
    return datetime.fromtimestamp(t, BEIJING).strftime("%Y-%m")


def utc_month(t: int) -> str:
    return datetime.fromtimestamp(t, UTC).strftime("%Y-%m")


# -- Grafana, as far as these queries need it ------------------------------------------------

_TIME_FILTER = re.compile(r"\$__timeFilter\(([^()]+)\)")
_VARIABLE = re.compile(r"\$\{(\w+)\}|\$(\w+)")


def go_rfc3339_nano(ms: int) -> str:
    """Go's ``time.RFC3339Nano`` of a UTC instant: fraction without trailing zeros."""
    text = datetime.fromtimestamp(ms / 1000, UTC).strftime("%Y-%m-%dT%H:%M:%S.%f")
    return text.rstrip("0").rstrip(".") + "Z"


def quote(value: str) -> str:
    """The SQL data sources' ``quoteLiteral``."""
    return "'" + value.replace("'", "''") + "'"


@dataclass(frozen=True)
class Grafana:
    """A dashboard opened over ``[start, end)`` (epoch seconds; Grafana's range ends 1 ms
    before, as ``now/y`` does) with each multi-value variable set to ``variables[name]``."""

    start: int
    end: int
    variables: Mapping[str, Sequence[str]]

    def expand(self, sql: str) -> str:
        start, end = go_rfc3339_nano(self.start * 1000), go_rfc3339_nano(self.end * 1000 - 1)
        sql = _TIME_FILTER.sub(lambda m: f"{m.group(1).strip()} BETWEEN '{start}' AND '{end}'", sql)

        def value(match: re.Match[str]) -> str:
            name = match.group(1) or match.group(2)
            if name not in self.variables:
                raise KeyError(f"no value for ${name} (an unknown macro?) in {sql!r}")
            return ",".join(quote(v) for v in self.variables[name])

        sql = _VARIABLE.sub(value, sql)
        assert "$" not in sql, sql
        return sql


def test_the_expander_writes_what_grafana_writes() -> None:
    grafana = Grafana(beijing(2026, 1, 1), beijing(2027, 1, 1), {"unit": ["a", "o'b"], "n": []})
    assert grafana.expand("x AND $__timeFilter( t.due_at ) AND u IN ($unit) AND ${n}") == (
        "x AND t.due_at BETWEEN '2025-12-31T16:00:00Z' AND '2026-12-31T15:59:59.999Z' "
        "AND u IN ('a','o''b') AND "
    )
    with pytest.raises(KeyError, match=r"\$rule"):
        grafana.expand("$rule")
    with pytest.raises(KeyError, match=r"\$__timeGroup"):
        grafana.expand("$__timeGroup(due_at, '1d')")


# -- the dashboard, freshly built ------------------------------------------------------------


def board() -> dict[str, Any]:
    return dict(json.loads(build.render(build.DASHBOARDS["archive"]())))


def panels(items: list[dict[str, Any]]) -> Iterator[dict[str, Any]]:
    for panel in items:
        if panel["type"] != "row":
            yield panel
        yield from panels(panel.get("panels", []))


def variable_queries(model: dict[str, Any]) -> dict[str, str]:
    return {v["name"]: v["query"] for v in model["templating"]["list"] if v["type"] == "query"}


# -- the archive -----------------------------------------------------------------------------


def settled_records() -> list[ArchiveRecord]:
    """What a worker with retention archives of a generated history (about 1,300 records)."""
    history = Mix(seed=SEED, units=UNITS).history(3000, span_days=240)
    events = [(i, parse_event(e)) for i, e in enumerate(history, start=1)]
    hot = Ledger(_book(UNITS), WorkCalendar.official())
    hot.retirer = Retirer(Retention())
    replay(hot, events, AS_OF)
    settled, _ = hot.retirer.take()
    return records_of(settled)


def reclosings(records: Sequence[ArchiveRecord]) -> list[ArchiveRecord]:
    """Second versions: older ``missed`` under some late ones, newer ``cancelled`` over some
    met ones and newer ``unverifiable`` (evidence with a date only) over some missed ones."""
    by_status = {s: [r for r in records if r.status == s] for s in ("met", "late", "missed")}
    out = []
    for r in by_status["late"][::4]:
        view = {**r.view, "status": "missed", "fulfilled_at": None, "fulfilled_by": None}
        out.append(record_from_view(view, r.version - 1, r.due_at))
    for r in by_status["met"][::10]:
        view = {**r.view, "status": "cancelled", "fulfilled_at": None, "fulfilled_by": None}
        out.append(record_from_view(view, r.version + 1, r.closed_at + DAY))
    for i, r in enumerate(by_status["missed"][::3]):
        evidence = {"fulfilled_at": rfc3339(r.due_at + DAY), "fulfilled_date_only": True}
        view = {**r.view, "status": "unverifiable", **evidence, "fulfilled_by": f"late-{i}"}
        url = f"https://gov.example/late-{i}.html"
        out.append(record_from_view(view, r.version + 1, r.due_at + DAY, url))
    return out


@dataclass
class Filled:
    archive: Archive
    reader: Engine  # the documented read-only role
    records: list[ArchiveRecord]

    def newest(self) -> dict[str, ArchiveRecord]:
        out: dict[str, ArchiveRecord] = {}
        for r in self.records:
            if r.obligation_id not in out or out[r.obligation_id].version < r.version:
                out[r.obligation_id] = r
        return out

    def run(self, sql: str) -> list[dict[str, Any]]:
        with self.reader.connect() as conn:
            return [dict(row) for row in conn.exec_driver_sql(sql).mappings()]


def _grant_the_documented_role(archive: Archive, database: str) -> None:
    (block,) = re.findall(
        r"```sql\n(-- postgresql: a read-only role.*?)```", DOC.read_text("utf-8"), re.S
    )
    block = block.replace("govclock_reports", READER).replace(
        "DATABASE govclock ", f"DATABASE {database} "
    )
    with archive.engine.begin() as conn:
        for statement in block.split(";"):
            if statement.strip():
                conn.exec_driver_sql(statement)


@pytest.fixture(scope="module")
def filled(postgres_server: PostgresServer) -> Iterator[Filled]:
    database = f"archive_board_{os.getpid()}"
    url = postgres_server.create_database(database)
    records = settled_records()
    records += reclosings(records)
    with Archive.open(url) as archive:
        assert archive.write(records) == len(records)
        _grant_the_documented_role(archive, database)
        reader = make_engine(url.replace("//govclock@", f"//{READER}@"))
        try:
            yield Filled(archive, reader, records)
        finally:
            reader.dispose()


# -- what each panel must show, from the archive's Python side -------------------------------


@dataclass(frozen=True)
class Scenario:
    """A time range ``[start, end)`` and a selection (None: All)."""

    name: str
    start: int
    end: int
    units: tuple[str, ...] | None = None
    rules: tuple[str, ...] | None = None

    def keeps(self, view: Mapping[str, Any]) -> bool:
        return (self.units is None or view["unit"] in self.units) and (
            self.rules is None or view["rule_id"] in self.rules
        )


YEAR = Scenario("the year 2026, All", beijing(2026, 1, 1), beijing(2027, 1, 1))
PART = Scenario(
    "10 March to 20 June, two units, some rules",
    beijing(2026, 3, 10),
    beijing(2026, 6, 20),
    units=("unit-001", "unit-004"),
    rules=(
        "double_publicity_7wd",
        "online_posting_10wd",
        "opinion_response_48h",
        "application_reply_20wd",
    ),
)


#: A short range: some rules have nothing due in it, so their option must not be listed.
WEEK = Scenario("the week of 3 August, All", beijing(2026, 8, 3), beijing(2026, 8, 10))


def views(filled: Filled, start: int, end: int, scenario: Scenario) -> list[dict[str, Any]]:
    got = filled.archive.query(due_from=start, due_to=end, limit=10**6)
    return [v for v in got if scenario.keeps(v)]


def expected_rates(filled: Filled, s: Scenario) -> dict[str, Any]:
    if s.units is None and s.rules is None:  # All: the archive's own SQL rates
        rates = filled.archive.rates(due_from=s.start, due_to=s.end)
        assert rates == rates_of_views(views(filled, s.start, s.end, s))
        return rates
    return rates_of_views(views(filled, s.start, s.end, s))


def monthly(
    filled: Filled, s: Scenario, group: str, month_of: Callable[[int], str] = beijing_month
) -> dict[tuple[str, str], float | None]:
    """(unit or rule, month) → on-time rate of the archived views of that unit or rule due
    in that month (Beijing, unless ``month_of`` says otherwise: the guard)."""
    buckets: dict[str, list[dict[str, Any]]] = {}
    for view in views(filled, s.start, s.end, s):
        due = int(datetime.fromisoformat(view["due_at"]).timestamp())
        buckets.setdefault(month_of(due), []).append(view)
    out: dict[tuple[str, str], float | None] = {}
    for month, members in buckets.items():
        for name, r in rates_of_views(members)[group].items():
            out[name, month] = r["on_time_rate"]
    return out


def _rate(value: float | None) -> float | None:
    return None if value is None else round(value, 4)


def _totals(row: Mapping[str, Any]) -> dict[str, Any]:
    return {
        **{s: row[s] for s in STATUSES},
        "decided": row["decided"],
        "on_time_rate": _rate(row["on_time_rate"]),
    }


def check_overall_rate(filled: Filled, s: Scenario, rows: list[dict[str, Any]]) -> None:
    assert len(rows) == 1
    assert _rate(rows[0]["on_time_rate"]) == expected_rates(filled, s)["overall"]["on_time_rate"]


def check_status_counts(filled: Filled, s: Scenario, rows: list[dict[str, Any]]) -> None:
    overall = expected_rates(filled, s)["overall"]
    assert rows == [{status: overall[status] for status in STATUSES}]


def check_monthly(group: str) -> Callable[[Filled, Scenario, list[Any]], None]:
    def check(filled: Filled, s: Scenario, rows: list[dict[str, Any]]) -> None:
        times = [r["time"] for r in rows]
        assert times == sorted(times)  # Grafana needs time series in time order
        for t in times:  # each point at the first instant of its Beijing month
            local = t.astimezone(BEIJING)
            assert (local.day, local.hour, local.minute, local.second) == (1, 0, 0, 0), t
        got = {(r["metric"], beijing_month(int(r["time"].timestamp()))): r for r in rows}
        assert len(got) == len(rows)  # one point per series and month
        assert {k: _rate(r["on_time_rate"]) for k, r in got.items()} == monthly(filled, s, group)

    return check


def check_totals(group: str, column: str) -> Callable[[Filled, Scenario, list[Any]], None]:
    def check(filled: Filled, s: Scenario, rows: list[dict[str, Any]]) -> None:
        expected = expected_rates(filled, s)[group]
        assert {r[column]: _totals(r) for r in rows} == {
            name: {k: r[k] for k in (*STATUSES, "decided", "on_time_rate")}
            for name, r in expected.items()
        }
        rates = [r["on_time_rate"] for r in rows]
        known = [r for r in rates if r is not None]
        assert known == sorted(known) and rates[: len(known)] == known  # worst first, NULLs last

    return check


def check_late_and_missed(filled: Filled, s: Scenario, rows: list[dict[str, Any]]) -> None:
    got = filled.archive.query(
        due_from=s.start, due_to=s.end, statuses={"late", "missed"}, limit=10**6
    )
    newest = filled.newest()
    expected = [
        (
            v["id"],
            v["unit"],
            v["rule_id"],
            newest[v["id"]].due_at,
            v["status"],
            newest[v["id"]].fulfilled_at,
            newest[v["id"]].evidence_url,
        )
        for v in got
        if s.keeps(v)
    ]
    listed = [
        (
            r["obligation_id"],
            r["unit"],
            r["rule_id"],
            int(r["due_at"].timestamp()),
            r["status"],
            None if r["fulfilled_at"] is None else int(r["fulfilled_at"].timestamp()),
            r["evidence_url"],
        )
        for r in rows
    ]
    assert listed == expected  # the same rows, in the archive's (due_at, id) order
    late_or_missed = {
        v["id"] for v in views(filled, s.start, s.end, s) if v["status"] in ("late", "missed")
    }
    assert {row[0] for row in listed} == late_or_missed


CHECKS: dict[str, Callable[[Filled, Scenario, list[Any]], None]] = {
    "On-time rate": check_overall_rate,
    "Obligations by status": check_status_counts,
    "On-time rate by unit, per month": check_monthly("by_unit"),
    "On-time rate by rule, per month": check_monthly("by_rule"),
    "Units over the time range": check_totals("by_unit", "unit"),
    "Rules over the time range": check_totals("by_rule", "rule_id"),
    "Late and missed obligations": check_late_and_missed,
}


def options(filled: Filled, s: Scenario) -> dict[str, list[str]]:
    """Each variable's options, from its own query over the time range."""
    grafana = Grafana(s.start, s.end, {})
    return {
        name: [next(iter(row.values())) for row in filled.run(grafana.expand(sql))]
        for name, sql in variable_queries(board()).items()
    }


# -- the tests -------------------------------------------------------------------------------


def test_the_board_is_sql_on_the_postgresql_datasource_variable() -> None:
    model = board()
    assert (archive_board.TABLE, archive_board.STATUSES) == (TABLE, CLOSED_STATUSES)
    assert model["title"] == "govclock — compliance archive"
    assert model["time"] == {"from": "now/y", "to": "now/y"}
    assert model["timezone"] == "Asia/Shanghai"
    variables = {v["name"]: v for v in model["templating"]["list"]}
    assert variables["datasource"]["type"] == "datasource"
    assert variables["datasource"]["query"] == "grafana-postgresql-datasource"
    source = {"type": "grafana-postgresql-datasource", "uid": "${datasource}"}
    for name in ("unit", "rule"):
        v = variables[name]
        assert (v["type"], v["multi"], v["includeAll"], v["datasource"]) == (
            "query",
            True,
            True,
            source,
        )
        assert "allValue" not in v  # All = every option, quoted by Grafana
        assert "$__timeFilter(a.due_at)" in v["query"] and TABLE in v["query"]
    titles = []
    for panel in panels(model["panels"]):
        titles.append(panel["title"])
        assert panel["datasource"] == source and panel["description"], panel["title"]
        (target,) = panel["targets"]
        assert target["datasource"] == source and target["rawQuery"] is True
        sql = target["rawSql"]
        assert f"FROM {TABLE} a" in sql and archive_board.NEWEST in sql, panel["title"]
        assert "$__timeFilter(a.due_at)" in sql and "$unit" in sql and "$rule" in sql
        expected_format = "time_series" if panel["type"] == "timeseries" else "table"
        assert target["format"] == expected_format, panel["title"]
    assert sorted(titles) == sorted(CHECKS)  # every panel has its check below


def test_the_evidence_column_links_to_the_evidence() -> None:
    (table,) = [p for p in panels(board()["panels"]) if p["title"] == "Late and missed obligations"]
    (evidence,) = [
        o for o in table["fieldConfig"]["overrides"] if o["matcher"]["options"] == "Evidence"
    ]
    (links,) = [p["value"] for p in evidence["properties"] if p["id"] == "links"]
    assert links == [{"targetBlank": True, "title": "Open the evidence", "url": "${__value.raw}"}]
    (organize,) = table["transformations"]
    assert organize["options"]["renameByName"]["evidence_url"] == "Evidence"


@pytest.mark.parametrize("scenario", [YEAR, PART, WEEK], ids=lambda s: s.name)
def test_every_query_returns_the_archives_figures(filled: Filled, scenario: Scenario) -> None:
    choices = options(filled, scenario)
    in_range = filled.archive.query(due_from=scenario.start, due_to=scenario.end, limit=10**6)
    for name, key in (("unit", "unit"), ("rule", "rule_id")):
        assert len(choices[name]) == len(set(choices[name]))
        assert set(choices[name]) == {v[key] for v in in_range} != set()
    chosen = {
        "unit": list(scenario.units) if scenario.units is not None else choices["unit"],
        "rule": list(scenario.rules) if scenario.rules is not None else choices["rule"],
    }
    for name, values in chosen.items():
        assert set(values) <= set(choices[name]), name
    grafana = Grafana(scenario.start, scenario.end, chosen)
    checked = 0
    for panel in panels(board()["panels"]):
        for target in panel["targets"]:
            rows = filled.run(grafana.expand(target["rawSql"]))
            assert rows, f"{panel['title']}: no rows"
            CHECKS[panel["title"]](filled, scenario, rows)
            checked += 1
    assert checked == len(CHECKS)


def test_the_data_tells_right_from_wrong(filled: Filled) -> None:
    """Guards: the history holds what would show a query that groups in UTC, forgets the
    newest-version rule or the time filter."""
    assert monthly(filled, YEAR, "by_unit", utc_month) != monthly(filled, YEAR, "by_unit")
    every_version = [r.view for r in filled.records]
    assert len(every_version) > len(filled.newest())
    assert rates_of_views(every_version) != filled.archive.rates()
    assert sum(1 for r in filled.newest().values() if r.status in ("unverifiable", "cancelled"))
    newest = filled.newest().values()
    assert any(r.status == "late" and r.evidence_url for r in newest)  # a link to follow
    assert any(r.status == "missed" and r.evidence_url is None for r in newest)
    every_rule = set(filled.archive.rates()["by_rule"])
    assert set(options(filled, YEAR)["rule"]) == every_rule > set(options(filled, WEEK)["rule"])
    total = filled.archive.rates()["overall"]
    part = expected_rates(filled, PART)["overall"]
    assert 0 < sum(part[k] for k in STATUSES) < sum(total[k] for k in STATUSES)


def test_an_empty_selection_shows_nothing_rather_than_an_error(filled: Filled) -> None:
    grafana = Grafana(YEAR.start, YEAR.end, {"unit": [], "rule": ["double_publicity_7wd"]})
    for panel in panels(board()["panels"]):
        for target in panel["targets"]:
            rows = filled.run(grafana.expand(target["rawSql"]))
            values = [v for row in rows for v in row.values()]
            assert all(v in (None, 0) for v in values), panel["title"]
