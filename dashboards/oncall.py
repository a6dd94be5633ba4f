"""On-call board: what falls due next, what is breached, how the escalation pages are going."""

from __future__ import annotations

from grafana_foundation_sdk.builders import dashboard, table

from dashboards.common import (
    BAD_IF_ANY,
    NEUTRAL,
    Board,
    PanelBuilder,
    bargauge_panel,
    datasource_variable,
    label_variable,
    organize,
    override,
    query,
    stat_panel,
    table_panel,
    timeseries_panel,
    transformation,
)
from dashboards.promql import UNIT, UNIT_OR_EMERGENCY_OFFICE, increase_from_zero, matchers

NEXT_DUE = "govclock_obligation_next_due_timestamp_seconds" + matchers(UNIT)
NO_ON_CALL = "govclock_no_on_call_total" + matchers(UNIT_OR_EMERGENCY_OFFICE)
ROSTER_GAP = "govclock_roster_gap" + matchers(UNIT_OR_EMERGENCY_OFFICE)
UNACKNOWLEDGED = "govclock_escalations_unacknowledged" + matchers(UNIT)
#: "Due in" colours: red within the hour, orange within four hours.
DUE_SOON = ((None, "red"), (3600.0, "orange"), (4 * 3600.0, "green"))


def oncall() -> dashboard.Dashboard:
    board = Board(
        "govclock-oncall",
        "govclock · On call",
        "What falls due next, what is breached and how the escalation pages are going.",
        [
            datasource_variable(),
            label_variable(
                "unit", "Unit", "govclock_obligations", "Owning units (政务公开责任单位)."
            ),
        ],
    )
    board.row("Now").add(*_now_panels())
    board.row("What falls due next").add(*_due_next_panels())
    board.row("Breaches").add(*_breaches_panels())
    board.row("Escalations").add(*_escalations_panels())
    return board.done()


def _now_panels() -> list[PanelBuilder]:
    """The "Now" row: the next deadline and counts at a glance."""
    return [
        stat_panel(
            "Next deadline in",
            "Time until the nearest pending deadline of the selected units.",
            query(f"min({NEXT_DUE}) - time()", instant=True),
            unit="dtdurations",
            steps=DUE_SOON,
        ),
        stat_panel(
            "Pending",
            "Open obligations waiting for evidence before their deadline.",
            query(
                "sum(govclock_obligations" + matchers('status="pending"', UNIT) + ") or vector(0)",
                instant=True,
            ),
        ),
        stat_panel(
            "Paused",
            "Open obligations whose clock is paused (e.g. a disclosure application waiting "
            "for the applicant).",
            query(
                "sum(govclock_obligations" + matchers('status="paused"', UNIT) + ") or vector(0)",
                instant=True,
            ),
        ),
        stat_panel(
            "Breached, still open",
            "Obligations whose deadline passed without evidence and that are not closed yet "
            "(status missed). Each is being escalated or was acknowledged.",
            query(
                "sum(govclock_obligations" + matchers('status="missed"', UNIT) + ") or vector(0)",
                instant=True,
            ),
            steps=BAD_IF_ANY,
        ),
        stat_panel(
            "Breaches in range",
            "Deadlines breached during the dashboard's time range.",
            query(
                "sum(increase(govclock_breaches_total" + matchers(UNIT) + "[$__range]))"
                " or vector(0)",
                instant=True,
            ),
            steps=BAD_IF_ANY,
        ),
        stat_panel(
            "Failed pages in range",
            "Notifications (SMS, voice, …) whose delivery failed during the time range, all "
            "units. Each failure moves to the next person or channel of its fallback chain.",
            query(
                'sum(increase(govclock_notifications_total{state="failed"}[$__range]))'
                " or vector(0)",
                instant=True,
            ),
            steps=BAD_IF_ANY,
        ),
    ]


def _due_next_panels() -> list[PanelBuilder]:
    """The "What falls due next" row: the nearest deadlines, pending per unit."""
    return [
        table_panel(
            "Next deadlines",
            "The 10 nearest pending deadlines of the selected units (each worker exports "
            "every unit's 5 nearest, so a unit's next deadlines show whatever other units "
            "have due sooner). Times in Beijing time.",
            query(f"bottomk(10, {NEXT_DUE}) * 1000", ref="A", instant=True, table=True),
            query(f"bottomk(10, {NEXT_DUE}) - time()", ref="B", instant=True, table=True),
            sort_by="Due in",
        )
        .span(16)
        .height(10)
        .with_transformation(transformation("merge"))
        .with_transformation(
            organize(
                ["Time", "rank", "instance", "job", "pod", "namespace", "__name__"],
                {"Value #A": "Due at", "Value #B": "Due in", "rule": "Rule", "unit": "Unit"},
                ["unit", "rule", "Value #A", "Value #B"],
            )
        )
        .override_by_name(*override("Due at", unit="dateTimeAsIso"))
        .override_by_name(
            *override(
                "Due in",
                unit="dtdurations",
                thresholds={
                    "mode": "absolute",
                    "steps": [{"color": c, "value": v} for v, c in DUE_SOON],
                },
                custom__cellOptions={"type": "color-text"},
            )
        ),
        bargauge_panel(
            "Pending by unit",
            "Open obligations per unit, most first.",
            query(
                "sort_desc(sum by (unit) (govclock_obligations"
                + matchers('status="pending"', UNIT)
                + "))",
                legend="{{unit}}",
                instant=True,
            ),
        ).span(8),
    ]


def _breaches_panels() -> list[PanelBuilder]:
    """The "Breaches" row: breaches over time and the ones still open."""
    return [
        timeseries_panel(
            "Breaches by unit",
            "Deadlines breached in each bar's interval (at least an hour), by unit.",
            query(
                "sum by (unit) (increase(govclock_breaches_total"
                + matchers(UNIT)
                + "[$__interval]))",
                legend="{{unit}}",
            ),
            bars=True,
            stacked=True,
            min_interval="1h",
        ),
        table_panel(
            "Breached and still open",
            "Obligations in status missed, by rule and unit: the ones on-call is chasing.",
            query(
                "sum by (rule, unit) (govclock_obligations"
                + matchers('status="missed"', UNIT)
                + ") > 0",
                instant=True,
                table=True,
            ),
            sort_by="Open breaches",
            descending=True,
        ).with_transformation(
            organize(
                ["Time"],
                {"rule": "Rule", "unit": "Unit", "Value": "Open breaches"},
                ["unit", "rule", "Value"],
            )
        ),
    ]


def _escalations_panels() -> list[PanelBuilder]:
    """The "Escalations" row: delivery states, paging delay, pages to nobody."""
    return [
        timeseries_panel(
            "Notifications by delivery state",
            "Pages and warnings by state in each bar's interval (all units: notifications "
            "carry no unit label). Acknowledged pages stop their escalation.",
            query(
                "sum by (state) (increase(govclock_notifications_total[$__interval]))",
                legend="{{state}}",
            ),
            bars=True,
            min_interval="1h",
        ),
        bargauge_panel(
            "Notifications in range, by state",
            "Sent, delivered, failed and acknowledged during the time range (all units). "
            "Far fewer acknowledged than sent breach pages means escalations are going "
            "unanswered.",
            query(
                "sum by (state) (increase(govclock_notifications_total[$__range]))",
                legend="{{state}}",
                instant=True,
            ),
            steps=NEUTRAL,
        )
        .span(6)
        .height(8),
        stat_panel(
            "Breach → first page, p90",
            "90th percentile, over the time range, of the time from the monitor noticing a "
            "breach to the first notification about it (an incident reported after its "
            "deadline counts from when it was reported, not from the deadline).",
            query(
                "histogram_quantile(0.9, sum by (le) "
                "(increase(govclock_detected_to_first_notification_seconds_bucket[$__range])))",
                instant=True,
            ),
            unit="s",
            steps=((None, "green"), (60.0, "orange"), (300.0, "red")),
            decimals=None,
        )
        .span(6)
        .height(8),
        count_table(
            "Units with nobody on call",
            "Warnings and pages that reached nobody during the time range, per roster unit "
            "(the selected units and the emergency office): the unit is not in the roster, "
            "nobody is on call at that level (a rotation not started yet, a gap), or every "
            "person and channel of the fallback chain failed. Anything above 0 is the "
            "GovclockNoOnCall alert. Units of the roster show 0; a unit missing from the "
            "roster appears with its first page.",
            "sort_desc(sum by (unit) (" + increase_from_zero(NO_ON_CALL, "$__range") + "))",
            {"unit": "Unit"},
            "Pages to nobody",
        ),
        count_table(
            "Nobody on call now",
            "Each level of each roster unit (the selected units and the emergency office): "
            "1 while nobody is on call there (a rotation not started yet, a gap between "
            "overrides), so a page now would reach nobody; checked every 30 s. Ten minutes "
            "of it is the GovclockRosterGap alert.",
            "sort_desc(max by (unit, level) (" + ROSTER_GAP + "))",
            {"unit": "Unit", "level": "Level"},
            "Nobody on call",
        ),
        count_table(
            "Waiting for acknowledgement",
            "Breached obligations whose escalation is still waiting for someone to acknowledge "
            "(by link, reply or the board), by rule, owning unit and the rung paged now. "
            "Repeats and the next rung follow the policy until someone does, or the "
            "obligation is fulfilled.",
            "sort_desc(sum by (rule, unit, level) (" + UNACKNOWLEDGED + "))",
            {"rule": "Rule", "unit": "Unit", "level": "Rung"},
            "Waiting",
        ),
        timeseries_panel(
            "Pages to nobody, by unit",
            "Warnings and pages that reached nobody in each bar's interval (at least an hour), "
            "by roster unit; units with none are not shown.",
            query(
                "sum by (unit) (" + increase_from_zero(NO_ON_CALL, "$__interval") + ") > 0",
                legend="{{unit}}",
            ),
            bars=True,
            stacked=True,
            min_interval="1h",
        ),
    ]


def count_table(
    title: str, description: str, expr: str, columns: dict[str, str], value: str
) -> table.Panel:
    """A half-width table of counts by ``columns`` (label -> column name, in order), the
    count in the column ``value``, red from 1."""
    return (
        table_panel(
            title,
            description,
            query(expr, instant=True, table=True),
            sort_by=value,
            descending=True,
        )
        .span(12)
        .with_transformation(organize(["Time"], {**columns, "Value": value}, [*columns, "Value"]))
        .override_by_name(
            *override(
                value,
                decimals=0,
                thresholds={
                    "mode": "absolute",
                    "steps": [{"color": c, "value": v} for v, c in BAD_IF_ANY],
                },
                custom__cellOptions={"type": "color-background"},
            )
        )
    )
