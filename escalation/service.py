"""What the notifier's agents, timer and web routes share in one worker."""

from __future__ import annotations

from collections.abc import Callable, Iterator
from dataclasses import dataclass, field
from typing import Any

from channels.base import (
    SentLog,
)
from deadlines.escalation_codec import decode_state
from deadlines.escalation_state import EscalationState, Notify
from deadlines.roster import Roster
from escalation.notifier import LiveNotifier


@dataclass
class NotifierService:
    """What the notifier's agents, timer and web routes share in one worker
    (built by agents/notifier.py; ``ctx.notifier``)."""

    runtime: LiveNotifier
    inputs: Any  # the Faust topic govclock-escalation-inputs
    table: Any  # the Faust table "escalations"
    roster: Roster
    channel: str  # the SMS provider: "console" or "twilio"
    sent_log: SentLog | None = None  # the SMS channel's (SID -> message key)
    public_url: str | None = None
    twilio_auth_token: str | None = field(default=None, repr=False)
    #: acknowledgement links' secrets (GOVCLOCK_ACK_SECRET or generated): the first signs
    ack_secrets: tuple[str, ...] = field(default=(), repr=False)

    def states(self) -> Iterator[EscalationState]:
        """The escalation states of this worker's partitions (from the table)."""
        for _, raw in list(self.table.items()):
            if raw is not None:
                yield decode_state(raw)

    @property
    def ack_url(self) -> Callable[[Notify], str]:
        """Fills ``{ack_url}`` in texts; assign a function to give signed links."""
        return self.runtime.ack_url

    @ack_url.setter
    def ack_url(self, make: Callable[[Notify], str]) -> None:
        self.runtime.ack_url = make
