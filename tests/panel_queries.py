"""Every PromQL query of the generated dashboards, with Grafana's variables filled in.

Reads ``dashboards/generated/*.json`` (what Grafana imports): all targets of all panels,
including panels nested in (collapsed) rows. :func:`interpolate` replaces the template
variables the way Grafana would for a dashboard opened with its default selections, over
a time range of ``range_s`` seconds, on a Prometheus data source whose scrape interval is
``scrape_s``:

============================ =============================================================
``$unit``, ``$rule``, …      query variables: the default selection is All, so the
                             variable's ``allValue`` (``.*``)
``$window``, …               custom variables: their current (default) value (``7d``)
``$__range``                 the length of the time range, in whole seconds
``$__interval``              the panel's minimum interval (``interval``, e.g. ``1h``) if
                             it has one, else the scrape interval (over a short range
                             Grafana's range/max-data-points is below both)
``$__rate_interval``         ``max($__interval + scrape interval, 4 × scrape interval)``,
                             Grafana's definition
============================ =============================================================

Both ``$name`` and ``${name}`` are replaced; a variable left over is an error.
"""

from __future__ import annotations

import json
import re
from collections.abc import Iterator, Mapping
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from tests.promserver import parse_duration, seconds_text

GENERATED = Path(__file__).resolve().parents[1] / "dashboards" / "generated"

#: ``metric`` or ``metric{matchers}``: the vector selectors of a govclock query.
_SELECTOR = re.compile(r"\b(govclock_[a-z0-9_]+)(\s*\{[^}]*\})?")
_VARIABLE = re.compile(r"\$\{(\w+)\}|\$(\w+)")


@dataclass(frozen=True)
class Target:
    """One query of one panel."""

    dashboard: str  # file stem: oncall, compliance, pipeline
    panel: str  # the panel's title
    ref_id: str
    expr: str  # as in the JSON, variables and all
    instant: bool  # an instant query (else a range query)
    interval: str | None  # the panel's minimum interval
    variables: Mapping[str, str]  # the dashboard's variables at their default selection

    @property
    def where(self) -> str:
        return f"{self.dashboard} · {self.panel} [{self.ref_id}]"

    def interpolate(self, range_s: float, scrape_s: float) -> str:
        interval = parse_duration(self.interval) if self.interval else scrape_s
        builtin = {
            "__range": seconds_text(range_s),
            "__interval": self.interval or seconds_text(scrape_s),
            "__rate_interval": seconds_text(max(interval + scrape_s, 4 * scrape_s)),
        }
        values = {**self.variables, **builtin}

        def value(match: re.Match[str]) -> str:
            name = match.group(1) or match.group(2)
            if name not in values:
                raise KeyError(f"{self.where}: no value for ${name} in {self.expr!r}")
            return values[name]

        return _VARIABLE.sub(value, self.expr)


def panels(items: list[dict[str, Any]]) -> Iterator[dict[str, Any]]:
    """Every panel that is not a row, including those inside rows (collapsed or not)."""
    for panel in items:
        if panel.get("type") != "row":
            yield panel
        yield from panels(panel.get("panels") or [])


def default_variables(board: Mapping[str, Any]) -> dict[str, str]:
    """Each template variable's value at the dashboard's default selection."""
    values: dict[str, str] = {}
    for variable in board.get("templating", {}).get("list", []):
        kind, name = variable["type"], variable["name"]
        current = variable.get("current") or {}
        selected = current.get("value")
        if isinstance(selected, list):
            selected = selected[0] if len(selected) == 1 else "|".join(selected)
        if kind == "datasource":
            continue
        if selected in ("$__all", None) and variable.get("includeAll"):
            values[name] = variable.get("allValue") or ".*"
        elif isinstance(selected, str):
            values[name] = selected
        else:
            raise ValueError(f"{board.get('uid')}: variable {name!r} has no default value")
    return values


def targets(directory: Path = GENERATED) -> list[Target]:
    """The PromQL targets of every generated board (the archive board's SQL targets are
    tested against PostgreSQL in tests/test_archive_dashboard.py)."""
    out = []
    for path in sorted(directory.glob("*.json")):
        board = json.loads(path.read_text(encoding="utf-8"))
        variables = default_variables(board)
        for panel in panels(board.get("panels", [])):
            for target in panel.get("targets", []):
                if "expr" not in target:
                    continue  # a SQL target
                out.append(
                    Target(
                        dashboard=path.stem,
                        panel=panel["title"],
                        ref_id=target.get("refId", "?"),
                        expr=target["expr"],
                        instant=bool(target.get("instant")) and not target.get("range"),
                        interval=panel.get("interval") or None,
                        variables=variables,
                    )
                )
    return out


def selectors(expr: str) -> list[str]:
    """The distinct govclock vector selectors in an (interpolated) expression, in order."""
    seen: dict[str, None] = {}
    for name, matchers in _SELECTOR.findall(expr):
        seen.setdefault(name + re.sub(r"\s+", " ", matchers.strip()), None)
    return list(seen)
