"""Pipeline health: workers and sweeper, ingest, timeliness (lag), notification delivery."""

from __future__ import annotations

from grafana_foundation_sdk.builders import dashboard

from dashboards.common import (
    BAD_IF_ANY,
    Board,
    PanelBuilder,
    datasource_variable,
    organize,
    override,
    query,
    stat_panel,
    table_panel,
    timeseries_panel,
)

#: The sweeper checks every 0.2 s; GovclockSweeperStalled fires after 30 s.
HEARTBEAT = ((None, "green"), (10.0, "orange"), (30.0, "red"))
#: GovclockSourceSilent's default period.
SOURCE_SILENT = ((None, "green"), (3 * 3600.0, "orange"), (6 * 3600.0, "red"))
#: GovclockNotifierFailing's threshold.
FAILED_RATIO = ((None, "green"), (0.05, "orange"), (0.2, "red"))

_FAILED = 'sum by (channel) (increase(govclock_notifications_total{state="failed"}[15m]))'
_SENT = 'sum by (channel) (increase(govclock_notifications_total{state="sent"}[15m]))'


def pipeline() -> dashboard.Dashboard:
    board = Board(
        "govclock-pipeline",
        "govclock · Pipeline health",
        "Workers and sweeper, ingest, timeliness of breach detection and paging, delivery.",
        [datasource_variable()],
    )
    board.row("Workers").add(*_workers_panels())
    board.row("Ingest").add(*_ingest_panels())
    board.row("Timeliness").add(*_timeliness_panels())
    board.row("Delivery").add(*_delivery_panels())
    return board.done()


def _workers_panels() -> list[PanelBuilder]:
    """The "Workers" row: readiness, sweeper heartbeats, rejected inputs."""
    return [
        stat_panel(
            "Workers ready",
            "Workers whose tables are recovered and ledgers rebuilt, of all workers scraped.",
            query("sum(govclock_ready)", legend="ready", ref="A", instant=True),
            query("count(govclock_ready)", legend="workers", ref="B", instant=True),
            steps=((None, "red"), (1.0, "green")),
        ).span(6),
        stat_panel(
            "Oldest sweeper heartbeat",
            "Age of the stalest worker's sweeper heartbeat (the sweeper runs every 0.2 s; "
            "older than 30 s is an alert).",
            query("time() - min(govclock_sweeper_heartbeat_timestamp_seconds)", instant=True),
            unit="s",
            steps=HEARTBEAT,
            decimals=1,
        ).span(6),
        stat_panel(
            "Calendar-assumed obligations",
            "Open obligations whose deadline rests on an assumed holiday calendar (next year's "
            "official calendar not loaded yet).",
            query("sum(govclock_calendar_assumed_obligations)", instant=True),
            steps=((None, "green"), (1.0, "blue")),
        ).span(6),
        stat_panel(
            "Rejected inputs in range",
            "Inputs refused during the time range (bad JSON or events, signatures, size, "
            "content type).",
            query(
                "sum(increase(govclock_events_rejected_total[$__range])) or vector(0)",
                instant=True,
            ),
            steps=BAD_IF_ANY,
        ).span(6),
        timeseries_panel(
            "Sweeper heartbeat age, per worker",
            "Seconds since each worker's sweeper last ran.",
            query("time() - govclock_sweeper_heartbeat_timestamp_seconds", legend="{{instance}}"),
            unit="s",
            steps=HEARTBEAT,
        ),
        timeseries_panel(
            "Ready, per worker",
            "1 once a worker's tables are recovered and its ledgers rebuilt.",
            query("govclock_ready", legend="{{instance}}"),
        )
        .min(0)
        .max(1),
    ]


def _ingest_panels() -> list[PanelBuilder]:
    """The "Ingest" row: events accepted and rejected, silent sources, effects."""
    return [
        timeseries_panel(
            "Events ingested, by type",
            "Events accepted by ingest per second.",
            query(
                "sum by (type) (rate(govclock_events_ingested_total[$__rate_interval]))",
                legend="{{type}}",
            ),
            unit="ops",
            stacked=True,
        ),
        timeseries_panel(
            "Inputs rejected, by reason",
            "Inputs refused per second (HTTP or topic), by reason class.",
            query(
                "sum by (reason) (rate(govclock_events_rejected_total[$__rate_interval]))",
                legend="{{reason}}",
            ),
            unit="ops",
            stacked=True,
        ),
        table_panel(
            "Sources: time since the last event",
            "Per source, how long ago it last sent an accepted event (newest of all workers). "
            "GovclockSourceSilent fires after the source's expected period (default 6 h).",
            query(
                "time() - max by (source) (govclock_source_last_event_timestamp_seconds)",
                instant=True,
                table=True,
            ),
            sort_by="Silent for",
            descending=True,
        )
        .with_transformation(
            organize(["Time"], {"source": "Source", "Value": "Silent for"}, ["source", "Value"])
        )
        .override_by_name(
            *override(
                "Silent for",
                unit="dtdurations",
                thresholds={
                    "mode": "absolute",
                    "steps": [{"color": c, "value": v} for v, c in SOURCE_SILENT],
                },
                custom__cellOptions={"type": "color-text"},
            )
        ),
        timeseries_panel(
            "Ledger effects, by kind",
            "Effects emitted by the ledgers per second (opened, warned, breached, met, late, …).",
            query(
                "sum by (kind) (rate(govclock_effects_total[$__rate_interval]))",
                legend="{{kind}}",
            ),
            unit="ops",
            stacked=True,
        ),
    ]


def _timeliness_panels() -> list[PanelBuilder]:
    """The "Timeliness" row: breach detection, first page and wake lag."""
    return [
        timeseries_panel(
            "Breach detection delay (rolling 1 h)",
            "From a deadline to the sweeper noticing its breach: p50 and p99 of the breaches "
            "in the preceding hour. The target is under 1 s.",
            query(
                "histogram_quantile(0.5, sum by (le) "
                "(increase(govclock_breach_detection_delay_seconds_bucket[1h])))",
                legend="p50",
                ref="A",
            ),
            query(
                "histogram_quantile(0.99, sum by (le) "
                "(increase(govclock_breach_detection_delay_seconds_bucket[1h])))",
                legend="p99",
                ref="B",
            ),
            unit="s",
            steps=((None, "green"), (1.0, "red")),
        ).span(8),
        timeseries_panel(
            "Breach noticed → first notification (rolling 1 h)",
            "From the sweeper noticing a breach to the first notification about it accepted by "
            "its channel: p50 and p90 per rule over the preceding hour. The monitor's own "
            "delay: a trigger reported after its deadline counts from when it was noticed.",
            query(
                "histogram_quantile(0.5, sum by (le, rule) "
                "(increase(govclock_detected_to_first_notification_seconds_bucket[1h])))",
                legend="p50 {{rule}}",
                ref="A",
            ),
            query(
                "histogram_quantile(0.9, sum by (le, rule) "
                "(increase(govclock_detected_to_first_notification_seconds_bucket[1h])))",
                legend="p90 {{rule}}",
                ref="B",
            ),
            unit="s",
        ).span(8),
        timeseries_panel(
            "Escalation wake lag (rolling 1 h)",
            "From the instant an escalation asked to be woken (a repeat, the next rung, a send "
            "to retry) to the notifier waking it: p50 and p99 over the preceding hour. The "
            "escalation timer checks every 0.2 s; seconds here mean repeats and escalations "
            "go out late.",
            query(
                "histogram_quantile(0.5, sum by (le) "
                "(increase(govclock_escalation_wake_lag_seconds_bucket[1h])))",
                legend="p50",
                ref="A",
            ),
            query(
                "histogram_quantile(0.99, sum by (le) "
                "(increase(govclock_escalation_wake_lag_seconds_bucket[1h])))",
                legend="p99",
                ref="B",
            ),
            unit="s",
            steps=((None, "green"), (1.0, "orange"), (5.0, "red")),
        ).span(8),
    ]


def _delivery_panels() -> list[PanelBuilder]:
    """The "Delivery" row: notifications by channel and state, failure ratio."""
    return [
        timeseries_panel(
            "Notifications, by channel and state",
            "Notifications per second by channel (sms, voice, …) and delivery state.",
            query(
                "sum by (channel, state) (rate(govclock_notifications_total[$__rate_interval]))",
                legend="{{channel}} {{state}}",
            ),
            unit="ops",
        ),
        timeseries_panel(
            "Failed / sent, by channel (rolling 15 min)",
            "Share of the notifications sent in the preceding 15 minutes whose delivery "
            "failed. GovclockNotifierFailing fires above 20 %.",
            # A channel that sent but never failed has no failed series: 0, not nothing.
            query(f"({_FAILED} or {_SENT} * 0) / ({_SENT} > 0)", legend="{{channel}}"),
            unit="percentunit",
            steps=FAILED_RATIO,
        ),
    ]
