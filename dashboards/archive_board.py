"""Compliance archive: on-time rates by month, counts by status, late and missed obligations.

Reads the SQL archive (``archived_obligations``, docs/archive.md) through Grafana's
PostgreSQL data source, not Prometheus: every closed obligation the workers archived, so a
year's figures survive restarts and retention. Each query keeps only the newest version of
each obligation (``NOT EXISTS`` a newer version, as ``archive.store`` reads it), the
obligations due in the dashboard's time range (``$__timeFilter(due_at)``) of the selected
units and rules. Months are Beijing months (``date_trunc`` of ``due_at AT TIME ZONE
'Asia/Shanghai'``). The on-time rate is met / (met + late + missed), as in
``deadlines.report``; unverifiable and cancelled obligations are counted, not rated.
"""

from __future__ import annotations

from grafana_foundation_sdk.builders import dashboard
from grafana_foundation_sdk.models import common as common_models

from dashboards.common import (
    ON_TIME,
    Board,
    PanelBuilder,
    datasource_variable,
    organize,
    override,
    stat_panel,
    table_panel,
    timeseries_panel,
)
from dashboards.sql import POSTGRES, POSTGRES_SOURCE, sql_query, sql_variable

#: The archive's table (archive/tables.py; dashboards/ may not import archive/).
TABLE = "archived_obligations"
STATUSES = ("met", "late", "missed", "unverifiable", "cancelled")
#: How ``archive.store`` picks the newest version of an obligation: no newer one exists.
NEWEST = (
    f"NOT EXISTS (SELECT 1 FROM {TABLE} newer\n"
    "                  WHERE newer.obligation_id = a.obligation_id"
    " AND newer.version > a.version)"
)
#: The obligations a panel counts: newest versions due in the time range, of the selected
#: units and rules. ``= ANY (ARRAY[…]::text[])`` rather than ``IN (…)``: an empty selection
#: is then no rows, not a syntax error.
SELECTED = (
    f"FROM {TABLE} a\n"
    "WHERE $__timeFilter(a.due_at)\n"
    "  AND a.unit = ANY (ARRAY[$unit]::text[])\n"
    "  AND a.rule_id = ANY (ARRAY[$rule]::text[])\n"
    f"  AND {NEWEST}"
)
DECIDED = "a.status IN ('met', 'late', 'missed')"
#: met / (met + late + missed); NULL when nothing was decided.
ON_TIME_RATE = (
    "count(*) FILTER (WHERE a.status = 'met')::float8\n"
    f"         / nullif(count(*) FILTER (WHERE {DECIDED}), 0)"
)
#: The first instant of the obligation's Beijing month (Grafana's $__timeGroup groups in UTC).
MONTH = "date_trunc('month', a.due_at AT TIME ZONE 'Asia/Shanghai') AT TIME ZONE 'Asia/Shanghai'"
COUNTS = ",\n".join(
    f"       count(*) FILTER (WHERE a.status = '{status}') AS {status}" for status in STATUSES
)
DESCRIPTION = (
    "The compliance archive (PostgreSQL): on-time rate (met / (met + late + missed)) by unit "
    "and rule per Beijing month, counts by status, and the late and missed obligations with "
    "their evidence, over the obligations due in the time range (newest version of each)."
)


def values_of(column: str) -> str:
    """A variable's options: the values of ``column`` among the time range's obligations."""
    return (
        f"SELECT DISTINCT a.{column}\nFROM {TABLE} a\nWHERE $__timeFilter(a.due_at)\n"
        f"  AND {NEWEST}\nORDER BY 1"
    )


def monthly_rate(column: str) -> str:
    """Time series: one series per value of ``column``, one point per Beijing month."""
    return (
        f"SELECT {MONTH} AS time,\n       a.{column} AS metric,\n       {ON_TIME_RATE}"
        f" AS on_time_rate\n{SELECTED}\nGROUP BY 1, 2\nORDER BY 1, 2"
    )


def totals_by(column: str) -> str:
    """A table: counts by status, decided and the on-time rate per value of ``column``."""
    return (
        f"SELECT a.{column},\n{COUNTS},\n"
        f"       count(*) FILTER (WHERE {DECIDED}) AS decided,\n"
        f"       {ON_TIME_RATE} AS on_time_rate\n{SELECTED}\nGROUP BY a.{column}\n"
        f"ORDER BY on_time_rate NULLS LAST, a.{column}"
    )


OVERALL_RATE = f"SELECT {ON_TIME_RATE} AS on_time_rate\n{SELECTED}"
STATUS_COUNTS = f"SELECT\n{COUNTS}\n{SELECTED}"
#: The columns of the tables by unit and rule (after the unit or rule) and of the list.
TOTALS = (*STATUSES, "decided", "on_time_rate")
LISTED = ("obligation_id", "unit", "rule_id", "due_at", "status", "fulfilled_at", "evidence_url")
LATE_AND_MISSED = (
    f"SELECT {', '.join('a.' + column for column in LISTED)}\n{SELECTED}\n"
    "  AND a.status IN ('late', 'missed')\nORDER BY a.due_at, a.obligation_id"
)
#: Column → header of the tables.
HEADERS = {
    "obligation_id": "Obligation",
    "unit": "Unit",
    "rule_id": "Rule",
    "due_at": "Due at",
    "status": "Status",
    "fulfilled_at": "Fulfilled at",
    "evidence_url": "Evidence",
    **{status: status.capitalize() for status in STATUSES},
    "decided": "Decided",
    "on_time_rate": "On-time rate",
}
RATE_CELLS = {
    "unit": "percentunit",
    "decimals": 1,
    "thresholds": {
        "mode": "absolute",
        "steps": [{"color": color, "value": value} for value, color in ON_TIME],
    },
    "custom__cellOptions": {"type": "color-text"},
}
STATUS_COLOURS = {
    "type": "value",
    "options": {
        "late": {"color": "orange", "index": 0, "text": "late"},
        "missed": {"color": "red", "index": 1, "text": "missed"},
    },
}


def archive_board() -> dashboard.Dashboard:
    board = Board(
        "govclock-archive",
        "govclock — compliance archive",
        DESCRIPTION,
        [
            datasource_variable(
                POSTGRES,
                "A PostgreSQL data source on the govclock archive, with a read-only role "
                "(docs/archive.md).",
            ),
            sql_variable(
                "unit",
                "Unit",
                values_of("unit"),
                "Owning units (政务公开责任单位) with obligations due in the time range.",
            ),
            sql_variable(
                "rule",
                "Rule",
                values_of("rule_id"),
                "Rules (e.g. first_release_5h) with obligations due in the time range.",
            ),
        ],
        time=("now/y", "now/y"),
        refresh="1h",
    )
    board.row("The time range").add(*_totals_panels())
    board.row("By month (Beijing time)").add(*_monthly_panels())
    board.row("By unit and by rule").add(*_table_panels())
    board.row("Late and missed").add(_late_and_missed_panel())
    return board.done()


def _totals_panels() -> list[PanelBuilder]:
    """The on-time rate and the counts by status of the whole selection."""
    return [
        stat_panel(
            "On-time rate",
            "Met / (met + late + missed) of the obligations due in the time range (by default "
            "this year), newest version of each. Unverifiable and cancelled ones are left out.",
            sql_query(OVERALL_RATE),
            unit="percentunit",
            steps=ON_TIME,
            decimals=1,
            datasource=POSTGRES_SOURCE,
        ).span(6),
        stat_panel(
            "Obligations by status",
            "Archived obligations due in the time range, by the status of their newest "
            "version (an obligation archived missed and later closed late counts once, late).",
            sql_query(STATUS_COUNTS),
            datasource=POSTGRES_SOURCE,
        ).span(18),
    ]


def _monthly_panels() -> list[PanelBuilder]:
    """On-time rate per Beijing month, one line per unit and one per rule."""
    return [
        timeseries_panel(
            f"On-time rate by {name}, per month",
            f"Met / (met + late + missed) per {name} of the obligations due in each month "
            "(Beijing time; a point at the month's first day). A month with nothing decided "
            "has no point.",
            sql_query(monthly_rate(column), time_series=True),
            unit="percentunit",
            steps=ON_TIME,
            datasource=POSTGRES_SOURCE,
        )
        .show_points(common_models.VisibilityMode.ALWAYS)
        .point_size(6)
        .min(0)
        .max(1)
        for name, column in (("unit", "unit"), ("rule", "rule_id"))
    ]


def _table_panels() -> list[PanelBuilder]:
    """Counts and the on-time rate per unit and per rule, worst rate first."""
    return [
        table_panel(
            f"{name.capitalize()}s over the time range",
            f"Per {name}: obligations due in the time range by status, how many were decided "
            "(met, late or missed) and the on-time rate; worst rate first.",
            sql_query(totals_by(column)),
            datasource=POSTGRES_SOURCE,
        )
        .with_transformation(organize([], {c: HEADERS[c] for c in (column, *TOTALS)}))
        .override_by_name(*override("On-time rate", **RATE_CELLS))
        for name, column in (("unit", "unit"), ("rule", "rule_id"))
    ]


def _late_and_missed_panel() -> PanelBuilder:
    """Every late and missed obligation of the selection, with a link to its evidence."""
    return (
        table_panel(
            "Late and missed obligations",
            "Obligations due in the time range whose newest version is late (evidence "
            "published after the deadline) or missed (none by the deadline), oldest deadline "
            "first. Evidence opens the publication that closed it, when the archive has its URL.",
            sql_query(LATE_AND_MISSED),
            datasource=POSTGRES_SOURCE,
        )
        .span(24)
        .height(12)
        .with_transformation(organize([], {c: HEADERS[c] for c in LISTED}, LISTED))
        .override_by_name(
            *override(
                "Status", mappings=[STATUS_COLOURS], custom__cellOptions={"type": "color-text"}
            )
        )
        .override_by_name(
            *override(
                "Evidence",
                links=[
                    {"title": "Open the evidence", "url": "${__value.raw}", "targetBlank": True}
                ],
            )
        )
    )
