"""Prometheus alert rules: promtool checks them and runs their unit tests.

promtool comes from Debian's prometheus package (``make tools``). Without it these tests
fail rather than skip: CI must run them.
"""

from __future__ import annotations

import shutil
import subprocess
import sys
from pathlib import Path
from typing import Any

import pytest
import yaml

ROOT = Path(__file__).resolve().parents[1]
if str(ROOT) not in sys.path:  # dashboards/ is not an installed package
    sys.path.insert(0, str(ROOT))

from dashboards.catalog import (  # noqa: E402
    TARGET_LABELS,
    exposed,
    grouping_labels,
    metric_names,
    selector_labels,
)

RULES = ROOT / "dashboards" / "alerts.yaml"
RULE_TESTS = ROOT / "dashboards" / "alerts_test.yaml"
ALERTS = {
    "GovclockBreachSpike",
    "GovclockSweeperStalled",
    "GovclockNotifierFailing",
    "GovclockNoOnCall",
    "GovclockEscalationUnanswered",
    "GovclockRosterGap",
    "GovclockSourceSilent",
    "GovclockNotReady",
    "GovclockCalendarAssumed",
}
ANNOTATIONS = {"summary", "summary_zh", "description", "description_zh", "runbook", "runbook_zh"}
SEVERITIES = {"critical", "warning", "info"}


def promtool(*args: str) -> subprocess.CompletedProcess[str]:
    if shutil.which("promtool") is None:
        pytest.fail(
            "promtool is not on PATH: run `make tools` (installs Debian's prometheus package, "
            "which provides promtool); CI must have it"
        )
    return subprocess.run(
        ["promtool", *args], cwd=ROOT, capture_output=True, text=True, timeout=120, check=False
    )


def alert_rules() -> dict[str, dict[str, Any]]:
    groups = yaml.safe_load(RULES.read_text(encoding="utf-8"))["groups"]
    return {rule["alert"]: rule for group in groups for rule in group["rules"] if "alert" in rule}


def test_promtool_check_rules() -> None:
    result = promtool("check", "rules", str(RULES.relative_to(ROOT)))
    assert result.returncode == 0, result.stdout + result.stderr
    assert f"SUCCESS: {len(ALERTS)} rules found" in result.stdout


def test_promtool_test_rules() -> None:
    result = promtool("test", "rules", str(RULE_TESTS.relative_to(ROOT)))
    assert result.returncode == 0, result.stdout + result.stderr
    assert "SUCCESS" in result.stdout


def test_the_alerts_with_severity_and_annotations_in_both_languages() -> None:
    rules = alert_rules()
    assert set(rules) == ALERTS
    for name, rule in rules.items():
        assert rule["labels"]["severity"] in SEVERITIES, name
        assert rule["labels"]["service"] == "govclock", name
        assert set(rule["annotations"]) == ANNOTATIONS, name
        for key in ("summary_zh", "description_zh", "runbook_zh"):
            assert any("\u4e00" <= ch <= "\u9fff" for ch in rule["annotations"][key]), name
    assert rules["GovclockCalendarAssumed"]["labels"]["severity"] == "info"
    assert rules["GovclockSweeperStalled"]["labels"]["severity"] == "critical"
    assert "> 30" in rules["GovclockSweeperStalled"]["expr"]
    assert "21600" in rules["GovclockSourceSilent"]["expr"]  # the default period: 6 h


def test_every_alert_is_tested_firing_and_not_firing() -> None:
    tests = yaml.safe_load(RULE_TESTS.read_text(encoding="utf-8"))
    assert tests["rule_files"] == ["alerts.yaml"]
    firing: set[str] = set()
    quiet: set[str] = set()
    for case in tests["tests"]:
        for check in case.get("alert_rule_test", []):
            (firing if check["exp_alerts"] else quiet).add(check["alertname"])
    assert firing == ALERTS, f"never shown firing: {ALERTS - firing}"
    assert quiet == ALERTS, f"never shown quiet: {ALERTS - quiet}"


def test_alert_expressions_use_metrics_and_labels_of_streams_metrics() -> None:
    known = exposed()
    for name, rule in alert_rules().items():
        expr = rule["expr"]
        used = metric_names(expr)
        assert used, name
        assert used <= known.keys(), f"{name}: unknown {sorted(used - known.keys())}"
        for metric, label in selector_labels(expr):
            assert label in known[metric], f"{name}: {metric} has no label {label!r}"
        labels = set().union(*(known[m] for m in used)) | TARGET_LABELS
        assert grouping_labels(expr) <= labels, f"{name}: {grouping_labels(expr) - labels}"
