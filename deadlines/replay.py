"""History through the same core, on a simulated clock.

Events are taken in arrival order (the order given). Before each event the clock moves to
the event's own time if that is later (``tick``), so deadlines that passed between events
fire at their due time; an event stamped earlier than the clock arrived late and is applied
as it is: fulfilment is judged by ``published_at``, not by arrival. Events stamped after
``as_of`` have not happened yet and are left out. At the end the clock moves to ``as_of``.
"""

from __future__ import annotations

from collections.abc import Iterable
from dataclasses import dataclass, field

from deadlines.ledger import Effect, Ledger, instant
from schemas.events import Event, event_time


@dataclass(frozen=True, slots=True)
class Rejected:
    """An input line that was not accepted, and why."""

    line: int
    reason: str


@dataclass(slots=True)
class ReplayResult:
    ledger: Ledger
    as_of: int
    effects: list[Effect] = field(default_factory=list)
    applied: int = 0
    future: int = 0  # events stamped after as_of
    rejected: list[Rejected] = field(default_factory=list)


def replay(
    ledger: Ledger,
    events: Iterable[tuple[int, Event]],
    as_of: int,
    rejected: Iterable[Rejected] = (),
) -> ReplayResult:
    """Run numbered events through ``ledger`` up to ``as_of`` (epoch seconds)."""
    result = ReplayResult(ledger=ledger, as_of=as_of, rejected=list(rejected))
    effects = result.effects
    for _line, event in events:
        own = instant(event_time(event))
        at = own[0]
        if at > as_of:
            result.future += 1
            continue
        if ledger.clock is None or at > ledger.clock:
            effects.extend(ledger.tick(at))
        effects.extend(ledger.apply(event, own))
        result.applied += 1
    effects.extend(ledger.tick(as_of))
    return result


def last_event_time(events: Iterable[tuple[int, Event]]) -> int | None:
    """The latest own-time of any event: the default ``as_of`` of a replay."""
    latest: int | None = None
    for _line, event in events:
        at, _ = instant(event_time(event))
        if latest is None or at > latest:
            latest = at
    return latest
