"""A Faust table whose changelog carries many rows per record.

Faust writes one changelog record per table assignment, and each costs a trip through
Faust's producer path (~100 µs measured); a ledger batch changes thousands of subjects. A
:class:`RowsTable` is an ordinary Faust ``Table`` (rocksdb store, changelog topic, recovery,
standby replicas, key-routed web requests all unchanged), plus :meth:`RowsTable.write_rows`,
which puts a batch of rows of one partition into the local store and sends them to that
partition of the changelog as one record (a few if they exceed :data:`RECORD_BYTES`) under
the reserved key :data:`ROWS_KEY`.
Recovery expands such records back into one row each before the store applies them, so the
store, and anyone reading the table, only ever sees subject keys.

Record format (all integers big-endian): for each row, ``u32 key length, key, u32 value
length, value``; a value length of ``0xFFFFFFFF`` is a deletion.
"""

from __future__ import annotations

import struct
from collections.abc import Iterable, Iterator, Sequence
from dataclasses import dataclass
from typing import Any

import faust

#: The key of a multi-row changelog record; never a key of the table itself.
ROWS_KEY = b"\x00rows"

#: Rows per changelog record stop growing at about this size (Kafka's default request limit
#: is 1 MiB); a single row larger than this still goes, alone, in a record of its own.
RECORD_BYTES = 512 * 1024

_LEN = struct.Struct(">I")
_DELETED = 0xFFFFFFFF

Row = tuple[bytes, bytes | None]


def pack_rows(rows: Iterable[Row], limit: int = RECORD_BYTES) -> list[bytes]:
    """The rows as records of about ``limit`` bytes at most, in order."""
    records: list[bytes] = []
    parts: list[bytes] = []
    size = 0
    for key, value in rows:
        row = [_LEN.pack(len(key)), key]
        row += [_LEN.pack(_DELETED)] if value is None else [_LEN.pack(len(value)), value]
        n = 8 + len(key) + (len(value) if value is not None else 0)
        if parts and size + n > limit:
            records.append(b"".join(parts))
            parts, size = [], 0
        parts += row
        size += n
    if parts:
        records.append(b"".join(parts))
    return records


def unpack_rows(blob: bytes) -> list[Row]:
    rows: list[Row] = []
    view = memoryview(blob)
    i, end = 0, len(blob)
    try:
        while i < end:
            (n,) = _LEN.unpack_from(view, i)
            key = bytes(view[i + 4 : i + 4 + n])
            i += 4 + n
            (m,) = _LEN.unpack_from(view, i)
            i += 4
            if m == _DELETED:
                rows.append((key, None))
                continue
            if i + m > end:
                raise ValueError("value runs past the end")
            rows.append((key, bytes(view[i : i + m])))
            i += m
    except struct.error as exc:
        raise ValueError(f"truncated rows record at byte {i}: {exc}") from None
    if i != end:
        raise ValueError(f"rows record: {end - i} stray bytes at the end")
    return rows


@dataclass(slots=True)
class _RowMessage:
    """What the stores read of a changelog message (rocksdb: ``tp``, ``offset``,
    ``partition``, ``key``, ``value``; memory: ``partition``, ``value``)."""

    topic: str
    partition: int
    offset: int
    tp: Any
    key: bytes
    value: bytes | None


@dataclass(slots=True)
class _RowEvent:
    key: bytes
    value: bytes | None
    message: _RowMessage


def expand(batch: Iterable[Any]) -> Iterator[Any]:
    """Changelog events with every multi-row record replaced by one event per row (each
    carrying the record's offset, so the store's persisted offset stays exact)."""
    for event in batch:
        msg = event.message
        if msg.key != ROWS_KEY:
            yield event
            continue
        for key, value in unpack_rows(msg.value or b""):
            row = _RowMessage(msg.topic, msg.partition, msg.offset, msg.tp, key, value)
            yield _RowEvent(key, value, row)


class RowsTable(faust.Table[bytes, bytes | None]):
    """A ``faust.Table`` that can persist a batch of rows as one changelog record."""

    def write_rows(self, partition: int, rows: Sequence[Row]) -> list[Any]:
        """Store ``rows`` (all of ``partition``) locally and send them to the changelog as
        few records as :data:`RECORD_BYTES` allows; returns the records' futures. Call it
        while an event of ``partition`` is current (the rocksdb store
        picks the partition's database from it): see :func:`worker.context.in_partition`."""
        store = self.data
        for key, value in rows:
            if value is None:
                store.pop(key, None)
            else:
                store[key] = value
        return [
            self.changelog_topic.send_soon(
                key=ROWS_KEY,
                value=record,
                partition=partition,
                key_serializer="raw",
                value_serializer="raw",
                callback=self._on_changelog_sent,
            )
            for record in pack_rows(rows)
        ]

    def apply_changelog_batch(self, batch: Iterable[Any]) -> None:
        super().apply_changelog_batch(list(expand(batch)))


#: RocksDB options of every table's store, per partition. Faust's defaults allow three
#: 64 MiB write buffers and a 2 GiB block cache per partition, memory that grows with what a
#: restore reads; the ledger holds every subject in Python already, so RocksDB needs little
#: cache of its own.
STORE_OPTIONS: dict[str, int] = {
    "write_buffer_size": 16 * 1024 * 1024,
    "max_write_buffer_number": 2,
    "block_cache_size": 32 * 1024 * 1024,
}


def rows_table(app: faust.App, name: str, partitions: int) -> RowsTable:
    """Declare a :class:`RowsTable` of bytes to bytes on ``app`` (as ``app.Table`` would),
    partitioned like Kafka's default partitioner does the keys, with :data:`STORE_OPTIONS`."""
    table = RowsTable(
        app,
        name=name,
        default=None,
        beacon=app.tables.beacon,
        partitions=partitions,
        key_type=bytes,
        value_type=bytes,
        use_partitioner=True,
        options=dict(STORE_OPTIONS),  # the store pops keys from it: a copy per table
    )
    app.tables.add(table)
    return table
