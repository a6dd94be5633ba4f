"""Metrics: effects are counted by bounded labels; ledger state is read exactly at scrape."""

from __future__ import annotations

import pytest
from prometheus_client import CollectorRegistry, generate_latest

from config.packs import load_rulebook
from deadlines.calendar import WorkCalendar
from deadlines.ledger import Ledger
from metrics.collectors import NEXT_DUE_RANKS, LedgerCollector, Metrics
from schemas.events import parse_event


def scrape(registry: CollectorRegistry) -> dict[str, float]:
    out = {}
    for line in generate_latest(registry).decode().splitlines():
        if line and not line.startswith("#"):
            name, value = line.rsplit(" ", 1)
            out[name] = float(value)
    return out


def test_effects_and_ledger_state_show_up_with_bounded_labels() -> None:
    registry = CollectorRegistry()
    metrics = Metrics(registry)
    ledger = Ledger(load_rulebook(), WorkCalendar.official())
    registry.register(LedgerCollector(ledger.obligations))
    event = parse_event(
        {
            "event_id": "e1",
            "type": "incident.reported",
            "unit": "u1",
            "incident_id": "I-1",
            "occurred_at": "2026-03-01T10:00:00+08:00",
            "title": "t",
            "severity": "II",
        }
    )
    metrics.observe_effects(ledger.apply(event), {})
    # Opening creates the pair's breach counter at 0, so the first breach is an increase.
    assert scrape(registry)['govclock_breaches_total{rule="first_release_5h",unit="u1"}'] == 0
    metrics.observe_effects(ledger.tick(1772352000), {})  # 2026-03-01T16:00+08:00, past 5 h
    got = scrape(registry)
    assert got['govclock_effects_total{kind="opened",rule="first_release_5h"}'] == 1
    assert got['govclock_breaches_total{rule="first_release_5h",unit="u1"}'] == 1
    assert got['govclock_obligations{rule="first_release_5h",status="missed",unit="u1"}'] == 1
    assert got["govclock_breach_detection_delay_seconds_count"] == 1
    # Labels never carry an obligation or incident id.
    assert not any("I-1" in name for name in got)


def test_time_to_fulfil_is_the_fraction_of_the_window_used() -> None:
    metrics = Metrics(CollectorRegistry())
    ledger = Ledger(load_rulebook(), WorkCalendar.official())
    incident = {
        "event_id": "e1",
        "type": "incident.reported",
        "unit": "u1",
        "incident_id": "I-1",
        "occurred_at": "2026-03-01T10:00:00+08:00",
        "title": "t",
        "severity": "II",
    }
    release = {
        "event_id": "p1",
        "type": "document.published",
        "unit": "u1",
        "publication_id": "P-1",
        "published_at": "2026-03-01T12:30:00+08:00",
        "kind": "press_release",
        "channel": "portal",
        "refs": {"incident_id": "I-1"},
        "url": "https://example.gov.cn/p1",
    }
    for data in (incident, release):
        effects = ledger.apply(parse_event(data))
        windows = {
            fx.obligation_id: (ob.start, ob.due_at)
            for fx in effects
            if (ob := ledger.get(fx.obligation_id)) is not None
        }
        metrics.observe_effects(effects, windows)
    got = scrape(metrics.registry)
    # met 2.5 h into the 5 h window: one sample of 0.5, in the 0.5 bucket and not below
    rule = 'rule="first_release_5h"'
    assert got[f"govclock_time_to_fulfil_ratio_count{{{rule}}}"] == 1
    assert got[f"govclock_time_to_fulfil_ratio_sum{{{rule}}}"] == pytest.approx(0.5)
    assert got[f'govclock_time_to_fulfil_ratio_bucket{{le="0.25",{rule}}}'] == 0


def test_next_deadlines_are_per_unit_so_a_quiet_unit_still_shows_its_next() -> None:
    """A busy unit's many near deadlines do not hide another unit's next one."""
    registry = CollectorRegistry()
    ledger = Ledger(load_rulebook(), WorkCalendar.official())
    registry.register(LedgerCollector(ledger.obligations))
    for i in range(12):  # busy: 12 incidents, 5-hour windows ending within the day
        ledger.apply(
            parse_event(
                {
                    "event_id": f"busy-{i}",
                    "type": "incident.reported",
                    "unit": "busy",
                    "incident_id": f"I-{i}",
                    "occurred_at": f"2026-03-02T{8 + i:02d}:00:00+08:00",
                    "title": "t",
                    "severity": "II",
                }
            )
        )
    ledger.apply(  # quiet: one document, 10 working days
        parse_event(
            {
                "event_id": "quiet-1",
                "type": "document.issued",
                "unit": "quiet",
                "document_id": "D-1",
                "issued_at": "2026-03-02",
                "kind": "normative",
                "disclosure": "proactive",
                "title": "t",
            }
        )
    )
    name = "govclock_obligation_next_due_timestamp_seconds"
    got = {k: v for k, v in scrape(registry).items() if k.startswith(name)}
    busy = sorted((v, k) for k, v in got.items() if 'unit="busy"' in k)
    assert len(busy) == NEXT_DUE_RANKS  # each unit's nearest only
    assert [k.split('rank="')[1].split('"')[0] for _, k in busy] == [
        str(r) for r in range(1, NEXT_DUE_RANKS + 1)
    ]  # ranked by due time within the unit
    quiet = [k for k in got if 'unit="quiet"' in k]
    assert quiet == [f'{name}{{rank="1",rule="online_posting_10wd",unit="quiet"}}']
