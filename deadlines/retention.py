"""Retention: when a settled obligation leaves the ledger for the archive, and when a subject
with nothing open is forgotten. Pure: decided at the ledger's ticks, from the log alone.

An obligation **settles** once nothing in the rules can change it any more:

- met, late, unverifiable or cancelled: :attr:`Retention.settle_s` after it closed (default
  30 days; a retraction, an extension or a re-judged deadline inside that window still
  changes it);
- missed: :attr:`Retention.missed_s` after its deadline (default 30 days; late evidence inside
  that window still makes it late).

At the first tick at or after that time it leaves its subject (:attr:`Retirer.retired`, for
the runtime to write to the archive). A subject left with no obligation is **forgotten**
(:attr:`Retirer.forgotten`, a tombstone in the table) :attr:`Retention.evidence_s` after the
last thing it remembers (a publication, a clock event, an obligation's closing; default 30
days): evidence for a trigger that has not arrived yet is kept that long, and a trigger
arriving inside the window still closes on it. Units' own subjects (yearly duties) are never
forgotten and their obligations stay: the yearly duties are opened again for any unit that
lacks them, so they must stay where the ledger can see them.

Cost follows what changed: a changed subject is filed (a heap) under the time it next needs
a look, and a tick looks only at the subjects whose time has come and those it changed
itself; :meth:`Retirer.next_due` joins the ledger's own ``next_due``, so the sweeper ticks
when something is to retire even if no deadline is near.
"""

from __future__ import annotations

import heapq
from collections.abc import Iterable
from dataclasses import dataclass, field
from typing import TYPE_CHECKING, NamedTuple

from deadlines.obligations import (
    CANCELLED,
    LATE,
    MET,
    MISSED,
    PAUSED,
    PENDING,
    UNIT_REF,
    UNVERIFIABLE,
    Obligation,
    Subject,
)

if TYPE_CHECKING:
    from deadlines.ledger import Ledger

DAY = 86_400
_UNIT_PREFIX = f"{UNIT_REF}="


@dataclass(frozen=True)
class Retention:
    """How long settled obligations and quiet subjects stay in the hot state (seconds)."""

    settle_s: int = 30 * DAY
    missed_s: int = 30 * DAY
    evidence_s: int = 30 * DAY


def closed_at(ob: Obligation) -> int | None:
    """When an obligation reached its current outcome (None while it is open)."""
    if ob.status in (PENDING, PAUSED):
        return None
    if ob.status == MISSED:
        return ob.due_at
    if ob.status in (MET, LATE, UNVERIFIABLE) and ob.fulfilled_at is not None:
        return ob.fulfilled_at
    times = [at for at, *_ in ob.full_timeline()]
    return max(times)


def settles_at(ob: Obligation, retention: Retention) -> int | None:
    """When the obligation can leave the ledger (None: not while it is open)."""
    closed = closed_at(ob)
    if closed is None:
        return None
    if ob.status == MISSED:
        return ob.due_at + retention.missed_s
    assert ob.status in (MET, LATE, UNVERIFIABLE, CANCELLED), ob.status
    return closed + retention.settle_s


def last_activity(subject: Subject, retired: list[int]) -> int:
    """The latest instant a subject remembers (``retired``: its obligations' closings)."""
    times = [e[0] for e in subject.evidence] + [c[0] for c in subject.clock] + retired
    return max(times) if times else -(2**62)


class Settled(NamedTuple):
    """An obligation that left the ledger: when it closed, and the URL of the publication that
    fulfilled it when its subject holds that publication."""

    obligation: Obligation
    closed_at: int
    evidence_url: str | None


def evidence_url(subject: Subject, event_id: str | None) -> str | None:
    """The URL of the publication ``event_id`` among the subject's evidence, if it is there."""
    if event_id is None:
        return None
    for _, eid, _, _, url in subject.evidence:
        if eid == event_id:
            return url or None
    return None


@dataclass
class Retirer:
    """The retention of one ledger: what to look at next, and what left since last taken."""

    retention: Retention
    #: The obligations that settled, in the order they left.
    retired: list[Settled] = field(default_factory=list)
    #: Keys of subjects forgotten (their table rows are to be deleted).
    forgotten: list[str] = field(default_factory=list)
    _heap: list[tuple[int, str]] = field(default_factory=list)
    _scheduled: dict[str, int] = field(default_factory=dict)  # key -> its earliest heap entry

    def schedule(self, ledger: Ledger, keys: Iterable[str]) -> None:
        """Subjects that changed (or were loaded): file when each next needs a look."""
        for key in keys:
            subject = ledger.subjects.get(key)
            if subject is not None:
                self._push(self._wake_of(subject), key)

    def next_due(self) -> int | None:
        """The earliest instant a tick has something to retire or forget."""
        heap, scheduled = self._heap, self._scheduled
        while heap and scheduled.get(heap[0][1]) != heap[0][0]:
            heapq.heappop(heap)  # superseded by an earlier entry for the same subject
        return heap[0][0] if heap else None

    def run(self, ledger: Ledger, now: int) -> None:
        """Retire what has settled by ``now`` and forget what is quiet (deterministic order)."""
        keys = set(ledger.dirty)  # changed since the runtime last took them
        heap, scheduled = self._heap, self._scheduled
        while heap and heap[0][0] <= now:
            at, key = heapq.heappop(heap)
            if scheduled.get(key) == at:
                del scheduled[key]
                keys.add(key)
        for key in sorted(keys):
            subject = ledger.subjects.get(key)
            if subject is not None:
                self._push(self._review(ledger, subject, now), key)

    def _push(self, wake: int | None, key: str) -> None:
        if wake is not None and wake < self._scheduled.get(key, wake + 1):
            self._scheduled[key] = wake
            heapq.heappush(self._heap, (wake, key))

    def _wake_of(self, subject: Subject) -> int | None:
        """When the subject next needs a look (nothing changes before then)."""
        if subject.key.startswith(_UNIT_PREFIX):
            return None
        obligations = subject.obligations or ()
        if not obligations:
            return last_activity(subject, []) + self.retention.evidence_s
        times = [t for t in (settles_at(ob, self.retention) for ob in obligations) if t]
        return min(times) if times else None

    def _review(self, ledger: Ledger, subject: Subject, now: int) -> int | None:
        key = subject.key
        if key.startswith(_UNIT_PREFIX):
            return None
        kept: list[Obligation] = []
        closings: list[int] = []
        wake: int | None = None
        for ob in subject.obligations or ():
            when = settles_at(ob, self.retention)
            if when is not None and when <= now:
                closed = closed_at(ob)
                assert closed is not None
                url = evidence_url(subject, ob.fulfilled_by)
                self.retired.append(Settled(ob, closed, url))
                closings.append(closed)
                ob.wake = None  # its wheel entries are skipped from now on
                continue
            kept.append(ob)
            if when is not None and (wake is None or when < wake):
                wake = when
        if closings:
            subject.obligations = kept or None
            ledger.dirty.add(key)
        if kept:
            return wake
        forget = last_activity(subject, closings) + self.retention.evidence_s
        if forget <= now:
            del ledger.subjects[key]
            ledger.dirty.discard(key)
            self.forgotten.append(key)
            return None
        return forget

    def take(self) -> tuple[list[Settled], list[str]]:
        """What retired and what was forgotten since the last call."""
        retired, self.retired = self.retired, []
        forgotten, self.forgotten = self.forgotten, []
        return retired, forgotten

    def pending(self) -> int:
        """Reviews scheduled (a gauge of the retention's own state)."""
        return len(self._heap)
