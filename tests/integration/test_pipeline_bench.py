"""`govclock bench --pipeline` with two workers: its accounting, not its speed.

The bench starts real `govclock run` workers on one embedded broker, produces a year's mix
to the events topic and stops its clock once the workers' summed stats say every event was
taken and every routed record applied. If the sum were wrong (one worker's stats only, say)
the bench would stop early or never; so this checks that the two workers both applied records,
that nothing routed was left unapplied, and that every breach probe reached the
notifications topic. Figures are printed by the bench itself, never asserted here.
"""

from __future__ import annotations

import pytest

from govclock.bench_pipeline import run_pipeline_bench


@pytest.mark.timeout(240)
def test_two_workers_apply_everything_routed_and_every_probe_breaches() -> None:
    result = run_pipeline_bench(
        events=3000, seed=11, webhooks=50, workers=2, probes=20, probe_spread_s=2
    )

    assert result["workers"] == 2
    assert result["events"] >= 3000
    assert result["records_applied"] >= result["records_routed"] > result["events"] // 2
    assert result["effects_opened"] > 0
    assert result["breach_records_seen"] == result["breach_probes"] == 20
    assert len(result["records_applied_by_worker"]) == 2
    assert min(result["records_applied_by_worker"]) > 0  # both owned partitions
    assert result["compute_only_events_per_second"] > 0
