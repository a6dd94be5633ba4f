"""A sent-log entry of an escalation: whether it still matters, and the Notify to send it again."""

from __future__ import annotations

from deadlines.escalation_state import BREACHED, WARNED, WATCHING, EscalationState, Notify, Sent
from deadlines.roster import mask_phone


def still_needed(state: EscalationState, sent: Sent) -> bool:
    """Whether an unconfirmed message still matters (as ``on_delivery`` judges a fallback)."""
    if state.terminal:
        return False
    if sent.step.startswith("warn@"):
        return state.stage in (WATCHING, WARNED)
    return state.stage == BREACHED and sent.step.startswith(f"{state.breach_id}#")


def notify_of(state: EscalationState, sent: Sent) -> Notify:
    """The :class:`Notify` a sent-log entry was made from (to send it again, same key)."""
    contact = sent.contact
    return Notify(
        key=sent.key,
        obligation_id=state.obligation_id,
        step=sent.step,
        kind=sent.kind,
        level=sent.level,
        unit=sent.unit,
        unit_level=sent.unit_level,
        person_id=contact.person_id,
        phone=contact.phone,
        masked_phone=mask_phone(contact.phone),
        channel=contact.channel,
        text=sent.text,
        at=sent.at,
        attempt=sent.attempt,
    )
