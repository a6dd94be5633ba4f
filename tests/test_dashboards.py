"""Dashboards as code: the committed JSON is a fresh build, and every query is sound.

Every panel of the Prometheus boards has PromQL targets on the ``datasource`` variable;
every ``govclock_*`` name and label they use is one metrics/collectors.py registers (read
from a fresh CollectorRegistry); every expression parses (``promtool check rules``); the
on-time rates give the right numbers on made-up series (``promtool test rules``). The
archive board's SQL runs on a real PostgreSQL in tests/test_archive_dashboard.py.
"""

from __future__ import annotations

import json
import re
import shutil
import subprocess
import sys
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest
import yaml

ROOT = Path(__file__).resolve().parents[1]
if str(ROOT) not in sys.path:  # dashboards/ is not an installed package
    sys.path.insert(0, str(ROOT))

from dashboards import build  # noqa: E402
from dashboards.catalog import (  # noqa: E402
    TARGET_LABELS,
    exposed,
    grouping_labels,
    metric_names,
    selector_labels,
)
from dashboards.promql import on_time_now, on_time_over  # noqa: E402

#: What Grafana puts in for the variables, to run the queries outside Grafana.
VARIABLES = {
    "$__rate_interval": "5m",
    "$__interval": "1h",
    "$__range": "1d",
    "$window": "1h",
    "$unit": ".*",
    "$rule": ".*",
}
MAKE_TOOLS = "promtool is not on PATH: run `make tools` (installs Debian's prometheus package)"


#: The board over the SQL archive (PostgreSQL data source; tests/test_archive_dashboard.py).
SQL_BOARDS = {"archive.json"}


def dashboards() -> dict[str, dict[str, Any]]:
    return {name: json.loads(text) for name, text in build.rendered().items()}


def prometheus_dashboards() -> dict[str, dict[str, Any]]:
    return {name: b for name, b in dashboards().items() if name not in SQL_BOARDS}


def panels(board: dict[str, Any]) -> Iterator[dict[str, Any]]:
    for panel in board["panels"]:
        if panel["type"] != "row":
            yield panel
        yield from panel.get("panels", [])


def targets() -> Iterator[tuple[str, str, dict[str, Any]]]:
    """Every PromQL target: (file, panel title, target)."""
    for name, board in prometheus_dashboards().items():
        for panel in panels(board):
            for target in panel.get("targets", []):
                yield name, panel["title"], target


def substitute(expr: str) -> str:
    for variable, value in VARIABLES.items():
        expr = expr.replace(variable, value)
    assert "$" not in expr, f"a variable is left in {expr!r}"
    return expr


def promtool(*args: str, cwd: Path) -> subprocess.CompletedProcess[str]:
    if shutil.which("promtool") is None:
        pytest.fail(MAKE_TOOLS)
    return subprocess.run(
        ["promtool", *args], cwd=cwd, capture_output=True, text=True, timeout=60, check=False
    )


# -- the committed files --------------------------------------------------------------------


def test_committed_json_equals_a_fresh_build() -> None:
    assert build.stale() == [], "run: python -m dashboards.build"


def test_check_mode_reports_a_stale_file(tmp_path: Path) -> None:
    build.write(tmp_path)
    assert build.main(["--check", "--out", str(tmp_path)]) == 0
    (tmp_path / "oncall.json").write_text("{}\n", encoding="utf-8")
    (tmp_path / "old.json").write_text("{}\n", encoding="utf-8")
    assert [p.split(": ")[1] for p in build.stale(tmp_path)] == [
        "differs from a fresh build",
        "no builder makes this file",
    ]
    assert build.main(["--check", "--out", str(tmp_path)]) == 1


def test_json_is_sorted_and_indented() -> None:
    for name, text in build.rendered().items():
        data = json.loads(text)
        assert text == json.dumps(data, sort_keys=True, indent=2, ensure_ascii=False) + "\n", name


# -- the dashboards -------------------------------------------------------------------------


def test_four_dashboards_with_unique_uids_and_the_shared_tag() -> None:
    boards = dashboards()
    assert sorted(boards) == ["archive.json", "compliance.json", "oncall.json", "pipeline.json"]
    uids = [b["uid"] for b in boards.values()]
    assert uids == [
        "govclock-oncall",
        "govclock-compliance",
        "govclock-pipeline",
        "govclock-archive",
    ]
    for board in boards.values():
        assert "govclock" in board["tags"]
        assert board["links"][0]["type"] == "dashboards"


def test_variables() -> None:
    known = exposed()
    boards = prometheus_dashboards()
    for name, board in boards.items():
        variables = {v["name"]: v for v in board["templating"]["list"]}
        assert variables["datasource"]["type"] == "datasource"
        assert variables["datasource"]["query"] == "prometheus"
        for variable in variables.values():
            if variable["type"] != "query":
                continue
            match = re.fullmatch(r"label_values\((\w+), (\w+)\)", variable["query"])
            assert match, variable["query"]
            metric, label = match.groups()
            assert label in known[metric], f"{name}: {variable['query']}"
            assert variable["datasource"]["uid"] == "${datasource}"
            assert variable["allValue"] == ".*"
    for name in ("oncall.json", "compliance.json"):
        assert "unit" in {v["name"] for v in boards[name]["templating"]["list"]}


def test_every_panel_has_promql_targets_on_the_datasource_variable() -> None:
    for name, board in prometheus_dashboards().items():
        ids = [p["id"] for p in board["panels"]]
        assert len(ids) == len(set(ids)), name
        for panel in panels(board):
            where = f"{name}: {panel['title']}"
            assert panel["datasource"] == {"type": "prometheus", "uid": "${datasource}"}, where
            assert panel.get("targets"), f"{where}: no target"
            assert panel.get("description"), f"{where}: no description"
            ref_ids = [t["refId"] for t in panel["targets"]]
            assert len(set(ref_ids)) == len(ref_ids), where
            for target in panel["targets"]:
                assert target["expr"].strip(), where
                assert metric_names(target["expr"]), f"{where}: no govclock metric"


def test_the_sql_board_queries_the_postgresql_datasource_variable() -> None:
    source = {"type": "grafana-postgresql-datasource", "uid": "${datasource}"}
    for name in SQL_BOARDS:
        board = dashboards()[name]
        variables = {v["name"]: v for v in board["templating"]["list"]}
        assert variables["datasource"]["query"] == source["type"], name
        for variable in variables.values():
            if variable["type"] == "query":
                assert variable["datasource"] == source and variable["query"].strip(), name
        ids = [p["id"] for p in board["panels"]]
        assert len(ids) == len(set(ids)), name
        for panel in panels(board):
            where = f"{name}: {panel['title']}"
            assert panel["datasource"] == source and panel.get("description"), where
            assert panel.get("targets"), f"{where}: no target"
            for target in panel["targets"]:
                assert target["datasource"] == source and target["rawSql"].strip(), where
                assert "expr" not in target, where


def test_panels_fit_the_grid_without_overlapping() -> None:
    for name, board in dashboards().items():
        taken: set[tuple[int, int]] = set()
        for panel in board["panels"]:
            pos = panel["gridPos"]
            assert pos["x"] + pos["w"] <= 24, f"{name}: {panel['title']}"
            cells = {
                (x, y)
                for x in range(pos["x"], pos["x"] + pos["w"])
                for y in range(pos["y"], pos["y"] + pos["h"])
            }
            assert not cells & taken, f"{name}: {panel['title']} overlaps"
            taken |= cells


def test_organize_names_fields_as_the_queries_return_them() -> None:
    """Grafana orders and hides fields by their names before renaming."""
    for name, board in dashboards().items():
        for panel in panels(board):
            for step in panel.get("transformations", []):
                if step["id"] != "organize":
                    continue
                options = step["options"]
                renamed_to = set(options["renameByName"].values()) - set(options["renameByName"])
                used = set(options["indexByName"]) | set(options["excludeByName"])
                assert not used & renamed_to, f"{name}: {panel['title']}: {used & renamed_to}"


def test_every_metric_and_label_exists_in_streams_metrics() -> None:
    known = exposed()
    for name, title, target in targets():
        expr = target["expr"]
        where = f"{name}: {title}: {expr}"
        used = metric_names(expr)
        assert used <= known.keys(), f"{where}: unknown {sorted(used - known.keys())}"
        for metric, label in selector_labels(expr):
            assert label in known[metric], f"{where}: {metric} has no label {label!r}"
        labels = set().union(*(known[m] for m in used)) | TARGET_LABELS
        assert grouping_labels(expr) <= labels, f"{where}: {grouping_labels(expr) - labels}"


def test_the_metric_catalogue_is_read_from_streams_metrics() -> None:
    known = exposed()
    assert known["govclock_obligations"] == {"rule", "status", "unit"}
    assert known["govclock_time_to_fulfil_ratio_bucket"] == {"rule", "le"}
    assert known["govclock_breaches_total"] == {"rule", "unit"}
    assert "govclock_breaches" not in known  # counters are only queried with _total
    assert metric_names('sum(rate(govclock_x_total{a="b"}[5m])) / govclock_y') == {
        "govclock_x_total",
        "govclock_y",
    }


# -- the queries against Prometheus's own parser and evaluator -------------------------------


def test_every_query_parses(tmp_path: Path) -> None:
    exprs = sorted({substitute(t["expr"]) for _, _, t in targets()})
    rules = [{"record": f"govclock:dashboard_query_{i}", "expr": e} for i, e in enumerate(exprs)]
    path = tmp_path / "queries.yaml"
    path.write_text(yaml.safe_dump({"groups": [{"name": "queries", "rules": rules}]}))
    result = promtool("check", "rules", str(path), cwd=tmp_path)
    assert result.returncode == 0, result.stdout + result.stderr


def _series(labels: str, values: str) -> dict[str, str]:
    return {"series": labels, "values": values}


def test_on_time_rates_on_sample_series(tmp_path: Path) -> None:
    """met / (met + late + missed) now; met / (met + breached) per window."""
    obligations = [
        # u1: 3 met, 1 late, 0 missed, 2 unverifiable (left out) → 0.75
        _series('govclock_obligations{rule="r1", status="met", unit="u1"}', "3x10"),
        _series('govclock_obligations{rule="r1", status="late", unit="u1"}', "1x10"),
        _series('govclock_obligations{rule="r2", status="unverifiable", unit="u1"}', "2x10"),
        # u2: nothing met, 2 missed, 5 pending → 0 (not absent)
        _series('govclock_obligations{rule="r2", status="missed", unit="u2"}', "2x10"),
        _series('govclock_obligations{rule="r2", status="pending", unit="u2"}', "5x10"),
        # u3: only pending → no rate
        _series('govclock_obligations{rule="r1", status="pending", unit="u3"}', "4x10"),
    ]
    counters = [
        # within the hour before 2h: u1 3 met, 1 breached (closed late later: counted once)
        _series('govclock_fulfilments_total{outcome="met", rule="r1", unit="u1"}', "0x60 3x60"),
        _series('govclock_fulfilments_total{outcome="late", rule="r1", unit="u1"}', "0x60 1x60"),
        _series('govclock_breaches_total{rule="r1", unit="u1"}', "0x60 1x60"),
        # u2: 2 breached, nothing met (no met series at all) → 0
        _series('govclock_breaches_total{rule="r2", unit="u2"}', "0x60 2x60"),
    ]
    tests = {
        "rule_files": [],
        "evaluation_interval": "1m",
        "tests": [
            {
                "interval": "1m",
                "input_series": obligations,
                "promql_expr_test": [
                    {
                        "expr": substitute(on_time_now("unit", 'unit=~"$unit"')),
                        "eval_time": "5m",
                        "exp_samples": [
                            {"labels": '{unit="u1"}', "value": 0.75},
                            {"labels": '{unit="u2"}', "value": 0},
                        ],
                    },
                    {
                        "expr": substitute(on_time_now("", 'unit=~"$unit"', 'rule=~"$rule"')),
                        "eval_time": "5m",
                        "exp_samples": [{"labels": "{}", "value": 0.5}],
                    },
                    {
                        "expr": substitute(on_time_now("rule", 'rule=~"r2"')),
                        "eval_time": "5m",
                        "exp_samples": [{"labels": '{rule="r2"}', "value": 0}],
                    },
                ],
            },
            {
                "interval": "1m",
                "input_series": counters,
                "promql_expr_test": [
                    {
                        "expr": substitute(on_time_over("$window", "unit", 'unit=~"$unit"')),
                        "eval_time": "100m",
                        "exp_samples": [
                            {"labels": '{unit="u1"}', "value": 0.75},
                            {"labels": '{unit="u2"}', "value": 0},
                        ],
                    },
                    {  # a window with nothing decided has no point
                        "expr": substitute(on_time_over("$window", "unit", 'unit=~"$unit"')),
                        "eval_time": "170m",
                        "exp_samples": [],
                    },
                ],
            },
        ],
    }
    path = tmp_path / "on_time_test.yaml"
    path.write_text(yaml.safe_dump(tests))
    result = promtool("test", "rules", str(path), cwd=tmp_path)
    assert result.returncode == 0, result.stdout + result.stderr
