"""Paged reading of a partition's obligations: indexes by due time, kept beside the ledger.

``GET /v1/obligations`` pages through obligations ordered by ``(due_at, id)``. With a
million open obligations a full scan per request would hold the worker for seconds, so
each partition keeps an :class:`ObligationIndex`: every obligation by ``(due_at, id)``, the
same keys per unit, per rule and per status, and the ids per subject id. The runtime feeds
it the subjects the ledger changed (the same set it writes to durable state), so it is never
staler than the table.

A page is read in steps (:meth:`ObligationIndex.step`) of a bounded number of index entries;
the caller yields to its event loop between steps, and each step starts again from the last
key it saw, so the index may change in between (keyset paging: a page never repeats or
skips an obligation whose key did not change). Pure: no clock, no I/O.
"""

from __future__ import annotations

from collections.abc import Iterable
from dataclasses import dataclass

from sortedcontainers import SortedList

from deadlines.obligations import Obligation, Subject

__all__ = ["Filters", "Key", "ObligationIndex", "Step"]

#: An obligation's place in the order of every page: due time, then id.
Key = tuple[int, str]
_Facets = tuple[str, str, str]  # status, unit, rule id


@dataclass(frozen=True)
class Filters:
    """What a query keeps; ``None`` keeps everything. ``due_before``: due strictly before."""

    status: str | None = None
    unit: str | None = None
    rule: str | None = None
    subject_id: str | None = None
    due_before: int | None = None

    def keeps(self, ob: Obligation) -> bool:
        return (
            (self.status is None or ob.status == self.status)
            and (self.unit is None or ob.unit == self.unit)
            and (self.rule is None or ob.rule.id == self.rule)
            and (self.subject_id is None or ob.subject_id == self.subject_id)
            and (self.due_before is None or ob.due_at < self.due_before)
        )


@dataclass(frozen=True)
class Step:
    """What one step found: the matches in key order, the last key it looked at (resume
    after it), and whether nothing after that key can match."""

    matches: list[tuple[Key, Obligation]]
    last: Key | None
    done: bool


class ObligationIndex:
    """Every obligation of one partition, findable by id and in ``(due_at, id)`` order."""

    def __init__(self) -> None:
        self._obs: dict[str, Obligation] = {}
        self._keys: dict[str, Key] = {}
        self._facets: dict[str, _Facets] = {}
        self._all: SortedList = SortedList()
        self._by: dict[tuple[str, str], SortedList] = {}  # ("unit", u) / ("rule", r) / …
        self._by_subject: dict[str, set[str]] = {}
        self._by_home: dict[str, tuple[str, ...]] = {}

    def __len__(self) -> int:
        return len(self._obs)

    def get(self, obligation_id: str) -> Obligation | None:
        return self._obs.get(obligation_id)

    # -- keeping up with the ledger -----------------------------------------------------

    def update(self, subjects: Iterable[Subject]) -> None:
        """Take the current obligations of ``subjects`` (changed, loaded or new)."""
        for subject in subjects:
            obs = subject.obligations or []
            ids = tuple(ob.id for ob in obs)
            for gone in set(self._by_home.get(subject.key, ())) - set(ids):
                self._remove(gone)
            for ob in obs:
                self._put(ob)
            if ids:
                self._by_home[subject.key] = ids
            else:
                self._by_home.pop(subject.key, None)

    def drop(self, home: str) -> None:
        """Forget a subject's obligations (it left the ledger)."""
        for gone in self._by_home.pop(home, ()):
            self._remove(gone)

    def _put(self, ob: Obligation) -> None:
        oid = ob.id
        key, facets = (ob.due_at, oid), (ob.status, ob.unit, ob.rule.id)
        if self._keys.get(oid) == key and self._facets.get(oid) == facets:
            self._obs[oid] = ob
            return
        if oid in self._keys:
            self._remove(oid)
        self._obs[oid], self._keys[oid], self._facets[oid] = ob, key, facets
        self._all.add(key)
        for facet in self._facet_keys(facets):
            bucket = self._by.get(facet)
            if bucket is None:
                bucket = self._by[facet] = SortedList()
            bucket.add(key)
        self._by_subject.setdefault(ob.subject_id, set()).add(oid)

    def _remove(self, oid: str) -> None:
        ob = self._obs.pop(oid, None)
        key = self._keys.pop(oid, None)
        facets = self._facets.pop(oid, None)
        if ob is None or key is None or facets is None:
            return
        self._all.discard(key)
        for facet in self._facet_keys(facets):
            bucket = self._by.get(facet)
            if bucket is not None:
                bucket.discard(key)
                if not bucket:
                    del self._by[facet]
        ids = self._by_subject.get(ob.subject_id)
        if ids is not None:
            ids.discard(oid)
            if not ids:
                del self._by_subject[ob.subject_id]

    @staticmethod
    def _facet_keys(facets: _Facets) -> tuple[tuple[str, str], ...]:
        status, unit, rule = facets
        return (("status", status), ("unit", unit), ("rule", rule))

    # -- reading ------------------------------------------------------------------------

    def _source(self, f: Filters) -> SortedList:
        """The smallest sorted list that holds every match of ``f``."""
        if f.subject_id is not None:
            ids = self._by_subject.get(f.subject_id, ())
            return SortedList(self._keys[i] for i in ids)
        lists = [self._all]
        for facet in (("status", f.status), ("unit", f.unit), ("rule", f.rule)):
            if facet[1] is not None:
                lists.append(self._by.get((facet[0], facet[1]), SortedList()))
        return min(lists, key=len)

    def step(self, f: Filters, after: Key | None, want: int, budget: int) -> Step:
        """Up to ``want`` matches of ``f`` with keys after ``after``, looking at no more
        than ``budget`` index entries."""
        source = self._source(f)
        start = 0 if after is None else source.bisect_right(after)
        matches: list[tuple[Key, Obligation]] = []
        last: Key | None = after
        for looked, key in enumerate(source.islice(start), start=1):
            if f.due_before is not None and key[0] >= f.due_before:
                return Step(matches, last, True)
            last = key
            ob = self._obs[key[1]]
            if f.keeps(ob):
                matches.append((key, ob))
                if len(matches) >= want:
                    return Step(matches, last, False)
            if looked >= budget:
                return Step(matches, last, False)
        return Step(matches, last, True)

    def page(self, f: Filters, after: Key | None, limit: int) -> list[tuple[Key, Obligation]]:
        """A whole page in one step (no event loop to yield to: tests, reports)."""
        return self.step(f, after, limit, 1 << 62).matches
