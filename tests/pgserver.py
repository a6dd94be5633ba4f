"""A real PostgreSQL server for tests: a private cluster on 127.0.0.1, stopped at the end.

The binaries are Debian's ``postgresql`` package (``make tools`` installs it): the highest
``/usr/lib/postgresql/<version>/bin``. The system cluster and systemd are not used: each
server is a fresh ``initdb`` in a temporary directory (superuser ``govclock``, UTF-8, locale
C, ``trust`` for 127.0.0.1 only), started with ``pg_ctl`` on a free port of 127.0.0.1 with its
Unix socket inside that directory, and stopped with ``pg_ctl stop -m fast``. PostgreSQL
refuses to run as root: as root the commands run as the ``postgres`` system user (created by
the package) through ``runuser``, and that user is given the directory.
"""

from __future__ import annotations

import contextlib
import os
import pwd
import re
import shutil
import socket
import subprocess
import tempfile
import time
from pathlib import Path
from types import TracebackType

import psycopg
import pytest

MAKE_TOOLS = (
    "PostgreSQL's server binaries (/usr/lib/postgresql/<version>/bin/initdb, pg_ctl, postgres) "
    "are missing: run `make tools` (installs Debian's postgresql package)"
)
ROOT_USER = "postgres"  # who runs the server when the tests run as root
SUPERUSER = "govclock"
START_TIMEOUT = 60.0
BINARIES = ("initdb", "pg_ctl", "postgres")


def find_bindir(base: Path = Path("/usr/lib/postgresql")) -> Path | None:
    """The bin folder of the highest installed PostgreSQL that has every binary needed."""
    found = []
    for bindir in base.glob("*/bin"):
        version = bindir.parent.name
        if re.fullmatch(r"\d+(\.\d+)?", version) and all(
            os.access(bindir / name, os.X_OK) for name in BINARIES
        ):
            found.append((tuple(int(p) for p in version.split(".")), bindir))
    return max(found)[1] if found else None


def require_bindir() -> Path:
    """The binaries' folder, or the test fails (it does not skip) saying what to install."""
    bindir = find_bindir()
    if bindir is None:
        pytest.fail(MAKE_TOOLS)
    return bindir


def free_port() -> int:
    with socket.socket(socket.AF_INET, socket.SOCK_STREAM) as s:
        s.bind(("127.0.0.1", 0))
        port: int = s.getsockname()[1]
        return port


class PostgresServer:
    """``with PostgresServer() as pg: pg.url`` — a SQLAlchemy URL of its ``postgres`` db."""

    def __init__(self, bindir: Path | None = None) -> None:
        self.bindir = bindir or require_bindir()
        self.as_root = os.geteuid() == 0
        # As root, under /tmp: the server user must be able to reach the folder.
        where = "/tmp" if self.as_root and os.path.isdir("/tmp") else None
        self.dir = Path(tempfile.mkdtemp(prefix="govclock-pg-", dir=where))
        self.data = self.dir / "data"
        self.log = self.dir / "server.log"
        self.port = 0
        self.started = False

    # -- running the binaries -------------------------------------------------------------

    def _run(self, name: str, *args: str, timeout: float = START_TIMEOUT) -> None:
        argv = [str(self.bindir / name), *args]
        if self.as_root:
            argv = ["runuser", "-u", ROOT_USER, "--", *argv]
        result = subprocess.run(
            argv, cwd=self.dir, capture_output=True, text=True, timeout=timeout, check=False
        )
        if result.returncode != 0:
            raise RuntimeError(
                f"{name} failed ({result.returncode}): {result.stderr[-2000:]}"
                f"{result.stdout[-1000:]}{self._log_tail()}"
            )

    def _log_tail(self) -> str:
        try:
            return "\nserver log:\n" + self.log.read_text(errors="replace")[-2000:]
        except OSError:
            return ""

    def _give_to_server_user(self) -> None:
        if not self.as_root:
            return
        try:
            user = pwd.getpwnam(ROOT_USER)
        except KeyError:
            pytest.fail(f"no {ROOT_USER!r} system user to run PostgreSQL as root: {MAKE_TOOLS}")
        os.chown(self.dir, user.pw_uid, user.pw_gid)

    # -- the cluster ----------------------------------------------------------------------

    def start(self) -> None:
        self._give_to_server_user()
        self._run(
            "initdb",
            "-D",
            str(self.data),
            "-U",
            SUPERUSER,
            "--auth=trust",
            "--encoding=UTF8",
            "--locale=C",
            "--no-instructions",
        )
        # Only TCP from 127.0.0.1 and the private socket: nothing else may connect.
        (self.data / "pg_hba.conf").write_text(
            "local all all trust\nhost all all 127.0.0.1/32 trust\n", encoding="utf-8"
        )
        for attempt in range(3):
            self.port = free_port()
            options = (
                f"-c listen_addresses=127.0.0.1 -p {self.port} "
                f"-c unix_socket_directories={self.dir} -c max_connections=50"
            )
            try:
                self._run(
                    "pg_ctl",
                    "-D",
                    str(self.data),
                    "-l",
                    str(self.log),
                    "-w",
                    "-t",
                    str(int(START_TIMEOUT)),
                    "-o",
                    options,
                    "start",
                )
            except RuntimeError:
                if attempt == 2:
                    raise
                continue  # the port was taken between free_port and the bind
            break
        self.started = True
        self._wait_until_ready()

    def _wait_until_ready(self) -> None:
        deadline = time.monotonic() + START_TIMEOUT
        while True:
            try:
                with psycopg.connect(self.dsn, connect_timeout=2) as conn:
                    conn.execute("SELECT 1")
                return
            except psycopg.OperationalError:
                if time.monotonic() > deadline:
                    raise RuntimeError(
                        "PostgreSQL did not accept connections" + self._log_tail()
                    ) from None
                time.sleep(0.1)

    @property
    def dsn(self) -> str:
        """A libpq connection string (psycopg)."""
        return f"host=127.0.0.1 port={self.port} user={SUPERUSER} dbname=postgres"

    @property
    def url(self) -> str:
        """The SQLAlchemy URL of the ``postgres`` database."""
        return self.database_url("postgres")

    def database_url(self, name: str) -> str:
        return f"postgresql+psycopg://{SUPERUSER}@127.0.0.1:{self.port}/{name}"

    def create_database(self, name: str) -> str:
        """A new empty database; its SQLAlchemy URL."""
        if not re.fullmatch(r"[a-z_][a-z0-9_]*", name):
            raise ValueError(f"database name {name!r}")
        with psycopg.connect(self.dsn, autocommit=True) as conn:
            conn.execute(f"CREATE DATABASE {name}")
        return self.database_url(name)

    def stop(self) -> None:
        if self.started:
            self.started = False
            with contextlib.suppress(RuntimeError, subprocess.TimeoutExpired):
                self._run("pg_ctl", "-D", str(self.data), "-m", "fast", "-w", "stop", timeout=30)
        shutil.rmtree(self.dir, ignore_errors=True)

    def __enter__(self) -> PostgresServer:
        try:
            self.start()
        except BaseException:
            self.stop()
            raise
        return self

    def __exit__(
        self,
        exc_type: type[BaseException] | None,
        exc: BaseException | None,
        tb: TracebackType | None,
    ) -> None:
        self.stop()
