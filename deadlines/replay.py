"""History through the same core, on a simulated clock.

The simulated monitor starts watching at the earliest event of the history (or at
``as_of`` if that is earlier). Events are taken in arrival order (the order given). Before
each event the clock moves to the event's own time if that is later, and every wake-up on
the way is judged at its own instant (``tick(exact=True)``), so every warning and breach
between two events fires at its own time, as it would live. An event stamped earlier than the clock
arrived late and is applied as it is: fulfilment is judged by ``published_at``, not by
arrival. Events stamped after ``as_of`` have not happened yet and are left out. At the end
the clock moves to ``as_of``.
"""

from __future__ import annotations

from collections.abc import Iterable
from dataclasses import dataclass, field

from deadlines.ledger import Ledger, instant
from deadlines.obligations import Effect
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
    start: int | None = None,
) -> ReplayResult:
    """Run numbered events through ``ledger`` up to ``as_of`` (epoch seconds).

    ``start`` is when watching begins; by default the earliest event's time, which needs
    the whole history in memory. Given, the events are consumed as a stream."""
    result = ReplayResult(ledger=ledger, as_of=as_of, rejected=list(rejected))
    effects = result.effects
    if start is None:
        events = list(events)
        times = (instant(event_time(event))[0] for _line, event in events)
        start = min((t for t in times if t <= as_of), default=as_of)
    effects.extend(ledger.tick(start))
    for _line, event in events:
        own = instant(event_time(event))
        at = own[0]
        if at > as_of:
            result.future += 1
            continue
        advance(ledger, at, effects)
        effects.extend(ledger.apply(event, own))
        result.applied += 1
    advance(ledger, as_of, effects)
    return result


def advance(ledger: Ledger, now: int, effects: list[Effect]) -> None:
    """Move the clock to ``now``, judging every wake-up on the way at its own instant."""
    if ledger.clock is None or now > ledger.clock:
        effects.extend(ledger.tick(now, exact=True))


def last_event_time(events: Iterable[tuple[int, Event]]) -> int | None:
    """The latest own-time of any event: the default ``as_of`` of a replay."""
    latest: int | None = None
    for _line, event in events:
        at, _ = instant(event_time(event))
        if latest is None or at > latest:
            latest = at
    return latest
