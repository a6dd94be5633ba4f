"""A real Prometheus scrapes a running worker fed with a scripted history, and every
dashboard panel's query returns data.

- ``govclock run`` (the real embedded broker, a Faust worker, its web server) runs with the
  roster and the short-interval policy of the history file, so its notifier is on: SMS go
  through the real twilio client to the fake Twilio (tests/fake_twilio.py), whose signed
  status callbacks come back to the worker's /v1/channels/twilio/status (delivered; the
  first message of the run ends ``undelivered`` and falls back to the next person at once).
- The worker is fed ``tests/data/prometheus_history.yaml`` in two phases over
  POST /v1/events: incidents, documents, decisions, applications and opinions of four
  units whose obligations end up pending, paused, met, late, missed, unverifiable and
  cancelled (past-dated triggers are breached at once by the sweeper; one deadline passes
  a few seconds after posting), plus rejected requests (400, 413, 415) and malformed
  records produced straight to the events topic (dead letters). One unit is not in the
  roster, so its pages reach nobody; one breach is acknowledged with
  ``POST /v1/obligations/{id}/ack`` and its escalation must say so.
- ``prometheus`` (Debian's package; ``make tools``) runs on 127.0.0.1 with a temporary
  TSDB, scrapes the worker's /metrics every second and evaluates dashboards/alerts.yaml.
- Every PromQL target of every panel of the three Prometheus dashboards is queried over
  the HTTP API: instant targets at the end, range targets over the whole scrape window with a 1 s
  step; Grafana's variables are filled in as tests/panel_queries.py documents. A target
  passes when it returns at least one number (not NaN) **and** every govclock selector in
  it matches at least one series, so an ``or vector(0)`` fallback cannot hide a metric that
  has no data. A failure names the panel, the expression, what came back and why (metric
  not registered, registered but never fed, labels not matched, or a query that returns
  nothing from series that exist).
- Series created at 0 (every channel × state, every roster unit) give data even when
  nothing happened, so the history's ``metrics`` say how far some series must get in
  Prometheus (pages sent, delivered, failed, acknowledged, told to nobody, …), and the fake
  Twilio must have seen the undelivered report answered and the fallback sent.
- Every alert rule evaluates without error (firing is not required).

Run with ``-s`` to see the table of every panel target with data or without.
"""

from __future__ import annotations

import http.client
import json
import time
from collections import Counter
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import Any
from urllib.parse import quote

import pytest
import yaml
from kafka import KafkaProducer
from prometheus_client.parser import text_string_to_metric_families

from dashboards.catalog import exposed
from streams.topics import DEAD_LETTERS, EVENTS
from tests.fake_twilio import FakeTwilio
from tests.integration.test_escalation import fake, twilio_env  # noqa: F401 (fixture)
from tests.integration.test_monitor import Monitor, read_topic, request
from tests.panel_queries import Target, selectors, targets
from tests.promserver import (
    Prometheus,
    PrometheusError,
    has_values,
    require_prometheus,
    seconds_text,
    summary,
)
from tests.scripted_history import DATA, Ack, History, Phase, load

pytestmark = [pytest.mark.integration, pytest.mark.slow]

ROOT = Path(__file__).resolve().parents[2]
HISTORY = DATA / "prometheus_history.yaml"
ALERTS = ROOT / "dashboards" / "alerts.yaml"
SCRAPE_S = 1.0
PHASE_TIMEOUT = 30.0


# -- the worker, with its notifier on ---------------------------------------------------


@dataclass
class NotifyingMonitor(Monitor):
    """A monitor whose public URL (the base of Twilio's status callbacks) is its own web
    port, a new one each start."""

    def env(self) -> dict[str, str]:
        env = super().env()
        env["GOVCLOCK_PUBLIC_URL"] = f"http://127.0.0.1:{self.port}"
        return env


@pytest.fixture
def monitor(tmp_path: Path, fake: FakeTwilio) -> Iterator[NotifyingMonitor]:  # noqa: F811
    """``govclock run`` with the history's roster and policy, SMS by the fake Twilio."""
    workdir = tmp_path / "scraped"
    workdir.mkdir()
    env = twilio_env(fake)
    variables = {"roster.yaml": "GOVCLOCK_ROSTER_FILE", "policy.yaml": "GOVCLOCK_POLICY_FILE"}
    for name, text in load(HISTORY).files(time.time()).items():
        (workdir / name).write_text(text, encoding="utf-8")
        env[variables[name]] = str(workdir / name)
    assert "GOVCLOCK_ROSTER_FILE" in env, f"{HISTORY} has no roster: the notifier would be off"
    mon = NotifyingMonitor(workdir / "var", workdir, env, name="scraped")
    try:
        yield mon
    finally:
        mon.cleanup()


# -- feeding the worker ------------------------------------------------------------------


def produce_raw(bootstrap: str, records: list[bytes]) -> None:
    """Records straight to the events topic, past the HTTP validation."""
    producer = KafkaProducer(
        bootstrap_servers=bootstrap, request_timeout_ms=5000, max_block_ms=5000
    )
    try:
        futures = [producer.send(EVENTS, value=r) for r in records]
        producer.flush(10)
        for f in futures:
            f.get(timeout=5)
    finally:
        producer.close(5)


def statuses(mon: Monitor) -> dict[str, str]:
    return {o["id"]: o["status"] for o in mon.obligations()}


def escalation_stage(mon: Monitor, oid: str) -> str | None:
    status, body = request(mon.port, "GET", f"/v1/obligations/{quote(oid)}/escalation")
    return body["stage"] if status == 200 and isinstance(body, dict) else None


def acknowledge(mon: Monitor, ack: Ack, deadline: float) -> None:
    """POST the ack until it is taken (404 until the notifier has the escalation)."""
    body = json.dumps({"level": ack.level, "person": ack.person}).encode()
    path = f"/v1/obligations/{quote(ack.obligation)}/ack"
    while True:
        try:
            last: Any = request(mon.port, "POST", path, body, "application/json")
        except (OSError, http.client.HTTPException) as exc:
            last = repr(exc)
        if isinstance(last, tuple) and last[0] == 202:
            want = {"obligation_id": ack.obligation, "level": ack.level, "person": ack.person}
            assert last[1] == want, last
            return
        if not mon.alive() or time.monotonic() >= deadline:
            pytest.fail(f"ack {ack}: last answer {last!r}\n{mon.describe()}")
        time.sleep(0.2)


def feed(mon: Monitor, phase: Phase, dead_letters_before: int) -> int:
    """Post the phase, check the refusals, wait until the worker shows the expected
    statuses and the dead letters; returns the number of dead letters now."""
    events = phase.render(time.time())
    status, body = mon.post(events)
    assert status == 202, f"{phase.name}: {status} {body}"
    assert body["accepted"] == len(events), body
    for bad in phase.rejected:
        status, body = request(mon.port, "POST", "/v1/events", bad.body, bad.content_type)
        assert status == bad.status, f"{phase.name}: {bad.content_type} → {status} {body}"
    bootstrap = mon.bootstrap()
    if phase.dead_letters:
        produce_raw(bootstrap, phase.dead_letters)

    deadline = time.monotonic() + PHASE_TIMEOUT
    while True:
        try:
            got = statuses(mon)
        except (OSError, http.client.HTTPException) as exc:
            got = {"(error)": repr(exc)}
        wrong = {i: (s, got.get(i)) for i, s in phase.expect.items() if got.get(i) != s}
        if not wrong:
            break
        if not mon.alive() or time.monotonic() >= deadline:
            pytest.fail(
                f"phase {phase.name!r}: obligation (expected, got): {wrong}\n{mon.describe()}"
            )
        time.sleep(0.2)

    for ack in phase.acks:
        acknowledge(mon, ack, deadline)
    while phase.escalations:
        stages: dict[str, str | None]
        try:
            stages = {oid: escalation_stage(mon, oid) for oid in phase.escalations}
        except (OSError, http.client.HTTPException) as exc:
            stages = {"(error)": repr(exc)}
        wrong = {i: (s, stages.get(i)) for i, s in phase.escalations.items() if stages.get(i) != s}
        if not wrong:
            break
        if not mon.alive() or time.monotonic() >= deadline:
            pytest.fail(
                f"phase {phase.name!r}: escalation stage (expected, got): {wrong}\n"
                + mon.describe()
            )
        time.sleep(0.2)

    wanted = dead_letters_before + len(phase.dead_letters)
    while True:
        letters = read_topic(bootstrap, DEAD_LETTERS, timeout=10)
        if len(letters) >= wanted:
            return len(letters)
        if time.monotonic() >= deadline:
            pytest.fail(f"phase {phase.name!r}: {len(letters)} dead letters, wanted {wanted}")
        time.sleep(0.2)


def worker_samples(mon: Monitor) -> set[str]:
    """The sample names the worker's /metrics has right now."""
    status, text = request(mon.port, "GET", "/metrics")
    assert status == 200 and isinstance(text, str), (status, text)
    return {s.name for family in text_string_to_metric_families(text) for s in family.samples}


# -- checking the queries ----------------------------------------------------------------


@dataclass
class Checked:
    target: Target
    expr: str
    ok: bool
    why: str = ""
    came_back: str = ""


def short(data: Any, limit: int = 600) -> str:
    text = json.dumps(data, ensure_ascii=False)
    return text if len(text) <= limit else text[:limit] + "…"


def why_no_series(selector: str, registered: set[str], scraped: set[str]) -> str:
    name = selector.split("{", 1)[0]
    if name not in registered:
        return f"{name} is not a metric metrics/collectors.py registers (missing metric)"
    if name not in scraped:
        return (
            f"{name} is registered but the worker exported no sample of it: nothing has "
            "observed/incremented it (the code does not feed it, or the history does not "
            "exercise it)"
        )
    return f"{name} has samples, but none matches {selector} (the history lacks those labels)"


def check(
    prom: Prometheus,
    target: Target,
    start: float,
    end: float,
    registered: set[str],
    scraped: set[str],
) -> Checked:
    expr = target.interpolate(end - start, SCRAPE_S)
    try:
        if target.instant:
            data = prom.query(expr, end)
        else:
            data = prom.query_range(expr, start, end, SCRAPE_S)
    except PrometheusError as exc:
        return Checked(target, expr, False, f"the query fails (broken query): {exc}")
    missing: dict[str, None] = {}  # reasons, in order, once each
    for selector in selectors(expr):
        if not prom.query(f"count({selector})", end)["result"]:
            missing.setdefault(why_no_series(selector, registered, scraped), None)
    values = has_values(data)
    if values and not missing:
        return Checked(target, expr, True, came_back=summary(data))
    if missing:
        why = "; ".join(missing)
        if values:
            why += " (the panel shows only its `or vector(0)` fallback)"
    elif data["result"]:
        why = "only NaN values although every selector has series (nothing in the window?)"
    else:
        why = "no result although every selector has series (broken query?)"
    return Checked(target, expr, False, why, short(data))


def report(checked: list[Checked]) -> str:
    lines = []
    for c in checked:
        if c.ok:
            lines.append(f"data     {c.target.where}: {c.came_back}")
        else:
            lines.append(f"NO DATA  {c.target.where}: {c.why}")
    return "\n".join(lines)


def check_series(
    prom: Prometheus, least: dict[str, float], start: float, end: float
) -> tuple[list[str], list[str]]:
    """Each selector's highest value in the scrape window against the least it must reach:
    (problems, one line per selector)."""
    window = seconds_text(end - start)
    problems, lines = [], []
    for selector, want in least.items():
        result = prom.query(f"max(max_over_time({selector}[{window}]))", end)["result"]
        got = float(result[0]["value"][1]) if result else None
        lines.append(f"{selector}: {got} (at least {want:g})")
        if got is None or got < want:
            problems.append(f"{selector}: reached {got}, wanted at least {want:g}")
    return problems, lines


def check_twilio(fake: FakeTwilio) -> tuple[list[str], str]:  # noqa: F811
    """What the fake Twilio saw: the undelivered report answered and followed by the same
    text to someone else (the fallback), every status callback answered 204."""
    messages = list(fake.messages.values())
    callbacks = list(fake.callbacks)
    problems = []
    undelivered = [c for c in callbacks if c.params["MessageStatus"] == "undelivered"]
    if not undelivered:
        problems.append("no message ended undelivered (the fake's injected final status)")
    else:
        sid = undelivered[0].params["MessageSid"]
        failed = fake.messages[sid]
        text = failed["body"].split("确认")[0]
        after = messages[messages.index(failed) + 1 :]
        if not any(m["to"] != failed["to"] and m["body"].split("确认")[0] == text for m in after):
            problems.append(f"no fallback after the undelivered {failed['body']!r}")
    unanswered = [(c.params["MessageStatus"], c.answered, c.error) for c in callbacks]
    unanswered = [u for u in unanswered if u[1] != 204]
    if unanswered:
        problems.append(f"status callbacks not answered 204: {unanswered[:5]}")
    states = Counter(c.params["MessageStatus"] for c in callbacks)
    numbers = Counter(m["to"][-2:] for m in messages)
    return problems, (
        f"{len(messages)} SMS to {len(numbers)} numbers (by last 2 digits: "
        f"{dict(sorted(numbers.items()))}); status callbacks: {dict(states)}"
    )


def check_alert_rules(prom: Prometheus, end: float) -> tuple[list[str], list[str]]:
    """Problems with the alert rules (not all loaded, not evaluated, evaluation errors),
    and each rule's state for the record."""
    wanted = [r["alert"] for g in yaml.safe_load(ALERTS.read_text())["groups"] for r in g["rules"]]

    def evaluated() -> list[dict[str, Any]]:
        rules = prom.rules()
        done = all(not r.get("lastEvaluation", "0001").startswith("0001") for r in rules)
        return rules if done and len(rules) == len(wanted) else []

    rules = prom.wait("every alert rule evaluated", evaluated, 15)
    problems, states = [], []
    if sorted(r["name"] for r in rules) != sorted(wanted):
        problems.append(f"loaded {sorted(r['name'] for r in rules)}, wanted {sorted(wanted)}")
    for rule in rules:
        if rule.get("health") != "ok" or rule.get("lastError"):
            problems.append(f"{rule['name']}: health {rule.get('health')}: {rule.get('lastError')}")
        try:
            result = prom.query(rule["query"], end)
        except PrometheusError as exc:
            problems.append(f"{rule['name']}: {rule['query']!r}: {exc}")
        else:
            states.append(
                f"{rule['name']}: health {rule.get('health')}, {rule.get('state')}; "
                f"its expression now: {summary(result)}"
            )
    return problems, states


# -- the test ----------------------------------------------------------------------------


@pytest.mark.timeout(150)
def test_every_dashboard_panel_has_data_in_a_real_prometheus(
    monitor: NotifyingMonitor,
    fake: FakeTwilio,  # noqa: F811
    tmp_path: Path,
) -> None:
    binary = require_prometheus()
    history: History = load(HISTORY)
    every = targets()
    assert {t.dashboard for t in every} == {"oncall", "compliance", "pipeline"}, every
    assert len(every) >= 40, every
    t0 = time.monotonic()

    mon = monitor.start()
    prom = Prometheus(
        binary,
        tmp_path / "prometheus",
        [f"127.0.0.1:{mon.port}"],
        scrape_interval=f"{SCRAPE_S:g}s",
        rule_files=[ALERTS],
    )
    with prom:
        prom.wait_ready()
        mon.wait_ready()
        prom.wait_scraped_after(time.time(), scrapes=2)
        start = prom.started_at  # range queries and $__range: the whole scrape window
        fake.final_status_next("undelivered", 30003)  # the first SMS: falls back at once
        dead_letters = 0
        for phase in history.phases:
            dead_letters = feed(mon, phase, dead_letters)
            prom.wait_scraped_after(time.time(), scrapes=2)
        end = time.time()
        registered = set(exposed())
        scraped = worker_samples(mon)
        checked = [check(prom, t, start, end, registered, scraped) for t in every]
        series_problems, series_lines = check_series(prom, history.metrics, start, end)
        twilio_problems, twilio_summary = check_twilio(fake)
        alert_problems, alert_states = check_alert_rules(prom, end)
        elapsed = time.monotonic() - t0

    print(
        f"\n{len(checked)} panel targets over {end - start:.0f} s of scrapes "
        f"({elapsed:.1f} s from the worker's start):\n{report(checked)}\n"
        f"series of the history's `metrics`:\n" + "\n".join(series_lines) + "\n"
        f"fake Twilio: {twilio_summary}\nalert rules:\n" + "\n".join(alert_states)
    )
    failed = [c for c in checked if not c.ok]
    message = [f"{len(failed)} of {len(checked)} panel targets have no data:"]
    for c in failed:
        message.append(f"- {c.target.where}\n    expr: {c.expr}\n    why: {c.why}")
        message.append(f"    came back: {c.came_back}")
    for title, problems in (
        ("series the history must move", series_problems),
        ("the fake Twilio", twilio_problems),
        ("alert rules", alert_problems),
    ):
        if problems:
            message.append(f"{title}:\n" + "\n".join(f"- {p}" for p in problems))
    assert not failed and not series_problems and not twilio_problems and not alert_problems, (
        "\n".join(message)
    )
