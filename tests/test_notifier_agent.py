"""The live notifier without a broker: :class:`escalation.notifier.LiveNotifier` fed the records
of ``govclock-escalation-inputs`` (effects from the real ledger, delivery reports, acks,
ticks), with states in a plain dict as codec bytes; then the Faust agents themselves
(``agent.test_context()``, memory store), and the web routes' helpers.

Same roster and policy as tests/test_escalation.py: on Tuesday 2026-03-10 li holds u1 level
1 (zhang is the fallback), wang level 2, eo-b the emergency office; repeats every 30 min,
level 2 after 60 min. The incident is at T = 10:00, due 15:00, breached at 15:00:01.
"""

from __future__ import annotations

import asyncio
import itertools
import json
from dataclasses import replace
from pathlib import Path
from types import SimpleNamespace
from typing import Any

import pytest
from prometheus_client import CollectorRegistry, generate_latest
from test_escalation import CAL, FR, HOUR, MIN, POLICIES, POLICY_YAML, ROSTER, RULES, T
from test_roster import ROSTER_YAML

from channels.base import (
    MemorySentLog,
    OutboundMessage,
    SendResult,
    TransientChannelError,
)
from deadlines.escalation_codec import decode_state
from deadlines.escalation_state import Notify
from deadlines.ledger import Ledger
from deadlines.obligations import Effect
from escalation.inputs import (
    InputError,
    ack_input,
    delivery_input,
    effect_input,
    split_inputs,
    tick_input,
)
from escalation.notifier import LiveNotifier, Reroute
from escalation.service import NotifierService
from metrics.collectors import EscalationCollector, Metrics
from schemas.events import parse_event
from streams.publish import batch_records
from streams.table import ROWS_KEY, unpack_rows
from streams.topics import ESCALATION_INPUTS, escalation_partition
from tests.fake_twilio import twilio_signature
from web import acks as web_acks
from web import peers as web_peers
from web import responses as web_responses
from web import twilio as web_twilio
from worker.ledgers import effect_record

LI, ZHANG, WANG, EO_B = "+8613900139000", "+8613800138000", "+8613700137000", "+8613300133000"
N = 4
P = escalation_partition(FR, N)
ACK_SECRET = "agent-test-ack-secret-0123456789"
BREACH = T + 5 * HOUR + 1


class Phone:
    """A channel like Twilio's: an idempotency log, numbers it refuses at once, and a
    number of sends it cannot take yet ("later", like 429s past the retry budget)."""

    name = "phone"

    def __init__(self) -> None:
        self.log = MemorySentLog()
        self.sent: list[OutboundMessage] = []
        self.calls = 0
        self.refuse: set[str] = set()
        self.later = 0
        self._ids = itertools.count(1)

    def send(self, message: OutboundMessage) -> SendResult:
        self.calls += 1
        prior = self.log.get(message.key)
        if prior is not None:
            return replace(prior, replayed=True)
        if self.later:
            self.later -= 1
            raise TransientChannelError("429 Too Many Requests, retries used up")
        if message.to in self.refuse:
            result = SendResult(key=message.key, status="failed", error_code=21211)
        else:
            self.sent.append(message)
            result = SendResult(
                key=message.key, status="queued", provider_id=f"SM{next(self._ids)}"
            )
        self.log.record(result)
        return result

    def to(self) -> list[str]:
        return [m.to for m in self.sent]


class Clock:
    def __init__(self, now: float) -> None:
        self.now = now

    def __call__(self) -> float:
        return self.now


def incident() -> Any:
    return parse_event(
        {
            "event_id": "inc",
            "type": "incident.reported",
            "unit": "u1",
            "incident_id": "I1",
            "occurred_at": "2026-03-10T10:00:00+08:00",
            "title": "仓库火灾",
            "severity": "II",
        }
    )


class Rig:
    """A LiveNotifier with a dict store, a Phone, a clock, metrics; and the real ledger."""

    def __init__(self, phone: Phone | None = None, store: dict[bytes, bytes] | None = None):
        self.phone = phone or Phone()
        self.store: dict[bytes, bytes] = {} if store is None else store
        self.snapshot: dict[bytes, bytes] = {}
        self.clock = Clock(T)
        self.registry = CollectorRegistry()
        self.metrics = Metrics(self.registry)
        self.notifier = LiveNotifier(
            POLICIES,
            ROSTER,
            {"sms": self.phone},
            partitions=N,
            ack_url=lambda n: f"https://g.example/a/{n.key[-6:]}",
            callback_url=lambda p: f"https://g.example/v1/channels/twilio/status?p={p}",
            resolve_sid=self.phone.log.key_for,
            metrics=self.metrics,
            clock=self.clock,
            snapshot=self.snapshot,
        )
        self.ledger = Ledger(RULES, CAL)
        self.registry.register(EscalationCollector(lambda: self.notifier.unacknowledged.values()))

    def waiting(self) -> dict[str, float]:
        """``govclock_escalations_unacknowledged`` by its labels, as scraped."""
        prefix = "govclock_escalations_unacknowledged"
        return {k[len(prefix) :]: v for k, v in self.scrape().items() if k.startswith(prefix + "{")}

    async def put(self, raw: bytes, partition: int = P) -> Reroute | None:
        return await self.notifier.handle(self.store, partition, raw)

    async def effects(self, effects: list[Effect], at: int) -> None:
        self.clock.now = at
        for fx in effects:
            await self.put(effect_input(effect_record(fx), at))

    async def until(self, at: int) -> None:
        """Let time pass to ``at``: the ledger's ticks and the notifier's, in order, each
        exactly when it asks (as the sweeper and the escalation timer do)."""
        while True:
            wakes = [w for w in (self.ledger.next_due(), self.notifier.next_wake(P)) if w]
            if not wakes or min(wakes) > at:
                break
            now = min(wakes)
            await self.effects(self.ledger.tick(now), now)
            if self.notifier.wants_tick(P, now):
                self.notifier.tick_sent(P, now)
                await self.put(tick_input(now))
        self.clock.now = at

    async def start(self) -> None:
        self.ledger.tick(T)
        await self.effects(self.ledger.apply(incident()), T)

    def state(self) -> Any:
        return decode_state(self.store[FR.encode()])

    def scrape(self) -> dict[str, float]:
        out = {}
        for line in generate_latest(self.registry).decode().splitlines():
            if line and not line.startswith("#"):
                name, value = line.rsplit(" ", 1)
                out[name] = float(value)
        return out


def key_to(state: Any, person: str, kind: str) -> str:
    return next(s.key for s in state.sent if s.contact.person_id == person and s.kind == kind)


# -- the runtime ---------------------------------------------------------------------------


async def test_breach_failed_report_falls_back_at_once_and_an_ack_stops_the_repeats() -> None:
    rig = Rig()
    await rig.start()
    await rig.until(BREACH)
    # warnings at 12:30 and 14:00 to li; the breach to li and the emergency office
    assert rig.phone.to() == [LI, LI, LI, EO_B]
    texts = [m.text for m in rig.phone.sent]
    assert "请立即处置" in texts[2] and texts[2].endswith(
        f"确认https://g.example/a/{texts[2][-6:]}"
    )
    assert all(
        m.status_callback_url and m.status_callback_url.endswith(f"?p={P}") for m in rig.phone.sent
    )
    state = rig.state()
    assert state.stage == "breached" and {s.status for s in state.sent} == {"queued"}
    assert rig.notifier.next_wake(P) == BREACH + 30 * MIN  # the repeat
    assert rig.waiting() == {'{level="1",rule="first_release_5h",unit="u1"}': 1}

    # Twilio reports li's breach page undelivered (by its SID only): zhang, in the same second
    sid = rig.phone.log.get(key_to(state, "li", "breached"))
    assert sid is not None and sid.provider_id
    rig.clock.now = BREACH + 40
    await rig.put(delivery_input(None, sid.provider_id, "undelivered", 30003, BREACH + 40))
    assert rig.phone.to()[4:] == [ZHANG]
    # the same page, another person (and a link of its own)
    assert rig.phone.sent[4].text.split("确认")[0] == rig.phone.sent[2].text.split("确认")[0]
    assert rig.phone.sent[4].text != rig.phone.sent[2].text
    fallback = next(s for s in rig.state().sent if s.kind == "fallback")
    assert (fallback.contact.person_id, fallback.attempt, fallback.at) == ("zhang", 1, BREACH + 40)
    # a report delivered twice, or a late "sent" after the failure, changes nothing
    await rig.put(delivery_input(None, sid.provider_id, "undelivered", 30003, BREACH + 41))
    await rig.put(delivery_input(None, sid.provider_id, "sent", None, BREACH + 42))
    assert len(rig.phone.sent) == 5

    await rig.until(BREACH + 30 * MIN)  # the repeat: rung 1 again, "第2次"
    assert rig.phone.to()[5:] == [LI, EO_B] and "第2次" in rig.phone.sent[5].text

    rig.clock.now = BREACH + 35 * MIN
    await rig.put(ack_input(FR, 1, "li", BREACH + 35 * MIN))
    await rig.until(T + 9 * HOUR)
    assert len(rig.phone.sent) == 7  # no repeat, no level 2
    assert rig.waiting() == {}  # acknowledged: nothing waits
    state = rig.state()
    assert state.stage == "acknowledged" and rig.notifier.next_wake(P) is None
    assert rig.snapshot[FR.encode()] == rig.store[FR.encode()]  # the snapshot follows

    got = rig.scrape()
    assert got['govclock_notifications_total{channel="sms",state="sent"}'] == 7
    assert got['govclock_notifications_total{channel="sms",state="failed"}'] == 1
    assert got['govclock_notifications_total{channel="sms",state="acknowledged"}'] == 1
    assert got['govclock_due_to_first_notification_seconds_count{rule="first_release_5h"}'] == 1
    assert got['govclock_due_to_first_notification_seconds_sum{rule="first_release_5h"}'] == 1
    # paged at the very tick that noticed the breach
    detected = 'govclock_detected_to_first_notification_seconds_{}{{rule="first_release_5h"}}'
    assert got[detected.format("count")] == 1 and got[detected.format("sum")] == 0
    assert got["govclock_escalation_wake_lag_seconds_count"] >= 1
    labels = {v for fam in rig.registry.collect() for x in fam.samples for v in x.labels.values()}
    assert labels <= {"sms", "sent", "failed", "acknowledged", "delivered", "first_release_5h"} | {
        x for x in labels if x.replace(".", "").replace("+Inf", "").isdigit() or x == "+Inf"
    }, labels  # channels, states, rules and bucket bounds: no person, number or obligation


async def test_a_breach_reported_late_counts_its_lateness_from_the_deadline_only() -> None:
    """An incident reported 7 h after it happened breaches at once: its first page is 7 h
    after the deadline, but only 2 s after the monitor noticed the breach."""
    rig = Rig()
    due = T + 5 * HOUR
    noticed = due + 7 * HOUR
    opened = Effect("opened", FR, "first_release_5h", "I1", "u1", T, due, "pending", "inc")
    breached = opened._replace(
        kind="breached", at=due, status="missed", event_id=None, detected_at=noticed
    )
    await rig.effects([opened, breached], noticed + 2)
    assert len(rig.phone.sent) == 2  # whoever is on call at 22:00, and the emergency office

    got = rig.scrape()
    rule = '{rule="first_release_5h"}'
    assert got[f"govclock_due_to_first_notification_seconds_sum{rule}"] == 7 * HOUR + 2
    assert got[f"govclock_detected_to_first_notification_seconds_sum{rule}"] == 2
    assert got[f'govclock_detected_to_first_notification_seconds_bucket{{le="2.0",{rule[1:]}'] == 1


async def test_a_restart_from_the_stored_states_loses_nothing_and_sends_nothing_twice() -> None:
    rig = Rig()
    await rig.start()
    await rig.until(BREACH + 30 * MIN)  # breach + one repeat
    sent_before = len(rig.phone.sent)
    wake = rig.notifier.next_wake(P)

    # a new worker on the same partition: the table (recovered from its changelog) and the
    # channel's durable sent log are what survives
    again = Rig(phone=rig.phone, store=dict(rig.store))
    again.ledger = rig.ledger
    assert again.notifier.restore([P], again.store.items()) == len(again.store)
    assert again.notifier.restored and again.notifier.next_wake(P) == wake
    assert again.waiting() == {'{level="1",rule="first_release_5h",unit="u1"}': 1}  # restored
    # an effect already applied, delivered again (at-least-once), acts once
    breached = Effect(
        "breached", FR, "first_release_5h", "I1", "u1", T + 5 * HOUR, T + 5 * HOUR, "missed"
    )
    again.clock.now = BREACH + 31 * MIN
    await again.put(effect_input(effect_record(breached), BREACH + 31 * MIN))
    assert len(rig.phone.sent) == sent_before
    await again.until(BREACH + 60 * MIN)  # level 2, at its time, once
    assert rig.phone.to()[sent_before:] == [WANG]
    assert again.waiting() == {'{level="2",rule="first_release_5h",unit="u1"}': 1}

    # a crash after the send but before the state was written: the input comes again to the
    # old state, the same key goes to the channel, whose sent log answers it
    old_store = dict(again.store)
    again.clock.now = BREACH + 90 * MIN
    await again.put(tick_input(BREACH + 90 * MIN))  # the repeat at level 2
    assert rig.phone.to()[-1] == WANG and len(rig.phone.sent) == sent_before + 2
    calls = rig.phone.calls
    crashed = Rig(phone=rig.phone, store=old_store)
    crashed.notifier.restore([P], old_store.items())
    crashed.clock.now = BREACH + 90 * MIN
    await crashed.put(tick_input(BREACH + 90 * MIN))
    assert rig.phone.calls == calls + 1 and len(rig.phone.sent) == sent_before + 2
    assert crashed.state().sent[-1].status == "queued"  # recorded from the replayed result


class Killed(BaseException):
    """The process dies (kill -9) in the middle of a send."""


class DyingPhone(Phone):
    """A provider that, once ``armed``, takes the next message to ``victim`` and then the
    process dies before the answer is back: what the snapshot held at that instant is kept."""

    def __init__(self, victim: str) -> None:
        super().__init__()
        self.victim = victim
        self.armed = False
        self.snapshot: dict[bytes, bytes] = {}
        self.at_kill: dict[bytes, bytes] | None = None

    def send(self, message: OutboundMessage) -> SendResult:
        if not self.armed or message.to != self.victim:
            return super().send(message)
        self.armed = False
        self.sent.append(message)  # taken by the provider; no answer, nothing recorded
        self.at_kill = dict(self.snapshot)
        raise Killed


async def test_a_kill_during_a_send_comes_back_with_that_message_pending_same_key_same_text() -> (
    None
):
    """The state is written ahead of each send: after a kill -9 mid-send the message comes back
    ``pending`` and is sent again with the same key and the *same text* (send time, link), even
    minutes later, which is what the Twilio channel matches an earlier attempt by. (Before,
    the state came back from before the decision and the repeat was decided again at the new
    time: a new text, sent twice.)"""
    phone = DyingPhone(LI)
    rig = Rig(phone=phone)
    phone.snapshot = rig.snapshot
    await rig.start()
    await rig.until(BREACH + 30 * MIN - 1)  # the warnings and the breach pages
    before = len(phone.sent)
    phone.armed = True
    with pytest.raises(Killed):
        await rig.until(BREACH + 30 * MIN)  # the repeat: li's copy is taken, then the kill
    assert phone.at_kill is not None and phone.to()[before:] == [LI]
    taken = phone.sent[-1]
    assert "第2次" in taken.text
    at_kill = decode_state(phone.at_kill[FR.encode()])
    pending = [(s.key, s.contact.person_id) for s in at_kill.sent if s.status == "pending"]
    assert pending == [(taken.key, "li"), (pending[1][0], "eo-b")]  # written ahead of the send
    assert rig.notifier.stats["states_written_ahead"] >= 1

    # started again 3 minutes later from the snapshot (the embedded broker is seeded from it)
    again = Rig(phone=Phone(), store=dict(phone.at_kill))
    assert again.notifier.restore([P], again.store.items()) == 1
    again.clock.now = BREACH + 33 * MIN
    assert again.notifier.wants_tick(P, again.clock.now)
    await again.put(tick_input(int(again.clock.now)))
    resent = [m for m in again.phone.sent if m.key == taken.key]
    assert [(m.key, m.text) for m in resent] == [(taken.key, taken.text)]  # same key, same text
    assert again.phone.to() == [LI, EO_B]  # and the emergency office's copy, never sent before
    assert "第2次" in again.phone.sent[1].text
    state = again.state()
    assert {s.status for s in state.sent} == {"queued"} and state.repeats == at_kill.repeats


async def test_a_send_the_provider_cannot_take_stays_pending_and_is_retried_same_key() -> None:
    rig = Rig()
    await rig.start()
    await rig.until(BREACH - 1)
    rig.phone.later = 1  # the first breach page: retries used up
    await rig.until(BREACH)
    state = rig.state()
    pending = [s for s in state.sent if s.status == "pending"]
    assert [s.contact.person_id for s in pending] == ["li"]
    assert rig.phone.to()[-1] == EO_B  # the rest of the rung went out
    assert rig.notifier.next_wake(P) == BREACH + 5  # retry in 5 s, before the repeat
    assert not rig.notifier.wants_tick(P, BREACH + 4)
    await rig.until(BREACH + 5)
    assert rig.phone.to()[-1] == LI and rig.phone.sent[-1].key == pending[0].key
    assert {s.status for s in rig.state().sent} == {"queued"}
    assert rig.notifier.next_wake(P) == BREACH + 30 * MIN


async def test_nobody_on_call_is_an_alert_counted_by_unit_and_refusals_fall_back() -> None:
    rig = Rig()
    rig.phone.refuse.add(LI)
    effect = Effect(
        "opened",
        "first_release_5h:I9",
        "first_release_5h",
        "I9",
        "u-none",
        T,
        BREACH - 1,
        "pending",
    )
    part = escalation_partition(effect.obligation_id, N)
    await rig.put(effect_input(effect_record(effect), T), part)
    breached = effect._replace(kind="breached", at=BREACH - 1, status="missed")
    rig.clock.now = BREACH
    await rig.put(effect_input(effect_record(breached), BREACH), part)
    # the unit is not in the roster: an alert; the emergency office is paged
    assert [a.unit for a in rig.notifier.alerts] == ["u-none"]
    assert rig.phone.to() == [EO_B]
    got = rig.scrape()
    assert got['govclock_no_on_call_total{unit="u-none"}'] == 1
    # li's number refused at once: zhang gets the warning in the same call
    await rig.start()
    await rig.until(T + 150 * MIN)
    assert rig.phone.to()[-1:] == [ZHANG] and LI not in rig.phone.to()
    assert rig.scrape()['govclock_notifications_total{channel="sms",state="failed"}'] == 1


async def test_inputs_of_another_partition_are_rerouted_and_garbage_is_refused() -> None:
    rig = Rig()
    raw = ack_input(FR, 1, "li", T)
    other = (P + 1) % N
    assert await rig.put(raw, other) == Reroute(FR, P, raw)
    assert await rig.put(raw) is None and rig.notifier.stats["acks_unknown"] == 1
    for bad in (
        b"{",
        b"[]",
        b'{"ack": {"obligation_id": "x", "level": 0, "person": "li"}}',
        b'{"delivery": {"status": "sent", "at": 1}}',
        b'{"what": 1}',
    ):
        with pytest.raises(InputError):
            await rig.put(bad)


# -- the Faust agents ------------------------------------------------------------------------


def notifier_app(tmp_path: Path, **settings: Any) -> Any:
    """The worker's app with the notifier on (the test roster and policy written to
    ``tmp_path``), no broker (nothing is started); ``settings`` add to or override these."""
    from config.settings import load_settings
    from monitor.app import create_app

    (tmp_path / "roster.yaml").write_text(ROSTER_YAML, encoding="utf-8")
    (tmp_path / "policy.yaml").write_text(POLICY_YAML, encoding="utf-8")
    values: dict[str, Any] = {
        "env_file": None,
        "data_dir": tmp_path / "var",
        "kafka_broker": "127.0.0.1:1",
        "web_port": 1,
        "roster_file": tmp_path / "roster.yaml",
        "policy_file": tmp_path / "policy.yaml",
        "ack_secret": ACK_SECRET,  # required with a cluster (kafka_broker)
    }
    values.update(settings)
    return create_app(load_settings(**values), "127.0.0.1:1", store="memory://", embedded=False)


@pytest.fixture
def ctx(tmp_path: Path) -> Any:
    ctx = notifier_app(tmp_path)
    sent: dict[str, list[dict[str, Any]]] = {}

    def recorder(topic: str) -> Any:
        def send_soon(**kwargs: Any) -> Any:
            sent.setdefault(topic, []).append(kwargs)
            return SimpleNamespace(message=SimpleNamespace(partition=kwargs.get("partition") or 0))

        return send_soon

    assert ctx.notifier is not None
    ctx.notifier.inputs.send_soon = recorder("inputs")  # re-routed inputs
    ctx.notifier.table.changelog_topic = SimpleNamespace(send_soon=recorder("changelog"))

    async def publish(topic: str, partition: int, records: list[tuple[bytes, bytes]]) -> Any:
        """Stands in for ``Context.publish`` (the feed's batches to the inputs topic)."""
        assert topic == ESCALATION_INPUTS
        for key, value in records:
            recorder("inputs")(key=key, value=value, partition=partition)
        return []

    ctx.publish = publish

    async def dead(**kwargs: Any) -> Any:
        recorder("dead")(**kwargs)
        acked: asyncio.Future[None] = asyncio.get_running_loop().create_future()
        acked.set_result(None)  # what the broker's acknowledgement would be
        return acked

    ctx.dead_letters.send = dead
    ctx.sent = sent
    return ctx


async def settled(done: Any, timeout: float = 5.0) -> None:
    for _ in range(int(timeout / 0.01)):
        if done():
            return
        await asyncio.sleep(0.01)
    raise AssertionError("the agent did not get there in time")


def agent(ctx: Any, name: str) -> Any:
    return next(a for a in ctx.app.agents.values() if a.name.endswith(name))


def test_the_notifier_series_exist_at_zero_from_the_start(ctx: Any) -> None:
    text = generate_latest(ctx.metrics.registry).decode()
    for channel in ("sms", "voice"):  # the policy's channels
        for state in ("sent", "delivered", "failed", "acknowledged"):
            assert (
                f'govclock_notifications_total{{channel="{channel}",state="{state}"}} 0.0' in text
            )
    assert 'govclock_no_on_call_total{unit="u1"} 0.0' in text
    assert 'govclock_no_on_call_total{unit="emergency_office"} 0.0' in text


def test_without_a_roster_the_notifier_is_off(tmp_path: Path) -> None:
    from config.settings import load_settings
    from monitor.app import create_app

    settings = load_settings(env_file=None, data_dir=tmp_path, kafka_broker="127.0.0.1:1")
    ctx = create_app(settings, "127.0.0.1:1", store="memory://", embedded=False)
    assert ctx.notifier is None
    assert not [a for a in ctx.app.agents.values() if "notifier" in a.name]


async def test_feed_rekeys_each_notification_by_obligation_id_in_batches(ctx: Any) -> None:
    from agents.notifier import EffectFeed

    fx = Effect("opened", FR, "first_release_5h", "I1", "u1", T, T + 5 * HOUR, "pending", "inc")
    subject_partition = (P + 1) % N  # the ledger sends it in the subject's partition

    def record(key: bytes | None, offset: int) -> Any:
        return SimpleNamespace(
            key=key,
            value=effect_record(fx),
            topic="govclock-notifications",
            partition=subject_partition,
            offset=offset,
        )

    candidates = [f"{FR}-{i}" for i in range(100)]
    in_p = next(o for o in candidates if escalation_partition(o, N) == P)
    same = fx._replace(obligation_id=in_p)
    other = fx._replace(
        obligation_id=next(o for o in candidates if escalation_partition(o, N) != P)
    )

    def of(effect: Effect, offset: int) -> Any:
        r = record(effect.obligation_id.encode(), offset)
        r.value = effect_record(effect)
        return r

    feed = EffectFeed(ctx, clock=lambda: BREACH)
    acked = await feed.forward(
        [record(FR.encode(), 7), record(None, 8), of(same, 9), of(other, 10)]
    )
    await acked
    by_partition = {sent["partition"]: sent for sent in ctx.sent["inputs"]}
    # one batch record per escalation partition, its inputs in order
    assert len(by_partition) == len(ctx.sent["inputs"])
    wrapped = [json.loads(item) for item in split_inputs(by_partition[P]["value"])]
    assert [w["effect"]["obligation_id"] for w in wrapped] == [FR, in_p]
    assert wrapped[0]["effect"]["key"] == fx.key and wrapped[0]["at"] == BREACH
    (elsewhere,) = split_inputs(by_partition[escalation_partition(other.obligation_id, N)]["value"])
    assert json.loads(elsewhere)["effect"]["obligation_id"] == other.obligation_id
    (dead,) = ctx.sent["dead"]
    letter = json.loads(dead["value"])
    assert "without a key" in letter["reason"] and letter["offset"] == 8


def test_rekey_keeps_order_within_each_escalation_partition() -> None:
    from agents.notifier import rekey

    oids = [f"first_release_5h:I{i}" for i in range(40)]
    records = [
        (oid.encode(), json.dumps({"n": i, "obligation_id": oid}).encode())
        for i, oid in enumerate(oids)
    ]
    by_partition, keyless = rekey([*records, (None, b"{}")], N, BREACH)
    assert keyless == [40]
    assert sum(map(len, by_partition.values())) == 40
    assert len(by_partition) > 1
    for partition, values in by_partition.items():
        effects = [json.loads(v)["effect"] for v in values]
        assert {escalation_partition(e["obligation_id"], N) for e in effects} == {partition}
        ns = [e["n"] for e in effects]
        assert ns == sorted(ns)


async def test_notifier_agent_applies_inputs_writes_the_table_and_sends(
    ctx: Any, capsys: pytest.CaptureFixture[str]
) -> None:
    runtime = ctx.notifier.runtime
    runtime.clock = Clock(BREACH)
    opened = Effect("opened", FR, "first_release_5h", "I1", "u1", T, T + 5 * HOUR, "pending", "inc")
    breached = opened._replace(kind="breached", at=T + 5 * HOUR, status="missed", event_id=None)
    async with agent(ctx, "notifier").test_context() as probe:
        for fx in (opened, breached):
            await probe.put(effect_input(effect_record(fx), BREACH), key=FR.encode(), partition=P)
        await probe.put(b"not json", key=FR.encode(), partition=P)
        await settled(lambda: "dead" in ctx.sent)  # sends run in threads: let them finish
    printed = capsys.readouterr().out
    # the console channel (the default): li and the emergency office, numbers masked
    assert "[SMS to +86139****9000] 【政务时限】" in printed and "+86133****3000" in printed
    assert "+8613900139000" not in printed
    # multi-row changelog records (streams/table.py): one per batch, and one before each send
    records = ctx.sent["changelog"]
    assert {r["key"] for r in records} == {ROWS_KEY} and {r["partition"] for r in records} == {P}
    rows = [row for r in records for row in unpack_rows(r["value"])]
    assert {k for k, _ in rows} == {FR.encode()}
    last = rows[-1][1]
    assert last is not None
    state = decode_state(last)
    assert state.stage == "breached" and [s.contact.person_id for s in state.sent] == ["li", "eo-b"]
    assert ctx.notifier.table[FR.encode()] == last
    assert runtime.next_wake(P) == BREACH + 30 * MIN
    (dead,) = ctx.sent["dead"]
    assert "not valid JSON" in json.loads(dead["value"])["reason"]
    # the snapshot on disk has it too (a fresh broker's changelog is seeded from it)
    from agents.notifier import Snapshot

    assert isinstance(runtime.snapshot, Snapshot)
    assert runtime.snapshot.get(FR.encode()) == last


async def test_a_batch_of_inputs_is_applied_in_order_and_a_bad_item_alone_refused(
    ctx: Any,
) -> None:
    runtime = ctx.notifier.runtime
    runtime.clock = Clock(BREACH)
    opened = Effect("opened", FR, "first_release_5h", "I1", "u1", T, T + 5 * HOUR, "pending", "inc")
    breached = opened._replace(kind="breached", at=T + 5 * HOUR, status="missed", event_id=None)
    items = [effect_input(effect_record(opened), BREACH), b'{"bogus":1}']
    items.append(effect_input(effect_record(breached), BREACH))
    (batch,) = batch_records(items)
    async with agent(ctx, "notifier").test_context() as probe:
        await probe.put(batch, key=None, partition=P)
        await probe.put(b'{"batch":{"not":"a list"}}', key=None, partition=P)
        await settled(lambda: len(ctx.sent.get("dead", [])) == 2)
    state = decode_state(ctx.notifier.table[FR.encode()])
    assert state.stage == "breached" and [s.contact.person_id for s in state.sent] == ["li", "eo-b"]
    first, second = (json.loads(d["value"]) for d in ctx.sent["dead"])
    assert "expected {'effect'" in first["reason"] and json.loads(first["record"]) == {"bogus": 1}
    assert "not a batch of inputs" in second["reason"]


def test_the_timer_asks_for_one_tick_at_a_time_per_partition() -> None:
    rig = Rig()
    rig.notifier.wakes = {P: {FR: 100}, (P + 1) % N: {"x": 200}}
    assert not rig.notifier.wants_tick(P, 99.9)
    assert rig.notifier.wants_tick(P, 100.0)
    rig.notifier.tick_sent(P, 100.0)
    assert not rig.notifier.wants_tick(P, 101.0)  # on its way
    assert rig.notifier.wants_tick(P, 105.0)  # lost? send another
    assert not rig.notifier.wants_tick((P + 1) % N, 150)


# -- the web routes' helpers -------------------------------------------------------------------


def service(sent_log: MemorySentLog | None = None) -> NotifierService:
    return NotifierService(
        runtime=Rig().notifier,
        inputs=None,
        table={},
        roster=ROSTER,
        channel="twilio",
        sent_log=sent_log or MemorySentLog(),
        public_url="https://govclock.example.gov.cn",
        twilio_auth_token="tok" * 8,
    )


def test_ack_bodies_are_checked_field_by_field() -> None:
    svc = service()
    assert web_acks.parse_ack(b'{"level": 2, "person": "wang"}', svc) == (2, "wang")
    assert web_acks.parse_ack(b'{"level": 1, "person_id": "li"}', svc) == (1, "li")
    for body, message in [
        (b"{", "not valid JSON"),
        (b"[1]", "expected a JSON object"),
        (b'{"level": "1", "person": "li"}', "level: expected an integer"),
        (b'{"level": 1}', "person: expected a roster person id"),
        (b'{"level": 1, "person": "nobody"}', "'nobody' is not in the roster"),
    ]:
        with pytest.raises(web_responses.Refused) as exc:
            web_acks.parse_ack(body, svc)
        assert exc.value.status == 400 and message in exc.value.message


async def test_status_callbacks_are_verified_and_routed(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setattr(web_twilio, "SID_RETRY_DELAYS_S", (0.01,))
    log = MemorySentLog()
    key = f"{FR}|breach@{T + 5 * HOUR}#0|L1|li|0"
    log.record(SendResult(key=key, status="queued", provider_id="SMabc"))
    svc = service(log)
    path = f"/v1/channels/twilio/status?p={P}"
    form = {"MessageSid": "SMabc", "MessageStatus": "undelivered", "ErrorCode": "30003", "To": LI}
    body = "&".join(f"{k}={v}" for k, v in form.items()).replace("+", "%2B").encode()
    good = twilio_signature("tok" * 8, "https://govclock.example.gov.cn" + path, form)
    report = web_twilio.check_status_callback(svc, path, body, {"X-Twilio-Signature": good})
    assert report == ("SMabc", "undelivered", 30003)
    assert await web_twilio.delivery_target(svc, report, "0", N) == (key, P)
    for headers in ({}, {"X-Twilio-Signature": "bm9wZQ=="}):
        with pytest.raises(web_responses.Refused) as exc:
            web_twilio.check_status_callback(svc, path, body, headers)
        assert exc.value.status == 403
    with pytest.raises(web_responses.Refused) as exc:  # signed for another URL (the hint changed)
        web_twilio.check_status_callback(
            svc, "/v1/channels/twilio/status?p=9", body, {"X-Twilio-Signature": good}
        )
    assert exc.value.status == 403
    with pytest.raises(web_responses.Refused) as exc:
        web_twilio.check_status_callback(None, path, body, {"X-Twilio-Signature": good})
    assert exc.value.status == 404
    # a SID the sent log does not know (yet): the partition named in the URL, else 404
    unknown = report._replace(provider_id="SMzzz")
    assert await web_twilio.delivery_target(svc, unknown, "2", N) == (None, 2)
    with pytest.raises(web_responses.Refused) as exc:
        await web_twilio.delivery_target(svc, unknown, None, N)
    assert exc.value.status == 404

    # it turns up while we wait: the key after all
    async def record_soon() -> None:
        await asyncio.sleep(0.005)
        log.record(SendResult(key=key, status="queued", provider_id="SMlate"))

    task = asyncio.create_task(record_soon())
    assert await web_twilio.delivery_target(
        svc, report._replace(provider_id="SMlate"), None, N
    ) == (
        key,
        P,
    )
    await task


# -- acknowledgement links ---------------------------------------------------------------------


async def test_the_link_index_follows_the_states_and_is_rebuilt_on_restore() -> None:
    """The owner of an escalation partition resolves a link's ref from its own states: as
    states are written, and again from the table after a restart or a rebalance."""
    from escalation.links import make_ack_url, token_partition, verify

    rig = Rig()
    runtime = rig.notifier
    runtime.ack_url = make_ack_url(
        "https://g.example",
        ACK_SECRET,
        index=runtime.refs,
        partition=lambda oid: escalation_partition(oid, N),
    )
    await rig.start()
    await rig.until(BREACH)
    tokens = [m.text.rsplit("/a/", 1)[1] for m in rig.phone.sent]
    assert {token_partition(t) for t in tokens} == {P}
    claims = [verify(t, ACK_SECRET, BREACH, runtime.refs) for t in tokens]
    assert [c.person_id for c in claims] == ["li", "li", "li", "eo-b"]
    assert {(c.obligation_id, c.partition) for c in claims} == {(FR, P)}

    again = Rig(phone=rig.phone, store=dict(rig.store))  # another worker takes P over
    assert len(again.notifier.refs) == 0
    again.notifier.restore([P], again.store.items())
    assert {verify(t, ACK_SECRET, BREACH, again.notifier.refs).person_id for t in tokens} == {
        "li",
        "eo-b",
    }
    again.notifier.restore([(P + 1) % N], again.store.items())  # P moved away: forgotten
    assert len(again.notifier.refs) == 0


def test_ack_secret_is_generated_once_per_data_dir_or_required_on_a_cluster(
    tmp_path: Path, caplog: pytest.LogCaptureFixture
) -> None:
    import logging

    from agents.notifier import ACK_SECRET_FILE, ack_secrets
    from config.settings import Settings, SettingsError

    embedded = Settings(data_dir=tmp_path / "var")
    with caplog.at_level(logging.INFO, logger="govclock.notifier"):
        (first,) = ack_secrets(embedded)
    path = tmp_path / "var" / ACK_SECRET_FILE
    assert path.stat().st_mode & 0o777 == 0o600 and len(first) >= 32
    assert f"generated a secret for acknowledgement links in {path}" in caplog.text
    assert first not in caplog.text
    assert ack_secrets(embedded) == (first,)  # the same on every start
    path.chmod(0o644)
    assert ack_secrets(embedded) == (first,) and path.stat().st_mode & 0o777 == 0o600
    path.write_text("short\n")
    with pytest.raises(SettingsError, match="not a usable acknowledgement secret"):
        ack_secrets(embedded)

    configured = Settings(data_dir=tmp_path / "other", ack_secret=f"{ACK_SECRET},{'o' * 20}")
    assert ack_secrets(configured) == (ACK_SECRET, "o" * 20)
    assert not (tmp_path / "other").exists()
    cluster = Settings(data_dir=tmp_path / "c", kafka_broker="kafka:9092")
    with pytest.raises(SettingsError, match="GOVCLOCK_ACK_SECRET: required with KAFKA_BROKER"):
        ack_secrets(cluster)
    shown = dict(configured.describe())
    assert shown["GOVCLOCK_ACK_SECRET"] == "********"
    assert shown["GOVCLOCK_ACK_TTL_HOURS"] == "72.0 (default)"


def test_bad_ack_settings_never_show_the_secret(monkeypatch: pytest.MonkeyPatch) -> None:
    from config.settings import SettingsError, load_settings

    monkeypatch.setenv("GOVCLOCK_ACK_SECRET", f"{ACK_SECRET},tooshort")
    monkeypatch.setenv("GOVCLOCK_ACK_TTL_HOURS", "0")
    with pytest.raises(SettingsError) as err:
        load_settings(env_file=None)
    text = str(err.value)
    assert "GOVCLOCK_ACK_SECRET='********': secret 2 of 2 is 8 bytes" in text
    assert "GOVCLOCK_ACK_TTL_HOURS=" in text
    assert ACK_SECRET not in text and "tooshort" not in text


def test_a_link_is_routed_to_the_worker_that_owns_its_partition() -> None:
    from yarl import URL

    metadata = {
        "http://w1:6066": {"govclock-escalations-changelog": [0, 2]},
        "http://w2:6066": {"govclock-escalations-changelog": [1, 3]},
    }
    assert web_peers.owner_of_partition(metadata, 3) == URL("http://w2:6066")
    assert web_peers.owner_of_partition(metadata, 0) == URL("http://w1:6066")
    assert web_peers.owner_of_partition(metadata, 7) is None
    assert web_peers.owner_of_partition({}, 0) is None
    assert web_peers.obligation_path("online_posting_10wd:沪交规〔2026〕2号") == (
        "/v1/obligations/online_posting_10wd:%E6%B2%AA%E4%BA%A4%E8%A7%84"
        "%E3%80%942026%E3%80%952%E5%8F%B7"
    )
    assert web_peers.obligation_path("annual_report:sh-gov/2026").endswith("sh-gov%2F2026")


def test_notify_rebuilt_from_the_state_keeps_its_key() -> None:
    from escalation.sent import notify_of

    rig = Rig()
    asyncio.run(rig.start())
    asyncio.run(rig.until(BREACH))
    state = rig.state()
    for s in state.sent:
        n = notify_of(state, s)
        assert isinstance(n, Notify) and n.key == s.key and n.phone == s.contact.phone
        assert n.masked_phone in repr(n) and s.contact.phone not in repr(n)
