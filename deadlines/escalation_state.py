"""What escalation knows about one obligation, and the actions it asks the shell to take.

An :class:`EscalationState` is immutable: the decisions of :mod:`deadlines.escalation` return
a new one with the actions to take, :class:`Notify` (send a text to one person on one channel)
or :class:`NoOnCall` (nobody can be told: an alert). The state keeps the policy it started
under, its stage (watching, warned, breached, acknowledged, stopped), the messages sent with
their fallback chains and delivery status, the acknowledgements and an audit log.
"""

from __future__ import annotations

from dataclasses import dataclass, field, replace

from deadlines.escalation_policy import Policy

__all__ = [
    "ACKED",
    "ACK_URL",
    "BREACHED",
    "DELIVERY_FAILED",
    "DELIVERY_OK",
    "STOPPED",
    "WARNED",
    "WATCHING",
    "Ack",
    "Action",
    "Contact",
    "EscalationState",
    "LogEntry",
    "NoOnCall",
    "Notify",
    "Sent",
]

#: The placeholder the shell replaces with a signed acknowledgement link.
ACK_URL = "{ack_url}"

# Stages of an escalation.
WATCHING = "watching"
WARNED = "warned"
BREACHED = "breached"
ACKED = "acknowledged"
STOPPED = "stopped"

#: Delivery reports: these mean "on its way or there" …
DELIVERY_OK = frozenset(
    {"queued", "accepted", "scheduled", "sending", "sent", "delivered", "read", "completed"}
)
#: … and these mean "did not reach the person": fall back at once.
DELIVERY_FAILED = frozenset({"failed", "undelivered", "busy", "no-answer", "canceled"})


@dataclass(frozen=True, slots=True)
class Notify:
    """Send ``text`` to one person on one channel; deliver at least once, dedup by ``key``."""

    key: str  # obligation|step|L<level>|person|attempt
    obligation_id: str
    step: str  # warn@<point>, breach@<due>#<repeat>
    kind: str  # warned, breached, repeat, escalated, fallback
    level: int  # the escalation rung (warnings: 1)
    unit: str  # the roster unit the person answers for
    unit_level: int  # the level in that unit
    person_id: str
    phone: str = field(repr=False)  # E.164; log masked_phone instead
    masked_phone: str
    channel: str
    text: str  # contains ACK_URL for the shell to fill
    at: int
    attempt: int  # position in the fallback chain (0: first choice)

    def render(self, ack_url: str) -> str:
        return self.text.replace(ACK_URL, ack_url)


@dataclass(frozen=True, slots=True)
class NoOnCall:
    """Nobody can be told: a target with nobody on call, or every delivery failed. An alert."""

    key: str
    obligation_id: str
    step: str
    level: int
    unit: str
    unit_level: int
    at: int
    reason: str


Action = Notify | NoOnCall


@dataclass(frozen=True, slots=True)
class Contact:
    person_id: str
    phone: str = field(repr=False)
    channel: str


@dataclass(frozen=True, slots=True)
class Sent:
    """One message in the state's sent log (with its fallback chain and delivery status)."""

    key: str
    step: str
    kind: str
    level: int
    unit: str
    unit_level: int
    attempt: int
    chain: tuple[Contact, ...] = field(repr=False)
    text: str
    at: int
    status: str = "pending"

    @property
    def contact(self) -> Contact:
        return self.chain[self.attempt]


@dataclass(frozen=True, slots=True)
class Ack:
    stage: str  # the breach id it belongs to ("" before any breach)
    level: int
    person_id: str
    at: int


#: One audit line: (at, what, detail). Phone numbers only masked.
LogEntry = tuple[int, str, str]


@dataclass(frozen=True, slots=True)
class EscalationState:
    """Everything escalation knows about one obligation; immutable (functions return copies)."""

    obligation_id: str
    rule_id: str
    subject_id: str
    unit: str
    opened_at: int
    due_at: int
    policy: Policy  # frozen when the state was started
    short_name: str
    stage: str = WATCHING
    terminal: bool = False  # fulfilled: nothing ever again
    breach_id: str = ""  # "breach@<due>" of the current or last breach
    level: int = 0  # the current rung (0 before a breach)
    level_since: int | None = None
    repeats: int = 0  # repeats sent at the current rung
    repeat_at: int | None = None
    escalate_at: int | None = None
    acks: tuple[Ack, ...] = ()
    sent: tuple[Sent, ...] = ()
    log: tuple[LogEntry, ...] = ()
    seen: tuple[str, ...] = ()  # effect keys applied

    @property
    def acked_levels(self) -> frozenset[int]:
        """The rungs acknowledged in the current breach."""
        return frozenset(a.level for a in self.acks if a.stage == self.breach_id and a.stage)

    def note(self, at: int, what: str, detail: str = "") -> EscalationState:
        return replace(self, log=(*self.log, (at, what, detail)))
