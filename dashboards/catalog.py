"""The metrics govclock exposes, read from :mod:`metrics.collectors`, and the names a query uses.

The tests check every dashboard query and alert expression against :func:`exposed` so that
renaming a metric or a label in metrics/collectors.py without updating the dashboards fails.
"""

from __future__ import annotations

import re
from collections.abc import Iterator
from types import SimpleNamespace

from prometheus_client import CollectorRegistry
from prometheus_client.metrics import MetricWrapperBase

from metrics.collectors import EscalationCollector, LedgerCollector, Metrics

#: Sample names Prometheus stores for each metric type (``name`` is the family name).
_SUFFIXES = {
    "counter": ("_total", "_created"),
    "gauge": ("",),
    "histogram": ("_bucket", "_count", "_sum", "_created"),
    "summary": ("", "_count", "_sum", "_created"),
    "info": ("_info",),
}
#: Labels Prometheus adds to every scraped series, and the histogram bucket label.
TARGET_LABELS = frozenset({"instance", "job", "namespace", "pod", "service", "container"})

_METRIC = re.compile(r"\bgovclock_[a-z0-9_]+")
_SELECTOR = re.compile(r"\b(govclock_[a-z0-9_]+)\s*\{([^}]*)\}")
_MATCHER = re.compile(r"([a-zA-Z_][a-zA-Z0-9_]*)\s*(?:=~|!~|!=|=)")
_GROUPING = re.compile(r"\b(?:by|without|on|ignoring|group_left|group_right)\s*\(([^)]*)\)")


def exposed() -> dict[str, frozenset[str]]:
    """Every sample name govclock exposes → its label names (a fresh registry)."""
    registry = CollectorRegistry()
    metrics = Metrics(registry)
    labels: dict[str, tuple[str, ...]] = {}
    for value in vars(metrics).values():
        if isinstance(value, MetricWrapperBase):
            labels[value._name] = tuple(value._labelnames)
    # One made-up obligation, so that the collector's families carry samples with labels.
    sample = SimpleNamespace(
        rule=SimpleNamespace(id="r"), status="pending", unit="u", due_at=0, calendar_assumed=True
    )
    registry.register(LedgerCollector(lambda: [sample]))
    registry.register(EscalationCollector(lambda: [("r", "u", 1)]))
    out: dict[str, frozenset[str]] = {}
    for family in registry.collect():
        names = set(labels.get(family.name, ()) or labels.get(family.name + "_total", ()))
        for s in family.samples:
            names |= set(s.labels) - {"le"}
        for suffix in _SUFFIXES[family.type]:
            bucket = {"le"} if suffix == "_bucket" else set()
            out[family.name + suffix] = frozenset(names | bucket)
    return out


def metric_names(expr: str) -> set[str]:
    """The ``govclock_*`` metric names a PromQL expression mentions."""
    return set(_METRIC.findall(expr))


def selector_labels(expr: str) -> Iterator[tuple[str, str]]:
    """(metric, label) for every label matcher inside a ``govclock_*{…}`` selector."""
    for metric, body in _SELECTOR.findall(expr):
        for label in _MATCHER.findall(body):
            yield metric, label


def grouping_labels(expr: str) -> set[str]:
    """Label names in ``by (…)``, ``without (…)``, ``on (…)``, ``group_left (…)`` clauses."""
    return {
        label.strip()
        for body in _GROUPING.findall(expr)
        for label in body.split(",")
        if label.strip()
    }
