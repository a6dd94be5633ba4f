"""The archive: closed obligations written once to SQL, read back for the API and reports.

:meth:`Archive.open` takes a SQLAlchemy URL (``sqlite:///…`` embedded, or
``postgresql+psycopg://user:pass@host/db``), creates the engine and migrates the database
to the newest revision. :meth:`Archive.write` inserts records in one transaction, each
``(obligation_id, version)`` once: a record already there is left alone (``ON CONFLICT DO
NOTHING``), so writing again after a crash or from two workers is harmless. Reads see the
newest version of each obligation. Nothing here reads settings: the caller gives the URL.
"""

from __future__ import annotations

from collections.abc import Collection, Sequence
from datetime import UTC, datetime
from types import TracebackType
from typing import Any

from alembic.util import CommandError
from sqlalchemy import (
    ColumnElement,
    Engine,
    Insert,
    Select,
    Text,
    false,
    func,
    literal,
    select,
    tuple_,
)
from sqlalchemy.dialects import postgresql, sqlite
from sqlalchemy.exc import SQLAlchemyError

from archive.engine import exclusive, make_engine, safe_url
from archive.migrate import upgrade
from archive.records import ArchiveRecord, epoch, instant, record_from_view
from archive.tables import UtcDateTime, obligations
from deadlines.report import rates_of_counts

__all__ = [
    "Archive",
    "ArchiveError",
    "ArchiveRecord",
    "page_key",
    "record_from_view",
    "safe_url",
]

#: Rows per executemany: one prepared INSERT, run for each row (psycopg pipelines them: no
#: round trip per row); the whole call is still one transaction.
BATCH = 500
DEFAULT_LIMIT = 500
_T = obligations
#: Keep the cursor's row count after an executemany (SQLAlchemy drops it otherwise).
_COUNTED = {"preserve_rowcount": True}
_NEWER = obligations.alias("newer")


class ArchiveError(RuntimeError):
    """The archive could not be opened or migrated; the message names no password."""


def page_key(row: dict[str, Any]) -> tuple[int, str]:
    """The keyset position of a row from :meth:`Archive.query`: pass the last row's as
    ``after`` to get the next page."""
    return epoch(row["due_at"], "due_at"), str(row["id"])


def _latest() -> ColumnElement[bool]:
    """The row is its obligation's newest version."""
    newer = (
        select(_NEWER.c.version)
        .where(_NEWER.c.obligation_id == _T.c.obligation_id, _NEWER.c.version > _T.c.version)
        .exists()
    )
    return ~newer


def _window(column: Any, start: int | None, end: int | None) -> list[ColumnElement[bool]]:
    out: list[ColumnElement[bool]] = []
    if start is not None:
        out.append(column >= instant(start))
    if end is not None:
        out.append(column < instant(end))
    return out


def _conditions(
    *,
    closed_from: int | None,
    closed_to: int | None,
    due_from: int | None,
    due_to: int | None,
    unit: str | None,
    rule_id: str | None,
    statuses: Collection[str] | None,
) -> list[ColumnElement[bool]]:
    where = [_latest()]
    where += _window(_T.c.closed_at, closed_from, closed_to)
    where += _window(_T.c.due_at, due_from, due_to)
    if unit is not None:
        where.append(_T.c.unit == unit)
    if rule_id is not None:
        where.append(_T.c.rule_id == rule_id)
    if statuses is not None:
        wanted = sorted(set(statuses))
        where.append(_T.c.status.in_(wanted) if wanted else false())
    return where


class Archive:
    """A connection pool on one archive database (thread-safe; one per process)."""

    def __init__(self, engine: Engine) -> None:
        self._engine = engine
        dialect = engine.dialect.name
        if dialect == "sqlite":
            base: Insert = sqlite.insert(_T).on_conflict_do_nothing(
                index_elements=["obligation_id", "version"]
            )
        elif dialect == "postgresql":
            base = postgresql.insert(_T).on_conflict_do_nothing(
                index_elements=["obligation_id", "version"]
            )
        else:  # pragma: no cover - make_engine refuses other URLs
            raise ArchiveError(f"unsupported database {dialect}")
        self._insert = base

    @classmethod
    def open(cls, url: str) -> Archive:
        """Connect to ``url`` and migrate it to the newest revision (safe when several
        processes open the same archive at once: they migrate it in turn)."""
        try:
            engine = make_engine(url)
        except (ValueError, SQLAlchemyError) as exc:
            raise ArchiveError(f"archive {safe_url(url)}: {exc}") from None
        try:
            upgrade(engine)
        except (CommandError, SQLAlchemyError) as exc:
            engine.dispose()
            detail = str(exc).replace(str(engine.url.password or "\0"), "***")
            raise ArchiveError(f"archive {safe_url(url)}: cannot migrate: {detail}") from exc
        return cls(engine)

    @property
    def engine(self) -> Engine:
        return self._engine

    @property
    def url(self) -> str:
        """The database URL, password masked."""
        return safe_url(self._engine.url)

    @property
    def dialect(self) -> str:
        return self._engine.dialect.name

    def close(self) -> None:
        self._engine.dispose()

    def __enter__(self) -> Archive:
        return self

    def __exit__(
        self,
        exc_type: type[BaseException] | None,
        exc: BaseException | None,
        tb: TracebackType | None,
    ) -> None:
        self.close()

    # -- writing ------------------------------------------------------------------------

    def write(self, records: Sequence[ArchiveRecord]) -> int:
        """Insert ``records`` in one transaction; returns how many were not there yet."""
        if not records:
            return 0
        archived_at = datetime.now(UTC)
        rows = [record.row(archived_at) for record in records]
        new = 0
        with exclusive(self._engine) as connection:
            for start in range(0, len(rows), BATCH):
                result = connection.execute(
                    self._insert, rows[start : start + BATCH], execution_options=_COUNTED
                )
                # Both drivers sum an executemany's row counts; rows skipped by ON CONFLICT
                # DO NOTHING are not counted.
                if result.rowcount < 0:  # pragma: no cover - both drivers report it
                    raise ArchiveError(f"{self.dialect}: the driver did not count the rows")
                new += result.rowcount
        return new

    # -- reading ------------------------------------------------------------------------

    def get(self, obligation_id: str) -> dict[str, Any] | None:
        """The newest archived version's view, with ``"archived": True``; None if absent."""
        stmt = (
            select(_T.c.view)
            .where(_T.c.obligation_id == obligation_id)
            .order_by(_T.c.version.desc())
            .limit(1)
        )
        with self._engine.connect() as connection:
            view = connection.execute(stmt).scalar_one_or_none()
        return None if view is None else {**view, "archived": True}

    def versions(self, obligation_id: str) -> list[int]:
        """Every archived version of the obligation, oldest first."""
        stmt = (
            select(_T.c.version).where(_T.c.obligation_id == obligation_id).order_by(_T.c.version)
        )
        with self._engine.connect() as connection:
            return list(connection.execute(stmt).scalars())

    def query(
        self,
        *,
        closed_from: int | None = None,
        closed_to: int | None = None,
        due_from: int | None = None,
        due_to: int | None = None,
        unit: str | None = None,
        rule_id: str | None = None,
        statuses: Collection[str] | None = None,
        limit: int = DEFAULT_LIMIT,
        after: tuple[int, str] | None = None,
    ) -> list[dict[str, Any]]:
        """The newest version of each archived obligation that matches, by due time then
        id, at most ``limit``; ``after`` is :func:`page_key` of the previous page's last row.
        Periods are ``from ≤ t < to``, epoch seconds."""
        if limit < 1:
            raise ValueError(f"limit {limit} (must be ≥ 1)")
        where = _conditions(
            closed_from=closed_from,
            closed_to=closed_to,
            due_from=due_from,
            due_to=due_to,
            unit=unit,
            rule_id=rule_id,
            statuses=statuses,
        )
        if after is not None:
            due, ob_id = after
            position = tuple_(literal(instant(due), UtcDateTime()), literal(ob_id, Text()))
            where.append(tuple_(_T.c.due_at, _T.c.obligation_id) > position)
        stmt: Select[Any] = (
            select(_T.c.view).where(*where).order_by(_T.c.due_at, _T.c.obligation_id).limit(limit)
        )
        with self._engine.connect() as connection:
            return [{**view, "archived": True} for view in connection.execute(stmt).scalars()]

    def rates(
        self,
        *,
        closed_from: int | None = None,
        closed_to: int | None = None,
        due_from: int | None = None,
        due_to: int | None = None,
        unit: str | None = None,
        rule_id: str | None = None,
        statuses: Collection[str] | None = None,
    ) -> dict[str, Any]:
        """On-time counts and rates of the matching obligations (newest versions), overall,
        per unit and per rule: the shape of ``deadlines.report.on_time_rates``."""
        where = _conditions(
            closed_from=closed_from,
            closed_to=closed_to,
            due_from=due_from,
            due_to=due_to,
            unit=unit,
            rule_id=rule_id,
            statuses=statuses,
        )
        stmt = (
            select(_T.c.unit, _T.c.rule_id, _T.c.status, func.count().label("n"))
            .where(*where)
            .group_by(_T.c.unit, _T.c.rule_id, _T.c.status)
        )
        with self._engine.connect() as connection:
            return rates_of_counts(
                (str(u), str(r), str(s), int(n)) for u, r, s, n in connection.execute(stmt)
            )
