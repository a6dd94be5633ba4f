"""``kill -9`` of the whole ``govclock run`` in the middle of an escalation (issue 4: nothing
lost or doubled), with the real twilio SDK against the fake Twilio (tests/fake_twilio.py).

The roster and drill policy of tests/integration/test_escalation.py: an incident breaches 2 s
after it is reported; rung 1 (li, the emergency office) is paged and the page repeats every
3 s. The kill comes at the worst moment the notifier has: the fake Twilio has **created** a
repeat to li but not answered yet (``delay_next``, "accepted, answered late"), so the sent log
has only begun that key and the emergency office's copy of the same repeat is not sent at
all. The process group is SIGKILLed (``Monitor.kill9``; the embedded broker, in a group of
its own, survives and is replaced by the next start), and ``govclock run`` starts again on
the same data directory: a fresh, empty broker, re-seeded from the journal and the
escalation snapshot.

Then: the escalation goes on (the repeat the kill interrupted reaches the emergency office,
later repeats follow, numbered on from where they were), li's interrupted repeat is found at
Twilio instead of being sent a second time, no (number, message key) reaches Twilio twice,
and an acknowledgement stops the repeats.

The monitor keeps its web port across the restart, so ``GOVCLOCK_PUBLIC_URL`` (the base of the
acknowledgement link in every text) stays the same, as it does in production: the text of a
message decided before the kill is then the same when it is sent again after it, which is
what lets the channel recognise a message Twilio had already taken.
"""

from __future__ import annotations

import re
import sqlite3
import time
from collections import Counter
from collections.abc import Iterator
from dataclasses import dataclass
from datetime import datetime
from pathlib import Path

import pytest

from streams.topics import NOTIFICATIONS
from tests.fake_twilio import FakeTwilio
from tests.integration.test_escalation import (  # noqa: F401 (fixture)
    EO,
    LI,
    REPEAT_S,
    UNIT,
    TwilioMonitor,
    ack,
    escalation,
    fake,
    notifier_env,
    repeat_no,
    sms,
)
from tests.integration.test_monitor import effects, incident, read_topic, request, wait_for

pytestmark = [pytest.mark.integration, pytest.mark.slow]

#: How late the fake Twilio answers the create the kill interrupts (the SDK's timeout is 5 s;
#: the kill comes within a few tenths of a second).
HELD_S = 4.0


@dataclass
class SamePortMonitor(TwilioMonitor):
    """A monitor that keeps its first web port (and so its public URL) on every start."""

    stable_port: int = 0

    def env(self) -> dict[str, str]:
        if not self.stable_port:
            self.stable_port = self.port
        self.port = self.stable_port
        return super().env()


@pytest.fixture
def kill_monitor(tmp_path: Path, fake: FakeTwilio) -> Iterator[SamePortMonitor]:  # noqa: F811
    env = {**notifier_env(tmp_path, fake), "GOVCLOCK_PARTITIONS": "2"}
    mon = SamePortMonitor(tmp_path / "var", tmp_path, env, name="kill9")
    try:
        yield mon
    finally:
        mon.cleanup()


def sent_log(data_dir: Path) -> dict[str, tuple[str, str | None]]:
    """The Twilio channel's sent log: message key -> (status, SID)."""
    db = sqlite3.connect(f"file:{data_dir / 'sent-twilio.sqlite3'}?mode=ro", uri=True)
    try:
        rows = db.execute("SELECT key, status, provider_id FROM sent").fetchall()
    finally:
        db.close()
    return {str(k): (str(s), p) for k, s, p in rows}


def numbers(twilio: FakeTwilio, to: str) -> list[int]:
    """The page numbers (1 = the breach page, n = 第n次) sent to ``to``, in order."""
    return [repeat_no(m["body"]) for m in sms(twilio) if m["to"] == to]


@pytest.mark.timeout(120)
def test_kill_9_mid_escalation_loses_and_doubles_nothing(
    kill_monitor: SamePortMonitor,
    fake: FakeTwilio,  # noqa: F811
) -> None:
    t0 = time.monotonic()
    mon = kill_monitor.start()
    mon.wait_ready()
    now = int(time.time())
    iid = f"I-K9-{now}"
    oid = f"first_release_5h:{iid}"
    status, body = mon.post([{**incident("k9-1", iid, now + 2 - 5 * 3600), "unit": UNIT}])
    assert status == 202, body

    # the window in which a kill loses an effect (on the broker, not yet applied): from the
    # ledger's breached record to the notifier sending its first page (its state is written
    # just before that send)
    wait_for("the breach page", lambda: numbers(fake, LI), 20)
    (breached,) = [
        e
        for e in effects(read_topic(mon.bootstrap(), NOTIFICATIONS))
        if e["obligation_id"] == oid and e["kind"] == "breached"
    ]
    effect_window_s = fake.creates()[0].at - breached["_timestamp_ms"] / 1000

    # the breach page and the first repeat, to li and the emergency office
    wait_for(
        "the first repeat to both",
        lambda: min(max(numbers(fake, n), default=0) for n in (LI, EO)) >= 2,
        25,
    )
    assert numbers(fake, LI) == numbers(fake, EO) == [1, 2], [m["to"] for m in sms(fake)]
    before = escalation(mon, oid)
    assert before["stage"] == "breached" and before["repeats"] >= 1

    # the next repeat: Twilio takes li's copy and holds the answer; kill -9 meanwhile
    fake.delay_next(HELD_S)
    held = wait_for(
        "li's next repeat taken by Twilio, unanswered",
        lambda: [r for r in fake.creates() if r.note.startswith("accepted, answered")],
        10,
        interval=0.02,
    )[0]
    mon.kill9()
    t_kill = time.monotonic()
    assert held.params["To"] == LI
    assert numbers(fake, LI) == [1, 2, 3] and numbers(fake, EO) == [1, 2]
    log_at_kill = sent_log(mon.data_dir)
    in_flight = [k for k, (s, _) in log_at_kill.items() if s == "pending"]
    assert len(in_flight) == 1 and "|li|" in in_flight[0], log_at_kill
    (interrupted,) = in_flight

    # start again on the same data directory: a fresh broker, re-seeded
    mon.start()
    mon.wait_ready()
    t_back = time.monotonic()

    # it goes on: the interrupted repeat reaches the emergency office, later ones follow
    wait_for(
        "repeats after the restart",
        lambda: max(numbers(fake, LI)) >= 4 and max(numbers(fake, EO)) >= 4,
        20,
    )
    t_resumed = time.monotonic()
    # li's interrupted repeat was found at Twilio, not sent again
    status_now, sid_now = sent_log(mon.data_dir)[interrupted]
    assert status_now != "pending" and sid_now == fake.messages[sid_now]["sid"]
    assert fake.messages[sid_now]["to"] == LI and repeat_no(fake.messages[sid_now]["body"]) == 3

    # the acknowledgement stops the repeats
    status, body = wait_for(
        "the ack accepted",
        lambda: (r := ack(mon, oid, {"level": 1, "person": "li"}))[0] == 202 and r,
        10,
    )
    t_ack = time.time()
    acked = wait_for(
        "the ack applied", lambda: (e := escalation(mon, oid))["stage"] == "acknowledged" and e, 10
    )
    assert acked["next_wake"] is None
    count = len(sms(fake))
    time.sleep(1.5 * REPEAT_S)  # a repeat would have come within REPEAT_S
    assert len(sms(fake)) == count, [m["body"] for m in sms(fake)[count:]]

    # nothing lost, nothing twice
    msgs = sms(fake)
    li, eo = numbers(fake, LI), numbers(fake, EO)
    assert li == list(range(1, len(li) + 1)), li  # numbered on, no gap, no repeat twice
    assert eo == list(range(1, len(eo) + 1)), eo
    assert {m["to"] for m in msgs} == {LI, EO}
    pages = Counter((m["to"], repeat_no(m["body"])) for m in msgs)
    assert max(pages.values()) == 1, pages
    log = sent_log(mon.data_dir)
    key_of_sid = {sid: key for key, (_, sid) in log.items() if sid}
    orphans = [m["sid"] for m in msgs if m["sid"] not in key_of_sid]
    assert not orphans, f"{len(orphans)} messages at Twilio that no key accounts for"
    by_key = Counter((m["to"], key_of_sid[m["sid"]]) for m in msgs)
    assert max(by_key.values()) == 1, by_key
    assert all(s != "pending" for s, _ in log.values()), log
    final = escalation(mon, oid)
    assert sorted(m["key"] for m in final["messages"]) == sorted(key_of_sid.values())
    keys_before = [m["key"] for m in before["messages"]]
    assert [m["key"] for m in final["messages"]][: len(keys_before)] == keys_before

    status, text = request(mon.port, "GET", "/metrics")
    assert status == 200 and "13900139000" not in text and iid not in text
    # the window in which a kill loses an acknowledgement (202 given, not yet applied)
    applied = re.search(
        r"^\[([\d-]+ [\d:]+,\d+)\].*" + re.escape(f"{oid} acknowledged at level 1 by li (api)"),
        mon.log_path.read_text(errors="replace"),
        re.MULTILINE,
    )
    assert applied is not None
    logged = datetime.strptime(applied[1], "%Y-%m-%d %H:%M:%S,%f").astimezone()  # local time
    ack_window_s = logged.timestamp() - t_ack
    print(
        f"\nkill -9 mid-escalation: {len(msgs)} SMS (li {li}, emergency office {eo}); "
        f"down {t_back - t_kill:.1f} s (kill to ready), repeats again "
        f"{t_resumed - t_back:.1f} s after ready; windows (on the broker, not applied): "
        f"breached effect {effect_window_s * 1000:.0f} ms, ack ≤ {ack_window_s * 1000:.0f} ms; "
        f"whole test {time.monotonic() - t0:.1f} s"
    )
