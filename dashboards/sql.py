"""SQL targets and variables for Grafana's PostgreSQL data source.

grafana-foundation-sdk has no builder for the SQL data sources, so this is the small part of
their query model the archive board uses: raw SQL in code mode (``rawSql``, ``rawQuery``,
``editorMode: code``), formatted as a table or as time series (columns ``time``, ``metric``
and the values). Grafana fills the template variables in the browser (a multi-value or
include-all variable becomes a comma-separated list of quoted literals, ``'a','b'``) and the
data source expands its macros (``$__timeFilter(column)``) on the server.
"""

from __future__ import annotations

import enum

from grafana_foundation_sdk.builders import dashboard
from grafana_foundation_sdk.cog import builder as cogbuilder
from grafana_foundation_sdk.cog import variants as cogvariants
from grafana_foundation_sdk.models import dashboard as models

#: The plugin id of Grafana's bundled PostgreSQL data source (formerly ``postgres``).
POSTGRES = "grafana-postgresql-datasource"
#: Every SQL panel and variable uses the data source picked in the ``datasource`` variable.
POSTGRES_SOURCE = models.DataSourceRef(type_val=POSTGRES, uid="${datasource}")


class SqlFormat(enum.StrEnum):
    """How Grafana reads the result: rows as they are, or one series per ``metric``."""

    TABLE = "table"
    TIME_SERIES = "time_series"


class SqlDataquery(cogvariants.Dataquery):
    """One SQL target of a panel, as Grafana's SQL data sources store it."""

    def __init__(
        self,
        raw_sql: str = "",
        ref_id: str = "A",
        format_val: SqlFormat = SqlFormat.TABLE,
        datasource: models.DataSourceRef = POSTGRES_SOURCE,
    ) -> None:
        self.raw_sql = raw_sql
        self.ref_id = ref_id
        self.format_val = format_val
        self.datasource = datasource

    def to_json(self) -> dict[str, object]:
        return {
            "datasource": self.datasource,
            "editorMode": "code",
            "format": str(self.format_val),
            "rawQuery": True,
            "rawSql": self.raw_sql,
            "refId": self.ref_id,
        }


class SqlQuery(cogbuilder.Builder[cogvariants.Dataquery]):
    """The builder of a :class:`SqlDataquery` (what the panel helpers' targets take)."""

    def __init__(self, raw_sql: str) -> None:
        self._internal = SqlDataquery(raw_sql=raw_sql)

    def build(self) -> SqlDataquery:
        return self._internal

    def ref_id(self, ref_id: str) -> SqlQuery:
        self._internal.ref_id = ref_id
        return self

    def format(self, format_val: SqlFormat) -> SqlQuery:
        self._internal.format_val = format_val
        return self


def sql_query(raw_sql: str, ref: str = "A", time_series: bool = False) -> SqlQuery:
    """A raw SQL target on the ``datasource`` variable (a table unless ``time_series``)."""
    return (
        SqlQuery(raw_sql)
        .ref_id(ref)
        .format(SqlFormat.TIME_SERIES if time_series else SqlFormat.TABLE)
    )


def sql_variable(name: str, label: str, raw_sql: str, description: str) -> dashboard.QueryVariable:
    """A multi-value variable over the first column of ``raw_sql``, All selected by default.

    No custom all value: Grafana puts in every option, quoted (``'a','b'``), so the panels'
    ``= ANY (ARRAY[$name]::text[])`` sees exactly the values listed."""
    return (
        dashboard.QueryVariable(name)
        .label(label)
        .description(description)
        .datasource(POSTGRES_SOURCE)
        .query(raw_sql)
        .refresh(models.VariableRefresh.ON_TIME_RANGE_CHANGED)
        .sort(models.VariableSort.ALPHABETICAL_CASE_INSENSITIVE_ASC)
        .multi(True)
        .include_all(True)
        .current(models.VariableOption(selected=True, text="All", value="$__all"))
    )
