"""Compliance: on-time rate by unit and by rule, now and over time."""

from __future__ import annotations

from grafana_foundation_sdk.builders import dashboard

from dashboards.common import (
    ON_TIME,
    Board,
    PanelBuilder,
    bargauge_panel,
    datasource_variable,
    label_variable,
    organize,
    query,
    stat_panel,
    table_panel,
    timeseries_panel,
    transformation,
    window_variable,
)
from dashboards.promql import RULE, UNIT, matchers, on_time_now, on_time_over, sum_by

STATUSES = ("pending", "paused", "met", "late", "missed", "unverifiable", "cancelled")
WINDOW = "$window"


def compliance() -> dashboard.Dashboard:
    board = Board(
        "govclock-compliance",
        "govclock · Compliance",
        "On-time rate (met / (met + late + missed)) by unit and by rule, now and over time.",
        [
            datasource_variable(),
            label_variable(
                "unit", "Unit", "govclock_obligations", "Owning units (政务公开责任单位)."
            ),
            label_variable(
                "rule",
                "Rule",
                "govclock_obligations",
                "Rules of the rule packs (e.g. first_release_5h).",
            ),
            window_variable(),
        ],
    )
    board.row("In the ledgers now").add(*_ledgers_now_panels())
    board.row("Over time").add(*_over_time_panels())
    return board.done()


def _ledgers_now_panels() -> list[PanelBuilder]:
    """The "In the ledgers now" row: on-time rates and counts of the obligations held now."""
    return [
        stat_panel(
            "On-time rate",
            "Met on time / (met + late + missed), over the obligations the ledgers hold now. "
            "Unverifiable (published with a date only) and open obligations are left out.",
            query(on_time_now("", UNIT, RULE), instant=True),
            unit="percentunit",
            steps=ON_TIME,
            decimals=1,
        ).span(6),
        stat_panel(
            "Obligations by status",
            "How many obligations the ledgers hold, by status.",
            *(
                query(
                    "sum(govclock_obligations"
                    + matchers(f'status="{status}"', UNIT, RULE)
                    + ") or vector(0)",
                    legend=status,
                    ref=chr(ord("A") + i),
                    instant=True,
                )
                for i, status in enumerate(STATUSES)
            ),
        ).span(18),
        bargauge_panel(
            "On-time rate by unit",
            "Met on time / (met + late + missed) per unit, worst first.",
            query(f"sort({on_time_now('unit', UNIT, RULE)})", legend="{{unit}}", instant=True),
            unit="percentunit",
            steps=ON_TIME,
            decimals=1,
            maximum=1,
        ),
        bargauge_panel(
            "On-time rate by rule",
            "Met on time / (met + late + missed) per rule, worst first.",
            query(f"sort({on_time_now('rule', UNIT, RULE)})", legend="{{rule}}", instant=True),
            unit="percentunit",
            steps=ON_TIME,
            decimals=1,
            maximum=1,
        ),
        table_panel(
            "Obligations by unit and status",
            "One row per unit, one column per status.",
            query(
                sum_by("unit, status", "govclock_obligations" + matchers(UNIT, RULE)),
                instant=True,
                table=True,
            ),
            sort_by="Unit",
        )
        .span(24)
        .with_transformation(
            transformation(
                "groupingToMatrix",
                {
                    "columnField": "status",
                    "rowField": "unit",
                    "valueField": "Value",
                    "emptyValue": "zero",
                },
            )
        )
        .with_transformation(
            organize(
                [],
                {"unit\\status": "Unit"},
                ["unit\\status", *STATUSES],
            )
        ),
    ]


def _over_time_panels() -> list[PanelBuilder]:
    """The "Over time" row: on-time rates and closings per window, time to fulfil."""
    return [
        timeseries_panel(
            "On-time rate by unit",
            "At each point: obligations met on time / (met on time + breached) in the "
            "preceding window. A breached obligation closed late later is counted once, as "
            "breached.",
            query(on_time_over(WINDOW, "unit", UNIT, RULE), legend="{{unit}}"),
            unit="percentunit",
            steps=ON_TIME,
            min_interval="1h",
        )
        .min(0)
        .max(1),
        timeseries_panel(
            "On-time rate by rule",
            "At each point: obligations met on time / (met on time + breached) in the "
            "preceding window, per rule.",
            query(on_time_over(WINDOW, "rule", UNIT, RULE), legend="{{rule}}"),
            unit="percentunit",
            steps=ON_TIME,
            min_interval="1h",
        )
        .min(0)
        .max(1),
        timeseries_panel(
            "Closed and breached per window",
            "Obligations closed by evidence (met, late, unverifiable) and breached in the "
            "preceding window.",
            query(
                sum_by(
                    "outcome",
                    "increase(govclock_fulfilments_total" + matchers(UNIT, RULE) + f"[{WINDOW}])",
                ),
                legend="{{outcome}}",
                ref="A",
            ),
            query(
                sum_by(
                    "",
                    "increase(govclock_breaches_total" + matchers(UNIT, RULE) + f"[{WINDOW}])",
                ),
                legend="breached",
                ref="B",
            ),
            min_interval="1h",
        ),
        timeseries_panel(
            "Time to fulfil, p50 and p90 (fraction of the window)",
            "From the start of the window to the evidence, as a fraction of the window: "
            "1 is the deadline, above 1 is late. Per rule (this histogram has no unit label).",
            query(
                "histogram_quantile(0.5, sum by (le, rule) "
                f"(increase(govclock_time_to_fulfil_ratio_bucket{{{RULE}}}[{WINDOW}])))",
                legend="p50 {{rule}}",
                ref="A",
            ),
            query(
                "histogram_quantile(0.9, sum by (le, rule) "
                f"(increase(govclock_time_to_fulfil_ratio_bucket{{{RULE}}}[{WINDOW}])))",
                legend="p90 {{rule}}",
                ref="B",
            ),
            unit="percentunit",
            steps=((None, "green"), (1.0, "red")),
            min_interval="1h",
        ),
    ]
