"""Which effects this monitor has already emitted, by their deterministic key, on disk.

After a restart on the embedded broker the worker rebuilds its state by replaying the
journal, which derives every past effect again; at-least-once redelivery can do the same
for a few. Effects whose key was emitted before are not sent again. The store lives in
``<data_dir>/emitted`` (rocksdb via rocksdict), apart from the table state that a fresh
broker makes stale. Consumers of the notifications topic should still deduplicate by key
(a different worker, after a rebalance, has its own store).
"""

from __future__ import annotations

from collections.abc import Iterable
from pathlib import Path

from rocksdict import Rdict, WriteBatch


class EmittedKeys:
    def __init__(self, path: Path) -> None:
        path.parent.mkdir(parents=True, exist_ok=True)
        self._db = Rdict(str(path))

    def known(self, keys: list[str]) -> set[str]:
        """Those of ``keys`` emitted before (one multi-get)."""
        if not keys:
            return set()
        found: list[bytes | None] = list(self._db.get([k.encode() for k in keys]) or ())
        return {k for k, v in zip(keys, found, strict=True) if v is not None}

    def add_many(self, keys: Iterable[str]) -> None:
        """Record ``keys`` as emitted, in one write."""
        batch = WriteBatch()
        for key in keys:
            batch.put(key.encode(), b"1")
        self._db.write(batch)

    def close(self) -> None:
        self._db.close()
