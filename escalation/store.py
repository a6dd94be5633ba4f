"""Where the live notifier keeps escalation states: the table seen through a write-behind buffer."""

from __future__ import annotations

from collections.abc import Callable, Iterator, MutableMapping
from typing import Any, Protocol


class StateSink(Protocol):
    """Where states are copied besides the table (the local snapshot)."""

    def __setitem__(self, key: bytes, value: bytes) -> None: ...


class WriteBehind(MutableMapping[bytes, bytes]):
    """A table seen through a buffer: writes wait in memory until :meth:`flush` hands them
    to ``write`` in one go (one changelog record for many states, streams/table.py); reads
    see them at once. The notifier agent uses one per partition per batch of inputs, and
    :meth:`LiveNotifier._write_ahead` flushes before every send."""

    def __init__(
        self,
        table: MutableMapping[bytes, Any],
        write: Callable[[list[tuple[bytes, bytes]]], Any],
    ) -> None:
        self.table = table
        self.write = write
        self.pending: dict[bytes, bytes] = {}

    def __getitem__(self, key: bytes) -> bytes:
        if key in self.pending:
            return self.pending[key]
        value = self.table.get(key)
        if value is None:
            raise KeyError(key)
        return bytes(value)

    def __setitem__(self, key: bytes, value: bytes) -> None:
        self.pending[key] = value

    def __delitem__(self, key: bytes) -> None:
        raise TypeError("escalation states are never deleted")

    def __iter__(self) -> Iterator[bytes]:
        yield from self.pending
        yield from (k for k in self.table if k not in self.pending)

    def __len__(self) -> int:
        return sum(1 for _ in self)

    def flush(self) -> None:
        """Hand the buffered writes to ``write`` (nothing if there are none)."""
        if self.pending:
            rows, self.pending = list(self.pending.items()), {}
            self.write(rows)
