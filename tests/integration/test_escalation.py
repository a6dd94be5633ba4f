"""The live notifier end to end: ``govclock run`` (a real process, the embedded broker), the
real twilio SDK against the local fake Twilio (tests/fake_twilio.py), whose signed status
callbacks go to the monitor's own ``POST /v1/channels/twilio/status``.

One scripted breach: an incident whose 5-hour window closes 2 s after it is reported. The
policy pages rung 1 (the unit's duty officer li, and the emergency office) at the breach and
repeats every 3 s (``repeat_minutes: 0.05``); level 2 would come after 30 min (never, here).

1. breach → SMS to li (Twilio reports it **undelivered**, 30003) and to the emergency office;
   li's report falls back to zhang, the next person of level 1, at once;
2. the repeats (第2次, …) go to li and the emergency office;
3. the monitor is stopped (SIGINT) mid-escalation and started again: the escalation goes on
   from where it was (the state came back), and nothing is sent twice;
4. ``POST /v1/obligations/{id}/ack`` by li: no more repeats.
"""

from __future__ import annotations

import json
import re
import time
from collections import Counter
from collections.abc import Iterator
from dataclasses import dataclass
from datetime import datetime, timedelta
from pathlib import Path
from typing import Any
from urllib.parse import quote

import pytest

from tests.fake_twilio import FakeTwilio
from tests.integration.test_monitor import (
    SHANGHAI,
    Monitor,
    incident,
    request,
    wait_for,
)

pytestmark = [pytest.mark.integration, pytest.mark.slow]

LI, ZHANG, WANG, EO = "+8613900139000", "+8613800138000", "+8613700137000", "+8613400134000"
UNIT = "sh-yingji"
REPEAT_S = 3


def roster_yaml() -> str:
    # li is level 1's duty officer from yesterday 09:00 for a year; zhang is next in turn
    start = (datetime.now(SHANGHAI).date() - timedelta(days=1)).isoformat()
    return f"""
roster: 测试值班表
people:
  - {{id: li, name: 李四, phone: "{LI}"}}
  - {{id: zhang, name: 张三, phone: "{ZHANG}"}}
  - {{id: wang, name: 王五, phone: "{WANG}"}}
  - {{id: eo, name: 应急甲, phone: "{EO}"}}
units:
  {UNIT}:
    levels:
      1: {{rotation: {{people: [li, zhang], start: {start}, period_days: 366}}}}
      2: {{rotation: {{people: [wang], start: {start}, period_days: 366}}}}
emergency_office:
  levels:
    1: {{rotation: {{people: [eo], start: {start}, period_days: 366}}}}
"""


POLICY_YAML = f"""
name: drill
short_names: {{first_release_5h: 首次权威发布}}
default:
  warn: []
  breach:
    - notify: [{{unit: owner, level: 1}}, {{unit: emergency_office, level: 1}}]
    - notify: [{{unit: owner, level: 2}}]
  channels: [sms]
  repeat_minutes: {REPEAT_S / 60}
  max_repeats: 20
  escalate_after_minutes: 30
"""


@dataclass
class TwilioMonitor(Monitor):
    """A monitor whose public URL is its own web port (a new one each start)."""

    def env(self) -> dict[str, str]:
        env = super().env()
        env["GOVCLOCK_PUBLIC_URL"] = f"http://127.0.0.1:{self.port}"
        return env


@pytest.fixture
def fake() -> Iterator[FakeTwilio]:
    with FakeTwilio() as f:
        yield f


#: The Twilio number the workers send from (a Twilio test number).
TWILIO_FROM = "+15005550006"


def twilio_env(fake: FakeTwilio) -> dict[str, str]:
    """The settings that send SMS through the fake Twilio server with the real client."""
    return {
        "GOVCLOCK_TWILIO_ACCOUNT_SID": fake.account_sid,
        "GOVCLOCK_TWILIO_AUTH_TOKEN": fake.auth_token,
        "GOVCLOCK_TWILIO_FROM": TWILIO_FROM,
        "GOVCLOCK_TWILIO_BASE_URL": fake.base_url,
        "GOVCLOCK_TWILIO_TIMEOUT": "5",
    }


def notifier_env(directory: Path, fake: FakeTwilio, roster: str | None = None) -> dict[str, str]:
    """Write ``roster`` (default :func:`roster_yaml`) and :data:`POLICY_YAML` into
    ``directory``; the settings that run the notifier with them through the fake Twilio."""
    (directory / "roster.yaml").write_text(roster or roster_yaml(), encoding="utf-8")
    (directory / "policy.yaml").write_text(POLICY_YAML, encoding="utf-8")
    return {
        "GOVCLOCK_ROSTER_FILE": str(directory / "roster.yaml"),
        "GOVCLOCK_POLICY_FILE": str(directory / "policy.yaml"),
        **twilio_env(fake),
    }


@pytest.fixture
def monitor(tmp_path: Path, fake: FakeTwilio) -> Iterator[TwilioMonitor]:
    env = {**notifier_env(tmp_path, fake), "GOVCLOCK_PARTITIONS": "2"}
    mon = TwilioMonitor(tmp_path / "var", tmp_path, env, name="escalation")
    try:
        yield mon
    finally:
        mon.cleanup()


def sms(fake: FakeTwilio) -> list[dict[str, Any]]:
    """The messages the fake Twilio created, in order."""
    return list(fake.messages.values())


def repeat_no(body: str) -> int:
    """1 for the breach page, n for the "第n次" repeat."""
    m = re.search(r"第(\d+)次", body)
    return int(m.group(1)) if m else 1


def escalation(mon: Monitor, oid: str) -> dict[str, Any]:
    status, body = request(mon.port, "GET", f"/v1/obligations/{quote(oid)}/escalation")
    if status != 200:
        raise ValueError(f"escalation: {status} {body!r}")
    result: dict[str, Any] = body
    return result


def page_recorded(mon: Monitor, oid: str, person: str) -> bool:
    """The notifier has recorded a send to ``person`` for ``oid`` (the fake Twilio can hold
    the message a moment before the state says it went: only then can a reply find it)."""
    messages = escalation(mon, oid)["messages"]
    return any(m["person"] == person and m["status"] != "pending" for m in messages)


def ack(mon: Monitor, oid: str, body: dict[str, Any]) -> tuple[int, Any]:
    return request(
        mon.port,
        "POST",
        f"/v1/obligations/{quote(oid)}/ack",
        json.dumps(body).encode(),
        "application/json",
    )


@pytest.mark.timeout(150)
def test_breach_sms_sequence_fallback_restart_and_ack(
    monitor: TwilioMonitor, fake: FakeTwilio
) -> None:
    t0 = time.monotonic()
    mon = monitor.start()
    mon.wait_ready()
    fake.final_status_next("undelivered", 30003)  # the first message: li's breach page

    now = int(time.time())
    iid = f"I-ESC-{now}"
    oid = f"first_release_5h:{iid}"
    status, body = mon.post([{**incident("esc-1", iid, now + 2 - 5 * 3600), "unit": UNIT}])
    assert status == 202, body

    # 1. breach: li (undelivered) and the emergency office, then zhang at once
    wait_for("the breach pages and the fallback", lambda: sms(fake)[2:3], 20)
    msgs = sms(fake)
    assert [m["to"] for m in msgs[:3]] == [LI, EO, ZHANG], [m["to"] for m in msgs]
    assert all("请立即处置" in m["body"] and "第" not in m["body"] for m in msgs[:3])
    assert msgs[2]["body"].split("确认")[0] == msgs[0]["body"].split("确认")[0]
    failed = wait_for(
        "li's undelivered report",
        lambda: [c for c in fake.callbacks if c.params["MessageStatus"] == "undelivered"],
        5,
    )
    assert failed[0].params["MessageSid"] == msgs[0]["sid"] and failed[0].answered == 204
    assert re.search(r"/v1/channels/twilio/status\?p=[01]$", failed[0].url), failed[0].url
    # zhang's page follows li's within a second, long before the next repeat (3 s): at once
    creates = fake.creates()
    fallback_s = creates[2].at - creates[0].at
    assert creates[2].params["To"] == ZHANG and fallback_s < 1.5, fallback_s

    # 2. the first repeat, to rung 1 again
    wait_for(
        "the first repeat", lambda: [m for m in sms(fake) if repeat_no(m["body"]) == 2][1:], 15
    )

    # 3. restart mid-escalation
    before = escalation(mon, oid)
    assert before["stage"] == "breached"
    statuses = {
        m["key"].split("|")[-2] + "#" + m["key"].split("|")[1]: m for m in before["messages"]
    }
    assert statuses[f"li#breach@{before['due_at']}#0"]["status"] == "undelivered"
    assert mon.stop() == 0
    down = len(sms(fake))
    mon.start()
    mon.wait_ready()
    after = wait_for("the escalation after the restart", lambda: escalation(mon, oid), 20)
    assert [m["key"] for m in after["messages"]][: len(before["messages"])] == [
        m["key"] for m in before["messages"]
    ]
    # it goes on: a repeat numbered past the last one before the restart
    last = max(repeat_no(m["body"]) for m in sms(fake)[:down])
    wait_for(
        "a repeat after the restart",
        lambda: [m for m in sms(fake)[down:] if repeat_no(m["body"]) > last][1:],
        20,
    )

    # 4. the acknowledgement stops the repeats
    assert ack(mon, "nope:none", {"level": 1, "person": "li"})[0] == 404
    assert ack(mon, oid, {"level": 1, "person": "nobody"})[0] == 400
    status, body = wait_for(
        "the ack accepted",
        lambda: (r := ack(mon, oid, {"level": 1, "person": "li"}))[0] == 202 and r,
        10,
    )
    assert body == {"obligation_id": oid, "level": 1, "person": "li"}
    acked = wait_for(
        "the ack applied", lambda: (e := escalation(mon, oid))["stage"] == "acknowledged" and e, 10
    )
    assert acked["next_wake"] is None and acked["acks"][0]["person"] == "li"
    count = len(sms(fake))
    time.sleep(2.5 * REPEAT_S)
    assert len(sms(fake)) == count, [m["body"] for m in sms(fake)[count:]]

    # nothing twice: one message per (number, page); one Twilio message per state entry
    msgs = sms(fake)
    pages = Counter((m["to"], repeat_no(m["body"])) for m in msgs)
    assert max(pages.values()) == 1, pages
    assert len(fake.creates()) == len(msgs)
    final = escalation(mon, oid)
    assert len(final["messages"]) == len(msgs)
    assert len({m["key"] for m in final["messages"]}) == len(msgs)
    # rung 1 every time: li and the emergency office, zhang only as li's fallback
    assert {m["to"] for m in msgs} == {LI, EO, ZHANG}
    assert [m["to"] for m in msgs].count(ZHANG) == 1
    assert all(m["to"] in (LI, EO) for m in msgs[3:])

    # a forged delivery report is refused; the metrics count without numbers
    status, _ = request(
        mon.port,
        "POST",
        "/v1/channels/twilio/status?p=0",
        b"MessageSid=SMx&MessageStatus=failed",
        "application/x-www-form-urlencoded",
    )
    assert status == 403
    status, text = request(mon.port, "GET", "/metrics")
    assert status == 200 and isinstance(text, str)
    assert 'govclock_notifications_total{channel="sms",state="acknowledged"} 1.0' in text
    assert re.search(r'govclock_notifications_total\{channel="sms",state="sent"\} [1-9]', text)
    assert "13900139000" not in text and iid not in text
    print(
        f"\nescalation: {len(msgs)} SMS ({dict(Counter(m['to'][-4:] for m in msgs))} by last "
        f"4 digits), repeats up to 第{max(repeat_no(m['body']) for m in msgs)}次, "
        f"{len(fake.callbacks)} callbacks; li's page to zhang's fallback {fallback_s:.2f} s; "
        f"whole test {time.monotonic() - t0:.1f} s"
    )
