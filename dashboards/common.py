"""Shared pieces of the dashboards: datasource, variables, panel defaults, layout.

Every panel queries the data source chosen in the ``datasource`` variable (Prometheus, or
PostgreSQL for the archive board: ``datasource=`` of the panel helpers), so an imported
dashboard works with whatever the data source is called in that Grafana.
"""

from __future__ import annotations

from collections.abc import Sequence

from grafana_foundation_sdk.builders import (
    bargauge,
    common,
    dashboard,
    prometheus,
    stat,
    table,
    timeseries,
)
from grafana_foundation_sdk.cog import builder as cogbuilder
from grafana_foundation_sdk.cog import variants as cogvariants
from grafana_foundation_sdk.models import common as common_models
from grafana_foundation_sdk.models import dashboard as models
from grafana_foundation_sdk.models import prometheus as prometheus_models

#: Every panel and variable uses the data source picked in the ``datasource`` variable.
DATASOURCE = models.DataSourceRef(type_val="prometheus", uid="${datasource}")
#: Tag shared by the govclock dashboards (the dashboard links list them by this tag).
TAG = "govclock"
#: Deadlines are set in Beijing time (working days, 5-hour windows): show times there.
TIMEZONE = "Asia/Shanghai"

Threshold = tuple[float | None, str]
#: What a panel function returns and :meth:`Board.add` takes: a panel's builder.
PanelBuilder = cogbuilder.Builder[models.Panel]
#: A query of a panel: PromQL (:func:`query`) or SQL (``dashboards.sql.sql_query``).
Target = cogbuilder.Builder[cogvariants.Dataquery]


def datasource_variable(
    kind: str = "prometheus",
    description: str = "The Prometheus that scrapes the govclock workers.",
) -> dashboard.DatasourceVariable:
    """The ``datasource`` variable: any data source of plugin type ``kind``."""
    return (
        dashboard.DatasourceVariable("datasource")
        .label("Data source")
        .type(kind)
        .description(description)
    )


def label_variable(name: str, label: str, metric: str, description: str) -> dashboard.QueryVariable:
    """A multi-value variable over the values of label ``name`` of ``metric`` (All = ``.*``)."""
    return (
        dashboard.QueryVariable(name)
        .label(label)
        .description(description)
        .datasource(DATASOURCE)
        .query(f"label_values({metric}, {name})")
        .refresh(models.VariableRefresh.ON_TIME_RANGE_CHANGED)
        .sort(models.VariableSort.ALPHABETICAL_CASE_INSENSITIVE_ASC)
        .multi(True)
        .include_all(True)
        .all_value(".*")
        .current(models.VariableOption(selected=True, text="All", value="$__all"))
    )


def window_variable() -> dashboard.CustomVariable:
    """How far back each point of the compliance-over-time panels looks."""
    return (
        dashboard.CustomVariable("window")
        .label("Window")
        .description("Each point counts the obligations closed or breached in this window.")
        .values("1d,7d,30d")
        .current(models.VariableOption(selected=True, text="7d", value="7d"))
    )


def query(
    expr: str, legend: str = "", ref: str = "A", instant: bool = False, table: bool = False
) -> prometheus.Dataquery:
    q = prometheus.Dataquery().expr(expr).ref_id(ref).datasource(DATASOURCE)
    q = q.legend_format(legend) if legend else q
    q = q.instant() if instant else q.range()
    if table:
        q = q.format(prometheus_models.PromQueryFormat.TABLE)
    return q


def thresholds(steps: Sequence[Threshold]) -> dashboard.ThresholdsConfig:
    """Absolute thresholds; the first step is the base (value ``None``)."""
    return (
        dashboard.ThresholdsConfig()
        .mode(models.ThresholdsMode.ABSOLUTE)
        .steps([models.Threshold(value=value, color=color) for value, color in steps])
    )


#: Colours for "more is worse" counts (breaches, failures) and "more is better" ratios.
BAD_IF_ANY: Sequence[Threshold] = ((None, "green"), (1, "red"))
NEUTRAL: Sequence[Threshold] = ((None, "blue"),)
ON_TIME: Sequence[Threshold] = ((None, "red"), (0.9, "orange"), (0.98, "green"))


def stat_panel(
    title: str,
    description: str,
    *targets: Target,
    unit: str = "short",
    steps: Sequence[Threshold] = NEUTRAL,
    decimals: int | None = 0,
    datasource: models.DataSourceRef = DATASOURCE,
) -> stat.Panel:
    panel = (
        stat.Panel()
        .title(title)
        .description(description)
        .datasource(datasource)
        .unit(unit)
        .thresholds(thresholds(steps))
        .color_mode(common_models.BigValueColorMode.VALUE)
        .graph_mode(common_models.BigValueGraphMode.NONE)
        .reduce_options(common.ReduceDataOptions().calcs(["lastNotNull"]).values(False))
        .height(4)
        .span(4)
    )
    if decimals is not None:
        panel = panel.decimals(decimals)
    for target in targets:
        panel = panel.with_target(target)
    return panel


def timeseries_panel(
    title: str,
    description: str,
    *targets: Target,
    unit: str = "short",
    bars: bool = False,
    stacked: bool = False,
    steps: Sequence[Threshold] | None = None,
    min_interval: str | None = None,
    datasource: models.DataSourceRef = DATASOURCE,
) -> timeseries.Panel:
    panel = (
        timeseries.Panel()
        .title(title)
        .description(description)
        .datasource(datasource)
        .unit(unit)
        .line_width(1)
        .fill_opacity(80 if bars else 10)
        .draw_style(
            common_models.GraphDrawStyle.BARS if bars else common_models.GraphDrawStyle.LINE
        )
        .show_points(common_models.VisibilityMode.NEVER)
        .legend(
            common.VizLegendOptions()
            .display_mode(common_models.LegendDisplayMode.TABLE)
            .placement(common_models.LegendPlacement.RIGHT)
            .show_legend(True)
            .calcs(["lastNotNull", "max"])
        )
        .tooltip(
            common.VizTooltipOptions()
            .mode(common_models.TooltipDisplayMode.MULTI)
            .sort(common_models.SortOrder.DESCENDING)
        )
        .height(8)
        .span(12)
    )
    if stacked:
        panel = panel.stacking(
            common.StackingConfig().mode(common_models.StackingMode.NORMAL).group("A")
        )
    if steps is not None:
        panel = panel.thresholds(thresholds(steps)).thresholds_style(
            common.GraphThresholdsStyleConfig().mode(common_models.GraphThresholdsStyleMode.DASHED)
        )
    if min_interval is not None:
        panel = panel.interval(min_interval)
    for target in targets:
        panel = panel.with_target(target)
    return panel


def bargauge_panel(
    title: str,
    description: str,
    target: prometheus.Dataquery,
    unit: str = "short",
    steps: Sequence[Threshold] = NEUTRAL,
    decimals: int | None = 0,
    maximum: float | None = None,
) -> bargauge.Panel:
    panel = (
        bargauge.Panel()
        .title(title)
        .description(description)
        .datasource(DATASOURCE)
        .unit(unit)
        .min(0)
        .thresholds(thresholds(steps))
        .display_mode(common_models.BarGaugeDisplayMode.BASIC)
        .orientation(common_models.VizOrientation.HORIZONTAL)
        .show_unfilled(True)
        .reduce_options(common.ReduceDataOptions().calcs(["lastNotNull"]).values(False))
        .with_target(target)
        .height(10)
        .span(12)
    )
    if maximum is not None:
        panel = panel.max(maximum)
    if decimals is not None:
        panel = panel.decimals(decimals)
    return panel


def transformation(
    transform_id: str, options: dict[str, object] | None = None
) -> models.DataTransformerConfig:
    return models.DataTransformerConfig(id_val=transform_id, options=options or {})


def organize(
    exclude: Sequence[str], rename: dict[str, str], order: Sequence[str] = ()
) -> models.DataTransformerConfig:
    """Grafana's "Organize fields" transformation: hide, rename and order table columns.

    ``exclude`` and ``order`` name the fields as the query returns them (before renaming)."""
    return transformation(
        "organize",
        {
            "excludeByName": {name: True for name in exclude},
            "renameByName": dict(rename),
            "indexByName": {name: i for i, name in enumerate(order)},
        },
    )


def table_panel(
    title: str,
    description: str,
    *targets: Target,
    unit: str = "short",
    sort_by: str | None = None,
    descending: bool = False,
    datasource: models.DataSourceRef = DATASOURCE,
) -> table.Panel:
    panel = (
        table.Panel()
        .title(title)
        .description(description)
        .datasource(datasource)
        .unit(unit)
        .filterable(True)
        .height(8)
        .span(12)
    )
    if sort_by is not None:
        panel = panel.sort_by(
            [common.TableSortByFieldState().display_name(sort_by).desc(descending)]
        )
    for target in targets:
        panel = panel.with_target(target)
    return panel


def override(name: str, **properties: object) -> tuple[str, list[models.DynamicConfigValue]]:
    """Field overrides by column name: ``unit=...`` and ``custom.x=...`` style properties."""
    return name, [
        models.DynamicConfigValue(id_val=key.replace("__", "."), value=value)
        for key, value in properties.items()
    ]


class _Numbered(cogbuilder.Builder[models.Panel]):
    """A panel with its id set (Grafana needs ids unique within a dashboard)."""

    def __init__(self, panel: cogbuilder.Builder[models.Panel], panel_id: int) -> None:
        self._panel = panel
        self._id = panel_id

    def build(self) -> models.Panel:
        built = self._panel.build()
        built.id_val = self._id
        return built


class Board:
    """A dashboard being laid out: rows of panels whose widths add up to 24, ids in order."""

    def __init__(
        self,
        uid: str,
        title: str,
        description: str,
        variables: Sequence[cogbuilder.Builder[models.VariableModel]],
        time: tuple[str, str] = ("now-24h", "now"),
        refresh: str = "1m",
    ) -> None:
        self._next_id = 1
        self._dashboard = (
            dashboard.Dashboard(title)
            .uid(uid)
            .description(description)
            .tags([TAG])
            .editable()
            .timezone(TIMEZONE)
            .week_start("monday")
            .tooltip(models.DashboardCursorSync.CROSSHAIR)
            .refresh(refresh)
            .time(*time)
            .link(
                dashboard.DashboardLink("govclock")
                .type(models.DashboardLinkType.DASHBOARDS)
                .tags([TAG])
                .as_dropdown(True)
                .include_vars(True)
                .keep_time(True)
            )
            .variables(list(variables))
        )

    def row(self, title: str) -> Board:
        self._dashboard = self._dashboard.with_row(dashboard.Row(title).id(self._take_id()))
        return self

    def add(self, *panels: cogbuilder.Builder[models.Panel]) -> Board:
        for panel in panels:
            self._dashboard = self._dashboard.with_panel(_Numbered(panel, self._take_id()))
        return self

    def done(self) -> dashboard.Dashboard:
        """The dashboard builder (``.build()`` gives the model that is written as JSON)."""
        return self._dashboard

    def _take_id(self) -> int:
        self._next_id += 1
        return self._next_id - 1
