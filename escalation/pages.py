"""Open pages: the latest unacknowledged breach page each person got, what an SMS reply
acknowledges.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any

from deadlines.escalation_state import BREACHED, DELIVERY_FAILED, EscalationState


@dataclass(frozen=True, slots=True)
class OpenPage:
    """The latest breach page (``breached``, ``repeat``, ``escalated``, ``fallback``) one person
    got for an escalation that is breached and not acknowledged: what an SMS reply "1"
    acknowledges (:meth:`LiveNotifier.open_pages`)."""

    obligation_id: str
    person_id: str
    level: int
    at: int
    key: str
    partition: int
    short_name: str
    subject_id: str

    def as_json(self) -> dict[str, Any]:
        return {
            "obligation_id": self.obligation_id,
            "person_id": self.person_id,
            "level": self.level,
            "at": self.at,
            "key": self.key,
            "partition": self.partition,
            "short_name": self.short_name,
            "subject_id": self.subject_id,
        }


def open_pages_of(state: EscalationState, partition: int) -> dict[str, OpenPage]:
    """person id -> the latest page of the current breach each person was sent (not counting
    messages still ``pending`` or reported failed), while the state is breached and
    unacknowledged; empty otherwise."""
    if state.terminal or state.stage != BREACHED or not state.breach_id:
        return {}
    prefix = f"{state.breach_id}#"
    latest: dict[str, OpenPage] = {}
    for sent in state.sent:
        if not sent.step.startswith(prefix) or sent.status == "pending":
            continue
        if sent.status in DELIVERY_FAILED:
            continue
        person = sent.contact.person_id
        known = latest.get(person)
        if known is None or (sent.at, sent.level) >= (known.at, known.level):
            latest[person] = OpenPage(
                state.obligation_id,
                person,
                sent.level,
                sent.at,
                sent.key,
                partition,
                state.short_name,
                state.subject_id,
            )
    return latest
