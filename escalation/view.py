"""An escalation state as people and the board see it: no phone number, only masked."""

from __future__ import annotations

from collections.abc import Callable
from typing import Any

from deadlines.escalation import next_wake
from deadlines.escalation_state import EscalationState
from deadlines.roster import mask_phone


def escalation_view(
    state: EscalationState, wake_of: Callable[[EscalationState], int | None] = next_wake
) -> dict[str, Any]:
    return {
        "obligation_id": state.obligation_id,
        "rule_id": state.rule_id,
        "unit": state.unit,
        "due_at": state.due_at,
        "policy": state.policy.name,
        "stage": state.stage,
        "terminal": state.terminal,
        "level": state.level,
        "repeats": state.repeats,
        "next_wake": wake_of(state),
        "acks": [
            {"level": a.level, "person": a.person_id, "at": a.at, "breach": a.stage}
            for a in state.acks
        ],
        "messages": [
            {
                "key": s.key,
                "kind": s.kind,
                "level": s.level,
                "unit": s.unit,
                "unit_level": s.unit_level,
                "person": s.contact.person_id,
                "to": mask_phone(s.contact.phone),
                "channel": s.contact.channel,
                "attempt": s.attempt,
                "at": s.at,
                "status": s.status,
            }
            for s in state.sent
        ],
        "log": [{"at": at, "what": what, "detail": detail} for at, what, detail in state.log],
    }
