"""The in-memory notifier: the escalation core with real channels, synchronous sends (tests and
scripted runs; the live one is :class:`escalation.notifier.LiveNotifier`).
"""

from __future__ import annotations

from collections.abc import Callable, Mapping
from dataclasses import dataclass, field
from typing import Any

from channels.base import (
    Channel,
    OutboundMessage,
    SendResult,
)
from deadlines.escalation import next_wake, on_ack, on_delivery, on_effect, start, tick
from deadlines.escalation_policy import PolicyBook
from deadlines.escalation_state import EscalationState, NoOnCall, Notify
from deadlines.obligations import Effect
from deadlines.roster import Roster


@dataclass
class Notifier:
    policies: PolicyBook
    roster: Roster
    channels: Mapping[str, Channel]
    ack_url: Callable[[Notify], str]
    callback_url: str | None = None
    states: dict[str, EscalationState] = field(default_factory=dict)
    alerts: list[NoOnCall] = field(default_factory=list)
    results: list[SendResult] = field(default_factory=list)

    def on_effect(self, effect: Effect, now: int) -> list[SendResult]:
        state = self.states.get(effect.obligation_id) or start(effect, self.policies)
        state, actions = on_effect(state, effect, self.roster, now)
        return self._run(state, actions, now)

    def tick(self, now: int) -> list[SendResult]:
        """Repeats and escalations that fall due by ``now``."""
        out: list[SendResult] = []
        for state in list(self.states.values()):
            wake = next_wake(state)
            if wake is not None and wake <= now:
                state, actions = tick(state, self.roster, now)
                out += self._run(state, actions, now)
        return out

    def next_wake(self) -> int | None:
        wakes = [w for w in map(next_wake, self.states.values()) if w is not None]
        return min(wakes) if wakes else None

    def acknowledge(self, obligation_id: str, level: int, person: str, now: int) -> None:
        state = self.states.get(obligation_id)
        if state is None:
            raise KeyError(f"no escalation for {obligation_id!r}")
        state, actions = on_ack(state, level, person, now)
        self._run(state, actions, now)

    def delivery(self, obligation_id: str, message_key: str, status: str, now: int) -> None:
        """A delivery report (e.g. Twilio's status callback) for one message."""
        state = self.states.get(obligation_id)
        if state is None:
            return
        state, actions = on_delivery(state, message_key, status, now)
        self._run(state, actions, now)

    def _run(self, state: EscalationState, actions: list[Any], now: int) -> list[SendResult]:
        sent: list[SendResult] = []
        queue = list(actions)
        while queue:
            action = queue.pop(0)
            if isinstance(action, NoOnCall):
                self.alerts.append(action)
                continue
            result = self._send(action)
            sent.append(result)
            if result.status == "failed":  # tell the core at once: it falls back now
                state, more = on_delivery(state, action.key, "failed", now)
                queue += more
        self.states[state.obligation_id] = state
        self.results += sent
        return sent

    def _send(self, notify: Notify) -> SendResult:
        channel = self.channels.get(notify.channel)
        if channel is None:
            return SendResult(
                key=notify.key, status="failed", error_message=f"no {notify.channel} channel"
            )
        message = OutboundMessage(
            key=notify.key,
            to=notify.phone,
            text=notify.render(self.ack_url(notify)),
            status_callback_url=self.callback_url,
        )
        return channel.send(message)
