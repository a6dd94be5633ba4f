"""Engines for the archive's two databases, and URLs safe to log.

SQLite (embedded, the default) runs in WAL mode with a busy timeout and ``synchronous=FULL``
(a commit survives a power cut); writers take the database lock at ``BEGIN IMMEDIATE``, so
two processes writing at once wait for each other instead of failing. PostgreSQL goes
through psycopg 3 (``postgresql://`` and ``postgres://`` URLs are taken to mean it).
"""

from __future__ import annotations

from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path
from typing import Any

import orjson
from sqlalchemy import Connection, Engine, create_engine, event, make_url, text
from sqlalchemy.engine import URL

__all__ = [
    "BUSY_TIMEOUT_MS",
    "exclusive",
    "is_sqlite",
    "make_engine",
    "normalize_url",
    "safe_url",
]

#: How long a SQLite writer waits for another process's write lock.
BUSY_TIMEOUT_MS = 30_000
#: Execution option: begin the transaction with ``BEGIN IMMEDIATE`` (SQLite).
_IMMEDIATE = "archive_immediate"
_POSTGRES_NAMES = ("postgresql", "postgres")


def normalize_url(url: str | URL) -> URL:
    """``url`` parsed, with PostgreSQL pointed at psycopg 3 (the driver installed)."""
    parsed = make_url(url)
    backend, _, driver = parsed.drivername.partition("+")
    if backend in _POSTGRES_NAMES:
        if driver not in ("", "psycopg"):
            raise ValueError(f"{backend}+{driver}: the archive uses psycopg 3 (postgresql+psycopg)")
        return parsed.set(drivername="postgresql+psycopg")
    if backend != "sqlite":
        raise ValueError(f"{parsed.drivername}: the archive is SQLite or PostgreSQL")
    return parsed


def safe_url(url: str | URL) -> str:
    """The URL with its password masked (``***``): what may be logged or shown."""
    try:
        return make_url(url).render_as_string(hide_password=True)
    except Exception:  # not even a URL: say nothing of it
        return "<unparseable archive URL>"


def is_sqlite(engine: Engine | Connection) -> bool:
    return engine.dialect.name == "sqlite"


def _dumps(value: Any) -> str:
    return orjson.dumps(value).decode()


def make_engine(url: str | URL) -> Engine:
    """An engine for ``url``; a SQLite file's folder is created if it is missing."""
    parsed = normalize_url(url)
    common: dict[str, Any] = {"json_serializer": _dumps, "json_deserializer": orjson.loads}
    if parsed.drivername.startswith("postgresql"):
        return create_engine(parsed, pool_pre_ping=True, **common)
    database = parsed.database
    if database and database != ":memory:" and not database.startswith("file:"):
        Path(database).parent.mkdir(parents=True, exist_ok=True)
    engine = create_engine(
        parsed,
        connect_args={"timeout": BUSY_TIMEOUT_MS / 1000, "check_same_thread": False},
        **common,
    )
    event.listen(engine, "connect", _sqlite_connect)
    event.listen(engine, "begin", _sqlite_begin)
    return engine


def _sqlite_connect(dbapi_connection: Any, _record: Any) -> None:
    # The driver's own transaction handling off: SQLAlchemy's "begin" event emits BEGIN.
    dbapi_connection.isolation_level = None
    cursor = dbapi_connection.cursor()
    try:
        cursor.execute(f"PRAGMA busy_timeout = {BUSY_TIMEOUT_MS}")
        cursor.execute("PRAGMA journal_mode = WAL")
        cursor.execute("PRAGMA synchronous = FULL")
    finally:
        cursor.close()


def _sqlite_begin(connection: Connection) -> None:
    immediate = connection.get_execution_options().get(_IMMEDIATE, False)
    connection.exec_driver_sql("BEGIN IMMEDIATE" if immediate else "BEGIN")


@contextmanager
def exclusive(engine: Engine, lock_key: int | None = None) -> Iterator[Connection]:
    """A write transaction. SQLite: ``BEGIN IMMEDIATE`` (the database's write lock from the
    start). PostgreSQL: with ``lock_key``, also a transaction-scoped advisory lock, which
    serialises whatever else takes the same key (the migrations)."""
    with engine.connect() as connection:
        connection.execution_options(**{_IMMEDIATE: True})
        with connection.begin():
            if lock_key is not None and not is_sqlite(connection):
                connection.execute(text("SELECT pg_advisory_xact_lock(:k)"), {"k": lock_key})
            yield connection
