"""The journal: every accepted event, appended to local disk before it is acknowledged.

The embedded broker keeps nothing across its own restart. So that restarting ``govclock
run`` loses nothing, the web ingestion appends each accepted request's events to the
journal (fsync) before producing them; when the broker starts empty, the journal is produced
into the fresh ingest topic before the worker starts, and the worker rebuilds all state
from it. With a real Kafka cluster the topic is the record and the journal is a local copy.

Format: JSON Lines, one event per line, in ``<data_dir>/journal/events.jsonl``. A torn last
line (a crash mid-write) is skipped on reading and reported.

Compaction (:meth:`Journal.compact`) rewrites the journal without the lines nothing can need
any more (the caller decides which: worker/compaction.py keeps every event that still names
a subject in the hot state), into a new file that replaces the old one only once it is
complete and fsynced: a crash during compaction leaves the old journal as it was.
"""

from __future__ import annotations

import json
import os
import threading
from collections.abc import Callable, Iterator, Sequence
from pathlib import Path
from typing import Any


class Journal:
    def __init__(self, directory: Path) -> None:
        self.directory = directory
        self.path = directory / "events.jsonl"
        self._lock = threading.Lock()

    def append(self, events: Sequence[dict[str, Any]]) -> None:
        """Append events durably (written and fsynced before this returns)."""
        if not events:
            return
        data = b"".join(
            json.dumps(e, ensure_ascii=False, separators=(",", ":")).encode() + b"\n"
            for e in events
        )
        with self._lock:
            self.directory.mkdir(parents=True, exist_ok=True)
            fd = os.open(self.path, os.O_WRONLY | os.O_APPEND | os.O_CREAT, 0o600)
            try:
                os.write(fd, data)
                os.fsync(fd)
            finally:
                os.close(fd)

    def end(self) -> int:
        """The journal's size in bytes now (every append before this is inside it)."""
        with self._lock:
            return self.path.stat().st_size if self.path.exists() else 0

    def read(self, upto: int | None = None) -> Iterator[bytes]:
        """Every complete line, oldest first (a torn last line is left out); with ``upto``,
        only the lines within its first ``upto`` bytes."""
        if not self.path.exists():
            return
        done = 0
        with self.path.open("rb") as fh:
            for line in fh:
                done += len(line)
                if upto is not None and done > upto:
                    return
                if line.endswith(b"\n") and line.strip():
                    yield line.rstrip(b"\n")

    def count(self) -> int:
        return sum(1 for _ in self.read())

    def compact(
        self, keep: Callable[[int, bytes], bool], upto: int | None = None
    ) -> tuple[int, int]:
        """Rewrite the journal with only those of its first ``upto`` bytes' lines that
        ``keep(index, line)`` accepts (``index``: the line's place among them), and every
        line after them as it is; returns ``(kept, dropped)``. The filtering runs while
        appends go on; the lines appended meanwhile are copied and the new file replaces the
        old one under the lock, atomically."""
        if not self.path.exists():
            return 0, 0
        upto = self.end() if upto is None else upto
        kept, dropped = self.write_kept(keep, upto)
        self.install(self.compacting, upto)
        return kept, dropped

    @property
    def compacting(self) -> Path:
        """Where a compaction writes the new journal before it replaces the old one."""
        return self.path.with_suffix(".compacting")

    def write_kept(self, keep: Callable[[int, bytes], bool], upto: int) -> tuple[int, int]:
        """Write the lines of the first ``upto`` bytes that ``keep(index, line)`` accepts to
        :attr:`compacting` (the journal is not touched); returns ``(kept, dropped)``."""
        kept = dropped = 0
        with self.compacting.open("wb") as out:
            for index, line in enumerate(self.read(upto)):
                if keep(index, line):
                    out.write(line + b"\n")
                    kept += 1
                else:
                    dropped += 1
        return kept, dropped

    def install(self, tmp: Path, upto: int) -> None:
        """Replace the journal by ``tmp`` plus the journal's bytes after ``upto`` (what was
        appended while ``tmp`` was made), fsynced, atomically."""
        with self._lock:
            with tmp.open("ab") as out:
                if self.path.exists():
                    with self.path.open("rb") as old:
                        old.seek(upto)
                        while chunk := old.read(1 << 20):
                            out.write(chunk)
                out.flush()
                os.fsync(out.fileno())
            os.replace(tmp, self.path)
            dir_fd = os.open(self.directory, os.O_RDONLY)
            try:
                os.fsync(dir_fd)  # the rename itself is durable
            finally:
                os.close(dir_fd)
