"""What a worker does with its partitions, without Faust: testable with no broker.

A worker holds one pure :class:`~deadlines.ledger.Ledger` per partition it owns. Records on
the subject-events topic are of three kinds (:func:`encode_record`):

* ``{"event": {...}}`` keyed by a subject: the event, applied to that one subject;
* ``{"unit": "…"}`` keyed ``unit=…``: a unit was seen (its yearly duties belong here);
* ``{"tick": epoch}`` sent to one partition: time has passed (the sweeper's heartbeat);
* ``{"batch": [[key, record], …]}``: several of the above for one partition, in order.

Because ticks travel in the same log as events, a partition's log alone determines its
state: replaying it gives the same obligations and the same effects, in the same order.
Changed subjects are returned as ``(key, bytes)`` for the table (changelog).
"""

from __future__ import annotations

import json
from collections.abc import Iterable
from dataclasses import dataclass
from functools import lru_cache
from typing import Any

import orjson
from aiokafka.partitioner import murmur2

from deadlines.calendar import WorkCalendar
from deadlines.ledger import Ledger, route
from deadlines.obligations import Effect, Obligation, Subject
from deadlines.query import ObligationIndex
from deadlines.retention import Retention, Retirer, Settled
from deadlines.rules import RuleBook
from deadlines.state import RuleRegistry, decode_subject, encode_subject, rules_used
from schemas.events import Event, EventError, parse_event

UNIT_REF = "unit"
#: Table keys of the per-partition rule-text rows (subject keys always contain "=").
RULES_ROW = "rules@"


@lru_cache(maxsize=1 << 17)  # aiokafka's murmur2 is pure Python (~6 µs); subjects recur
def partition_of(key: str, partitions: int) -> int:
    """The partition Kafka's default partitioner (murmur2) gives a subject key."""
    hashed: int = murmur2(key.encode())
    return (hashed & 0x7FFFFFFF) % partitions


def encode_record(kind: str, value: Any) -> bytes:
    return json.dumps({kind: value}, ensure_ascii=False, separators=(",", ":")).encode()


@dataclass(frozen=True, slots=True)
class Routed:
    """An accepted event and the subject keys it must be delivered to."""

    event: Event
    keys: tuple[str, ...]


class RecordError(ValueError):
    """A record that cannot be processed; goes to the dead-letter topic with this reason."""


def accept(raw: bytes, unit_kinds: frozenset[str]) -> Routed:
    """Validate an ingest record and say which subjects it goes to (raises RecordError)."""
    try:
        data = orjson.loads(raw)
    except orjson.JSONDecodeError as exc:
        raise RecordError(f"not valid JSON: {exc}") from None
    try:
        event = parse_event(data)
    except EventError as exc:
        raise RecordError(str(exc)) from None
    return Routed(event, tuple(f"{r}={v}" for r, v in route(event, unit_kinds)))


class Worker:
    """The ledgers of one worker's partitions."""

    def __init__(
        self,
        book: RuleBook,
        calendar: WorkCalendar,
        partitions: int,
        retention: Retention | None = None,
    ) -> None:
        self.book = book
        #: When settled obligations leave for the archive (None: they stay; tests, benches).
        self.retention = retention
        #: Per partition: settled obligations taken from its ledger, not yet archived.
        self.settled: dict[int, list[Settled]] = {}
        self.calendar = calendar
        self.partitions = partitions
        self.rules = RuleRegistry(book)
        self.ledgers: dict[int, Ledger] = {}
        #: Each partition's obligations by id and due time, for the query API (kept up to
        #: date with the subjects written to the table: deadlines/query.py).
        self.indexes: dict[int, ObligationIndex] = {}
        self.rules_stored: dict[int, set[str]] = {}  # rule versions whose text a partition holds
        self._rules_keys: dict[int, str] = {}
        self.applied = 0  # subject records applied (events, unit notes, ticks)
        self.changed_subjects: list[Subject] = []  # those of the last changed() call
        #: Keys of breaches found by a tick that could not have found them earlier (the
        #: obligation arrived after its deadline, or it is the first tick since start); the
        #: caller takes them with the effects and clears the set.
        self.late_known: set[str] = set()

    def ledger(self, partition: int) -> Ledger:
        led = self.ledgers.get(partition)
        if led is None:
            led = self.ledgers[partition] = Ledger(self.book, self.calendar)
            self.indexes[partition] = ObligationIndex()
            n = self.partitions
            led.owns = lambda key: partition_of(key, n) == partition
            if self.retention is not None:
                led.retirer = Retirer(self.retention)
        return led

    def restore(self, partition: int, items: Iterable[tuple[str, bytes]]) -> int:
        """Rebuild a partition's ledger from its table rows; returns the subject count."""
        self.ledgers.pop(partition, None)
        led = self.ledger(partition)
        subjects = []
        for key, blob in items:
            data = json.loads(blob)
            if key.startswith(RULES_ROW):
                for rule_key, text in data["rules"].items():
                    if rule_key not in self.rules:
                        self.rules.add_frozen(rule_key, text)
                self.rules_stored[partition] = set(data["rules"])
            else:
                subjects.append(data["subject"])
        for data in subjects:  # after the rule texts they refer to
            led.load_subject(decode_subject(data, self.rules))
        led.dirty.clear()
        self.indexes[partition].update(led.subjects.values())
        return len(subjects)

    def release(self, partition: int) -> None:
        """The partition went to another worker."""
        self.ledgers.pop(partition, None)
        self.indexes.pop(partition, None)

    def handle(self, partition: int, key: str | None, raw: bytes) -> list[Effect]:
        """Apply one subject-events record of ``partition``."""
        try:
            record = orjson.loads(raw)
        except orjson.JSONDecodeError as exc:
            raise RecordError(f"not valid JSON: {exc}") from None
        if not isinstance(record, dict):
            raise RecordError("expected a JSON object")
        if "batch" in record:
            effects: list[Effect] = []
            for item_key, item in record["batch"]:
                effects += self._handle(partition, item_key, item)
            return effects
        return self._handle(partition, key, record)

    def _handle(self, partition: int, key: str | None, record: dict[str, Any]) -> list[Effect]:
        led = self.ledger(partition)
        self.applied += 1
        if "tick" in record:
            before = led.clock
            effects = led.tick(int(record["tick"]))
            for fx in effects:
                # Breached past the previous tick: the ledger did not know the obligation
                # then (or the monitor was down), so the delay is not the sweeper's.
                if fx.kind == "breached" and (before is None or fx.due_at + 1 <= before):
                    self.late_known.add(fx.key)
            return effects
        if "unit" in record:
            led.note_unit(str(record["unit"]))
            return []
        if "event" not in record or key is None:
            raise RecordError(
                "expected {'event': …} with a subject key, {'unit': …} or {'tick': …}"
            )
        try:
            event = parse_event(record["event"])
            return led.apply_to_subject(key, event)
        except EventError as exc:
            raise RecordError(str(exc)) from None
        except ValueError as exc:  # the event does not name this subject
            raise RecordError(str(exc)) from None

    def changed(self, partition: int) -> list[tuple[str, bytes | None]]:
        """Table rows for the subjects changed since the last call (``None``: the subject was
        forgotten, delete its row); plus the partition's rule-text row when a rule version
        appears there for the first time. Obligations that settled meanwhile are kept in
        :attr:`settled` for the caller to archive before it writes the rows."""
        led = self.ledgers.get(partition)
        if led is None:
            return []
        rows: list[tuple[str, bytes | None]] = []
        used: set[str] = set()
        self.changed_subjects = led.take_dirty()
        index = self.indexes[partition]
        index.update(self.changed_subjects)
        if led.retirer is not None:
            retired, forgotten = led.retirer.take()
            if retired:
                self.settled.setdefault(partition, []).extend(retired)
            for key in forgotten:
                index.drop(key)
                rows.append((key, None))  # a tombstone in the changelog
        for subject in self.changed_subjects:
            used |= rules_used(subject)
            rows.append((subject.key, orjson.dumps({"subject": encode_subject(subject)})))
        stored = self.rules_stored.setdefault(partition, set())
        if not used <= stored:
            stored |= used
            texts = {k: RuleRegistry.frozen(self._rule(k)) for k in sorted(stored)}
            rows.append((self.rules_row_key(partition), orjson.dumps({"rules": texts})))
        return rows

    def take_settled(self, partition: int) -> list[Settled]:
        """The settled obligations of ``partition`` (with when each closed), to archive."""
        return self.settled.pop(partition, [])

    def rules_row_key(self, partition: int) -> str:
        """A key that Kafka's partitioner puts in ``partition``: the frozen texts of the rule
        versions the partition's obligations run under are stored there, once."""
        key = self._rules_keys.get(partition)
        if key is None:
            key = next(
                k
                for k in (f"{RULES_ROW}{partition}#{i}" for i in range(1_000_000))
                if partition_of(k, self.partitions) == partition
            )
            self._rules_keys[partition] = key
        return key

    def _rule(self, key: str) -> Any:
        rule = self.rules.get(key)
        assert rule is not None, key
        return rule

    def find(self, obligation_id: str) -> Obligation | None:
        """The obligation with this id in any of this worker's partitions."""
        for index in self.indexes.values():
            ob = index.get(obligation_id)
            if ob is not None:
                return ob
        return None

    def next_due(self, partition: int) -> int | None:
        led = self.ledgers.get(partition)
        return led.next_due() if led is not None else None


def effect_record(effect: Effect) -> bytes:
    """A notification record: the effect as JSON, with its idempotency key."""
    data = effect._asdict()
    data["key"] = effect.key
    return orjson.dumps(data)
