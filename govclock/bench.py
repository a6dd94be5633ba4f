"""``govclock bench``: the core alone (no broker), on a realistic synthetic mix.

Three measurements in one run, printed as JSON:

* **throughput**: a year of synthetic history (documents, decisions, applications with
  corrections/consultations/extensions, opinions and rumours, policies and interpretations,
  incidents, organisational changes, news) replayed through the same code as
  ``govclock replay``; events are parsed first and the parse rate is reported separately.
* **memory**: a ledger holding ``open`` open obligations of the same mix; resident memory
  before and after, per obligation.
* **sweep**: the cost of one ``tick`` when the same number of obligations fall due, with
  1,000 and with ``open`` obligations open: a tick must cost O(due), not O(open).
"""

from __future__ import annotations

import gc
import json
import os
import random
import resource
import statistics
import subprocess
import sys
import time
from collections.abc import Callable, Iterator
from datetime import datetime, timedelta
from pathlib import Path
from typing import Any

from config.packs import bundled_pack_files, load_packs
from deadlines import ledger as ledger_module
from deadlines.calendar import WorkCalendar
from deadlines.ledger import Ledger
from deadlines.replay import replay
from deadlines.rules import RuleBook, UnitConfig
from deadlines.timefmt import CST
from govclock.compiled import CompileError, build_compiled_core, compiled_env
from govclock.runtime import tune_gc
from schemas.events import EVENT_ADAPTER, Event

T0 = datetime(2026, 1, 5, 8, 0, tzinfo=CST)
HOUR = 3600
#: One event of a case (the dict the event is parsed from) and when it happens.
Timed = tuple[datetime, dict[str, Any]]


def _book(units: int) -> RuleBook:
    packs = load_packs(bundled_pack_files())
    cfg = {}
    for i in range(units):
        uid = f"unit-{i:03d}"
        pack = "zhengzhou" if i % 10 == 0 else ("national" if i % 10 == 1 else "default")
        kind = "government" if i % 25 == 0 else "department"
        cfg[uid] = UnitConfig(id=uid, pack=pack, kind=kind)
    return RuleBook(packs=packs, default_pack="default", units=cfg)


def _iso(t: datetime) -> str:
    return t.isoformat()


def _day(t: datetime) -> str:
    return t.date().isoformat()


class Mix:
    """A deterministic generator of realistic event histories."""

    def __init__(self, seed: int, units: int = 200) -> None:
        self.rng = random.Random(seed)
        self.units = [f"unit-{i:03d}" for i in range(units)]
        self.n = 0

    def _id(self, prefix: str) -> str:
        self.n += 1
        return f"{prefix}-{self.n}"

    def _pub(
        self, unit: str, at: datetime, kind: str, refs: dict[str, str], date_only: bool = False
    ) -> Timed:
        pid = self._id("P")
        return at, {
            "event_id": self._id("e"),
            "type": "document.published",
            "unit": unit,
            "publication_id": pid,
            "published_at": _day(at) if date_only else _iso(at),
            "kind": kind,
            "channel": "portal",
            "url": f"https://gov.example/{pid}.html",
            "refs": refs,
        }

    def _step(
        self, base: dict[str, str], aid: str, t: datetime, days: int, kind: str, **extra: Any
    ) -> Timed:
        """An application clock event ``days`` after ``t``."""
        at = t + timedelta(days=days)
        event = {
            **base,
            "event_id": self._id("e"),
            "type": f"application.{kind}",
            "application_id": aid,
            "at": _day(at),
            **extra,
        }
        return at, event

    def case(self, t: datetime) -> list[Timed]:
        """One real-world case starting at ``t``: its trigger and what follows."""
        r = self.rng.random()
        unit = self.rng.choice(self.units)
        if r < 0.33:
            return self._document(t, unit)
        if r < 0.58:
            return self._decision(t, unit)
        if r < 0.68:
            return self._application(t, unit)
        if r < 0.80:
            return self._opinion(t, unit)
        if r < 0.85:
            return self._policy(t, unit)
        if r < 0.86:
            return self._incident(t, unit)
        if r < 0.87:
            return self._org_change(t, unit)
        return [self._pub(unit, t, "news", {})]  # news with no subject

    def _document(self, t: datetime, unit: str) -> list[Timed]:
        """An official document, then (usually) its online posting."""
        rng = self.rng
        out: list[Timed] = []
        base = {"unit": unit}
        did = self._id("D")
        out.append(
            (
                t,
                {
                    **base,
                    "event_id": self._id("e"),
                    "type": "document.issued",
                    "document_id": did,
                    "issued_at": _day(t),
                    "kind": "normative",
                    "disclosure": "proactive" if rng.random() < 0.8 else "on_application",
                    "title": "关于做好有关工作的通知",
                },
            )
        )
        if rng.random() < 0.85:
            out.append(
                self._pub(
                    unit,
                    t + timedelta(days=rng.uniform(0.5, 18)),
                    "document",
                    {"document_id": did},
                    date_only=rng.random() < 0.3,
                )
            )
        return out

    def _decision(self, t: datetime, unit: str) -> list[Timed]:
        """A licensing or penalty decision, then its publicity."""
        rng = self.rng
        out: list[Timed] = []
        base = {"unit": unit}
        dec = self._id("X")
        out.append(
            (
                t,
                {
                    **base,
                    "event_id": self._id("e"),
                    "type": "decision.made",
                    "decision_id": dec,
                    "decided_at": _day(t),
                    "kind": rng.choice(["licensing", "penalty"]),
                },
            )
        )
        if rng.random() < 0.9:
            out.append(
                self._pub(
                    unit,
                    t + timedelta(days=rng.uniform(0.2, 12)),
                    "decision_publicity",
                    {"decision_id": dec},
                )
            )
        return out

    def _application(self, t: datetime, unit: str) -> list[Timed]:
        """A disclosure application with its clock events and reply."""
        rng = self.rng
        out: list[Timed] = []
        base = {"unit": unit}
        aid = self._id("A")
        out.append(
            (
                t,
                {
                    **base,
                    "event_id": self._id("e"),
                    "type": "application.received",
                    "application_id": aid,
                    "received_at": _day(t),
                },
            )
        )
        step = rng.random()
        if step < 0.1:
            out += [self._step(base, aid, t, 2, "correction_requested")]
            out += [self._step(base, aid, t, 6, "corrected")]
        elif step < 0.15:
            out += [self._step(base, aid, t, 5, "consultation_started")]
            out += [self._step(base, aid, t, 12, "consultation_ended")]
        elif step < 0.2:
            out += [self._step(base, aid, t, 20, "extended", working_days=15)]
        if rng.random() < 0.95:
            out.append(
                self._pub(
                    unit,
                    t + timedelta(days=rng.uniform(3, 35)),
                    "reply",
                    {"application_id": aid},
                )
            )
        return out

    def _opinion(self, t: datetime, unit: str) -> list[Timed]:
        """Online public opinion, then a response or rebuttal."""
        rng = self.rng
        out: list[Timed] = []
        base = {"unit": unit}
        oid = self._id("O")
        rumor = rng.random() < 0.1
        out.append(
            (
                t,
                {
                    **base,
                    "event_id": self._id("e"),
                    "type": "opinion.detected",
                    "opinion_id": oid,
                    "detected_at": _iso(t),
                    "topic": "rumor" if rumor else rng.choice(["policy", "livelihood"]),
                    "title": "网民关注",
                    "url": f"https://weibo.example/{oid}",
                },
            )
        )
        if rng.random() < 0.9:
            out.append(
                self._pub(
                    unit,
                    t + timedelta(hours=rng.uniform(1, 60)),
                    "rebuttal" if rumor else "response",
                    {"opinion_id": oid},
                )
            )
        return out

    def _policy(self, t: datetime, unit: str) -> list[Timed]:
        """A policy and its interpretation."""
        rng = self.rng
        out: list[Timed] = []
        did = self._id("D")
        out.append(self._pub(unit, t, "policy", {"document_id": did}))
        if rng.random() < 0.9:
            out.append(
                self._pub(
                    unit,
                    t + timedelta(hours=rng.uniform(0.5, 30)),
                    "interpretation",
                    {"document_id": did},
                )
            )
        return out

    def _incident(self, t: datetime, unit: str) -> list[Timed]:
        """An emergency, with releases and (maybe) a press conference."""
        rng = self.rng
        out: list[Timed] = []
        base = {"unit": unit}
        iid = self._id("I")
        sev = rng.choice(["I", "II", "II", "III", "IV"])
        out.append(
            (
                t,
                {
                    **base,
                    "event_id": self._id("e"),
                    "type": "incident.reported",
                    "incident_id": iid,
                    "occurred_at": _iso(t),
                    "title": "突发事件",
                    "severity": sev,
                    "deaths": rng.choice([0, 2, 11]),
                    "injured": 0,
                },
            )
        )
        out.append(
            self._pub(
                unit,
                t + timedelta(hours=rng.uniform(1, 7)),
                "press_release",
                {"incident_id": iid},
            )
        )
        if rng.random() < 0.7:
            out.append(
                self._pub(
                    unit,
                    t + timedelta(hours=rng.uniform(6, 30)),
                    "press_conference",
                    {"incident_id": iid},
                )
            )
        return out

    def _org_change(self, t: datetime, unit: str) -> list[Timed]:
        """An organisational change, then the power list."""
        rng = self.rng
        out: list[Timed] = []
        base = {"unit": unit}
        cid = self._id("C")
        out.append(
            (
                t,
                {
                    **base,
                    "event_id": self._id("e"),
                    "type": "org.changed",
                    "change_id": cid,
                    "completed_at": _day(t),
                },
            )
        )
        out.append(
            self._pub(
                unit, t + timedelta(days=rng.uniform(2, 16)), "power_list", {"change_id": cid}
            )
        )
        return out

    def history(self, n_events: int, span_days: float) -> list[dict[str, Any]]:
        """About ``n_events`` events in arrival order; 3% arrive before their predecessor."""
        items: list[tuple[datetime, int, dict[str, Any]]] = []
        mean_gap = span_days * 86400 / (n_events / 1.8)
        t = T0
        seq = 0
        while len(items) < n_events:
            t += timedelta(seconds=self.rng.expovariate(1 / mean_gap))
            for at, ev in self.case(t):
                items.append((at, seq, ev))
                seq += 1
        items.sort(key=lambda x: (x[0], x[1]))
        events = [ev for _, _, ev in items[:n_events]]
        for i in range(1, len(events)):  # out-of-order arrivals
            if self.rng.random() < 0.03:
                events[i - 1], events[i] = events[i], events[i - 1]
        for i in range(0, len(events), 50):  # webhook retries: a repeat every 50 events
            events.insert(i, events[i])
        return events


def _rss() -> int:
    with open("/proc/self/statm") as fh:
        return int(fh.read().split()[1]) * os.sysconf("SC_PAGE_SIZE")


def _peak_rss() -> int:
    return resource.getrusage(resource.RUSAGE_SELF).ru_maxrss * 1024


def throughput(n_events: int, seed: int) -> dict[str, Any]:
    """Decode each event from its JSON line and apply it at once, as the live monitor does;
    decoding (pydantic) and the core are timed apart, in the same loop."""
    lines = [json.dumps(ev, ensure_ascii=False).encode() for ev in Mix(seed).history(n_events, 365)]
    ledger = Ledger(_book(200), WorkCalendar.official())
    as_of = int((T0 + timedelta(days=400)).timestamp())
    gc_settings = tune_gc()
    decode_ns = 0
    clock = time.perf_counter_ns

    def decoded() -> Iterator[tuple[int, Event]]:
        nonlocal decode_ns
        for i, line in enumerate(lines, start=1):
            t0 = clock()
            event = EVENT_ADAPTER.validate_json(line)
            decode_ns += clock() - t0
            yield i, event

    t0 = clock()
    result = replay(ledger, decoded(), as_of, start=int(T0.timestamp()))
    total_s = (clock() - t0) / 1e9
    decode_s = decode_ns / 1e9
    core_s = total_s - decode_s
    statuses: dict[str, int] = {}
    for ob in ledger.obligations():
        statuses[ob.status] = statuses.get(ob.status, 0) + 1
    n = len(lines)
    core = "compiled (mypyc)" if ledger_module.__file__.endswith(".so") else "interpreted"
    return {
        "core": core,
        "events": n,
        "events_per_second": round(n / core_s),
        "decode_events_per_second": round(n / decode_s),
        "decode_and_core_events_per_second": round(n / total_s),
        "core_seconds": round(core_s, 3),
        "effects": len(result.effects),
        "duplicates_ignored": ledger.duplicates,
        "obligations": sum(statuses.values()),
        "statuses": dict(sorted(statuses.items())),
        **gc_settings,
    }


def _stream(make: Callable[[int], dict[str, Any]], n: int) -> Iterator[Event]:
    for i in range(n):
        yield EVENT_ADAPTER.validate_python(make(i))


def _open_mix(i: int) -> dict[str, Any]:
    """The i-th trigger of a population of open obligations (no evidence ever arrives)."""
    unit = f"unit-{i % 200:03d}"
    day = (T0 + timedelta(days=(i * 7) % 300)).date()
    k = i % 4
    if k == 0:
        return {
            "event_id": f"m{i}",
            "type": "document.issued",
            "unit": unit,
            "document_id": f"D{i}",
            "issued_at": day.isoformat(),
            "kind": "normative",
            "disclosure": "proactive",
            "title": "关于做好有关工作的通知",
        }
    if k == 1:
        return {
            "event_id": f"m{i}",
            "type": "decision.made",
            "unit": unit,
            "decision_id": f"X{i}",
            "decided_at": day.isoformat(),
            "kind": "licensing",
        }
    if k == 2:
        return {
            "event_id": f"m{i}",
            "type": "application.received",
            "unit": unit,
            "application_id": f"A{i}",
            "received_at": day.isoformat(),
        }
    at = T0 + timedelta(seconds=i * 17)
    return {
        "event_id": f"m{i}",
        "type": "opinion.detected",
        "unit": unit,
        "opinion_id": f"O{i}",
        "detected_at": at.isoformat(),
        "topic": "livelihood",
        "title": "网民关注",
        "url": f"https://weibo.example/O{i}",
    }


def memory(n_open: int) -> dict[str, Any]:
    book = _book(200)
    gc.collect()
    before = _rss()
    ledger = Ledger(book, WorkCalendar.official())
    for ev in _stream(_open_mix, n_open):
        ledger.apply(ev)
    gc.collect()
    after = _rss()
    open_count = sum(1 for _ in ledger.obligations())
    result = {
        "open_obligations": open_count,
        "ledger_rss_bytes": after - before,
        "bytes_per_open_obligation": round((after - before) / open_count),
    }
    del ledger
    gc.collect()
    return result


def _opinion(spacing: int) -> Callable[[int], dict[str, Any]]:
    def make(i: int) -> dict[str, Any]:
        at = T0 + timedelta(seconds=i * spacing)
        return {
            "event_id": f"s{i}",
            "type": "opinion.detected",
            "unit": "unit-002",
            "opinion_id": f"S{i}",
            "detected_at": at.isoformat(),
            "topic": "policy",
            "title": "网民关注",
            "url": "https://weibo.example/s",
        }

    return make


def sweep(n_open: int, due_per_tick: int = 100, ticks: int = 25) -> dict[str, Any]:
    """Median cost of a tick that finds ``due_per_tick`` obligations due, with ``n_open``
    open. Triggers are spaced so the density of due points is the same at any size."""
    spacing = max(1, 20 * 86400 // n_open)  # spread every population over at least 20 days
    ledger = Ledger(_book(200), WorkCalendar.official())
    for ev in _stream(_opinion(spacing), n_open):
        ledger.apply(ev)
    # Warnings at 24 h and 47 h and the breach at 48 h: three wake points per obligation.
    step = spacing * due_per_tick // 3
    now = int(T0.timestamp()) + 48 * HOUR  # steady state: warnings and breaches both flow
    ledger.tick(now)
    ticks = min(ticks, (n_open * spacing - 48 * HOUR) // step)
    costs, effects = [], 0
    for _ in range(ticks):
        now += step
        t0 = time.perf_counter_ns()
        fx = ledger.tick(now)
        costs.append(time.perf_counter_ns() - t0)
        effects += len(fx)
    open_now = sum(1 for ob in ledger.obligations() if ob.status == "pending")
    return {
        "open_obligations": n_open,
        "still_open_after": open_now,
        "effects_per_tick": round(effects / ticks, 1),
        "seconds_per_tick": statistics.median(costs) / 1e9,
    }


PHASES: dict[str, Callable[..., dict[str, Any]]] = {
    "throughput": lambda n, seed: throughput(n, seed),
    "memory": lambda n, seed: memory(n),
    "sweep": lambda n, seed: sweep(n),
}


def _phase(name: str, n: int, seed: int, compiled: Path | None = None) -> dict[str, Any]:
    """Run one phase in a fresh interpreter, so its memory figures are its own; with
    ``compiled``, on the mypyc-compiled core."""
    env = compiled_env(compiled) if compiled else None
    out = subprocess.run(
        [sys.executable, "-m", "govclock.bench", name, str(n), str(seed)],
        check=True,
        capture_output=True,
        text=True,
        env=env,
        cwd=compiled,
    )
    result: dict[str, Any] = json.loads(out.stdout)
    return result


def run_bench(events: int, open_obligations: int, seed: int) -> dict[str, Any]:
    started = time.perf_counter()
    interpreted = _phase("throughput", events, seed)
    try:
        tp = _phase("throughput", events, seed, compiled=build_compiled_core())
    except CompileError as exc:  # report the interpreted figure, and why
        tp = {**interpreted, "compile_error": str(exc)[-2000:]}
    mem = _phase("memory", open_obligations, seed)
    small = _phase("sweep", 1000, seed)
    large = _phase("sweep", open_obligations, seed)
    return {
        "python": sys.version.split()[0],
        "events_per_second": tp["events_per_second"],
        "core": tp["core"],
        "events_per_second_interpreted": interpreted["events_per_second"],
        "open_obligations": mem["open_obligations"],
        "bytes_per_open_obligation": mem["bytes_per_open_obligation"],
        "peak_rss_bytes": max(p["peak_rss_bytes"] for p in (tp, mem, small, large)),
        "sweep_seconds_per_tick_1k": small["seconds_per_tick"],
        "sweep_seconds_per_tick_large": large["seconds_per_tick"],
        "sweep_ratio_large_to_1k": round(large["seconds_per_tick"] / small["seconds_per_tick"], 2),
        "targets": {
            "events_per_second": ">= 100000 (one core)",
            "bytes_per_open_obligation": "<= 1024 at 1,000,000 open",
            "sweep_ratio_large_to_1k": "<= 2.0",
        },
        "throughput": tp,
        "throughput_interpreted": interpreted,
        "memory": mem,
        "sweep": {"1k": small, "large": large},
        "bench_seconds": round(time.perf_counter() - started, 1),
    }


if __name__ == "__main__":
    _name, _n, _seed = sys.argv[1], int(sys.argv[2]), int(sys.argv[3])
    _result = PHASES[_name](_n, _seed)
    _result["peak_rss_bytes"] = _peak_rss()
    print(json.dumps(_result))
