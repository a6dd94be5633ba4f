"""PromQL used by more than one panel: selectors with the dashboard variables, on-time rates.

Metric names and labels are those of :mod:`metrics.collectors` (tests/test_dashboards.py checks
every name). ``govclock_obligations`` is the ledgers' state at scrape time (statuses
pending, paused, met, late, missed, unverifiable, cancelled); the counters count what
happened.
"""

from __future__ import annotations

#: Label matchers for the dashboard variables (``All`` is ``.*``).
UNIT = 'unit=~"$unit"'
RULE = 'rule=~"$rule"'
#: The selected units and the emergency office (paged for every unit's breaches).
UNIT_OR_EMERGENCY_OFFICE = 'unit=~"$unit|emergency_office"'


def matchers(*parts: str) -> str:
    """``{a, b}`` from matcher strings, skipping empty ones."""
    return "{" + ", ".join(p for p in parts if p) + "}"


def sum_by(labels: str, inner: str) -> str:
    """``sum by (labels) (inner)``, or ``sum(inner)`` for no labels."""
    return f"sum by ({labels}) ({inner})" if labels else f"sum({inner})"


def on_time_now(by: str, *filters: str) -> str:
    """Share of the decided obligations in the ledgers that were met on time, now.

    ``met / (met + late + missed)`` over ``govclock_obligations``; unverifiable (published
    with a date only) and open obligations are left out. A group with no ``met`` obligation
    shows 0 rather than disappearing (the ``or … * 0`` term).
    """
    met = "govclock_obligations" + matchers('status="met"', *filters)
    not_met = "govclock_obligations" + matchers('status=~"late|missed"', *filters)
    decided = "govclock_obligations" + matchers('status=~"met|late|missed"', *filters)
    return f"{sum_by(by, f'{met} or {not_met} * 0')} / {sum_by(by, decided)}"


def on_time_over(window: str, by: str, *filters: str) -> str:
    """Share of the obligations decided in each ``window`` that were met on time.

    ``met / (met + breached)`` from the counters: every obligation whose deadline passed
    without evidence is counted once in ``govclock_breaches_total`` when it is breached,
    whether it stays missed or is closed late afterwards, so ``late`` is not added again
    (that would count those obligations twice). Points with nothing decided are empty.
    """
    met = (
        "increase(govclock_fulfilments_total" + matchers('outcome="met"', *filters) + f"[{window}])"
    )
    breached = "increase(govclock_breaches_total" + matchers(*filters) + f"[{window}])"
    numerator = sum_by(by, f"{met} or {breached} * 0")
    denominator = sum_by(by, f"{met} or {breached}")
    return f"{numerator} / ({denominator} > 0)"


def increase_from_zero(selector: str, window: str) -> str:
    """``increase(selector[window])``, also counting series that were born inside the window.

    A counter with labels is exported only from its first increment, so its first sample
    is already 1 (or more) and ``increase()``, which only compares samples, never counts
    that first occurrence. Series that existed ``window`` ago use ``increase()``; series
    born since count their whole value (they started from 0). A worker restart resets the
    counters, which ``increase()`` handles as usual.
    """
    return f"(increase({selector}[{window}]) and {selector} offset {window}) or {selector}"
