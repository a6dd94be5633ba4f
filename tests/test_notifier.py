"""The notifier runtime: ledger effects through the escalation core to a real channel.

Same policy and roster as tests/test_escalation.py (li holds u1 level 1, wang level 2,
eo-b the emergency office on Tuesday 2026-03-10); here the messages go through the console
channel, and a channel that refuses one number shows the fallback happening at once.
"""

from __future__ import annotations

import io

from test_escalation import CAL, HOUR, MIN, POLICIES, ROSTER, RULES, T

from channels.base import OutboundMessage, SendResult
from channels.console import ConsoleChannel
from deadlines.ledger import Ledger
from deadlines.obligations import Effect
from escalation.inputs import effect_from_record
from escalation.memory import Notifier
from schemas.events import parse_event
from worker.ledgers import effect_record

LI, WANG, EO_B = "+8613900139000", "+8613700137000", "+8613300133000"


def incident() -> object:
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


class Refusing:
    """A channel that refuses one number at once (like Twilio's 21211) and sends the rest."""

    def __init__(self, refuse: str, inner: ConsoleChannel) -> None:
        self.refuse, self.inner = refuse, inner

    def send(self, message: OutboundMessage) -> SendResult:
        if message.to == self.refuse:
            return SendResult(key=message.key, status="failed", error_code=21211)
        return self.inner.send(message)


def run(notifier: Notifier, until: int) -> None:
    """Drive the ledger and the notifier together, each woken exactly when it asks."""
    ledger = Ledger(RULES, CAL)
    ledger.tick(T)
    effects = ledger.apply(incident())  # type: ignore[arg-type]
    now = T
    while True:
        for fx in effects:  # through the topic's encoding, as the agent will see them
            notifier.on_effect(effect_from_record(effect_record(fx)), now)
        wakes = [w for w in (ledger.next_due(), notifier.next_wake()) if w is not None]
        if not wakes or min(wakes) > until:
            break
        now = min(wakes)
        effects = ledger.tick(now)
        notifier.tick(now)


def phones(console: ConsoleChannel) -> list[str]:
    return [r.to for r in console.sent]


def notifier(channel: object) -> Notifier:
    return Notifier(
        POLICIES,
        ROSTER,
        {"sms": channel},  # type: ignore[dict-item]
        ack_url=lambda n: f"https://govclock.example/ack/{n.key[:8]}",
    )


def test_warnings_then_breach_then_repeat_and_escalation_reach_the_right_phones() -> None:
    console = ConsoleChannel(io.StringIO())
    n = notifier(console)
    run(n, T + 6 * HOUR + 1)
    # 2.5 h and 4 h: li (u1 level 1); 5 h: li and the emergency office; 5.5 h: repeat;
    # 6 h: nobody acknowledged, so level 2 (wang).
    assert phones(console)[:4] == [LI, LI, LI, EO_B]
    assert WANG in phones(console)
    assert all("https://govclock.example/ack/" in r.text for r in console.sent)
    assert not n.alerts


def test_an_acknowledgement_stops_the_repeats() -> None:
    console = ConsoleChannel(io.StringIO())
    n = notifier(console)
    run(n, T + 5 * HOUR + 1)  # breached, paged
    before = len(console.sent)
    n.acknowledge("first_release_5h:I1", 1, "li", T + 5 * HOUR + 10 * MIN)
    n.tick(T + 8 * HOUR)
    assert len(console.sent) == before


def test_a_refused_number_falls_back_at_once_and_nothing_is_sent_twice() -> None:
    console = ConsoleChannel(io.StringIO())
    n = notifier(Refusing(LI, console))
    run(n, T + 2 * HOUR + 31 * MIN)  # the first warning, at 2.5 h
    # li's number is refused: the next person at that level gets it in the same second.
    assert phones(console) and LI not in phones(console)
    failed = [r for r in n.results if r.status == "failed"]
    assert len(failed) == 1 and failed[0].error_code == 21211
    keys = [r.key for r in console.sent]
    assert len(keys) == len(set(keys))


def test_the_same_effect_twice_sends_once() -> None:
    console = ConsoleChannel(io.StringIO())
    n = notifier(console)
    ledger = Ledger(RULES, CAL)
    ledger.tick(T)
    ledger.apply(incident())  # type: ignore[arg-type]
    warned: list[Effect] = ledger.tick(T + 150 * MIN)
    assert [f.kind for f in warned] == ["warned"]
    n.on_effect(warned[0], T + 150 * MIN)
    n.on_effect(warned[0], T + 150 * MIN)
    assert len(console.sent) == 1
    assert phones(console) == [LI]
