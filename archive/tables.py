"""The archive's schema as SQLAlchemy Core: one append-only table of closed obligations.

``archived_obligations`` holds one row per closed obligation and version (the primary key;
a row is never updated). Times are ``TIMESTAMP WITH TIME ZONE`` on PostgreSQL, so reports can
group by month in Asia/Shanghai with ``date_trunc('month', due_at AT TIME ZONE …)``; on SQLite
they are stored as fixed-width UTC text, which sorts in time order. :class:`UtcDateTime`
takes aware datetimes only and always gives back UTC.

The migrations (``archive/migrations/versions``) create exactly this; a test compares them.
"""

from __future__ import annotations

from datetime import UTC, datetime
from typing import Any

from sqlalchemy import (
    JSON,
    Boolean,
    CheckConstraint,
    Column,
    DateTime,
    Dialect,
    Index,
    Integer,
    MetaData,
    PrimaryKeyConstraint,
    Table,
    Text,
    TypeDecorator,
)
from sqlalchemy.dialects.postgresql import JSONB

__all__ = ["CLOSED_STATUSES", "TABLE", "JsonDocument", "UtcDateTime", "metadata", "obligations"]

TABLE = "archived_obligations"
#: The statuses an archived obligation can have (open ones are not archived).
CLOSED_STATUSES = ("met", "late", "missed", "unverifiable", "cancelled")


class UtcDateTime(TypeDecorator[datetime]):
    """``TIMESTAMP WITH TIME ZONE``; aware datetimes in, UTC datetimes out (also on SQLite,
    which keeps no offset: values are converted to UTC before they are stored)."""

    impl = DateTime(timezone=True)
    cache_ok = True

    def process_bind_param(self, value: datetime | None, dialect: Dialect) -> datetime | None:
        if value is None:
            return None
        if value.tzinfo is None:
            raise ValueError(f"naive datetime {value!r}: the archive stores instants")
        value = value.astimezone(UTC)
        return value.replace(tzinfo=None) if dialect.name == "sqlite" else value

    def process_result_value(self, value: datetime | None, dialect: Dialect) -> datetime | None:
        if value is None:
            return None
        if value.tzinfo is None:
            return value.replace(tzinfo=UTC)
        return value.astimezone(UTC)


#: JSON text on SQLite, JSONB on PostgreSQL (indexable, queryable with ``->>``).
JsonDocument = JSON().with_variant(JSONB(), "postgresql")

metadata = MetaData()


def _columns() -> list[Any]:
    return [
        Column("obligation_id", Text, nullable=False),
        Column("version", Integer, nullable=False),
        Column("rule_id", Text, nullable=False),
        Column("rule_version", Text, nullable=False),
        Column("unit", Text, nullable=False),
        Column("subject_id", Text, nullable=False),
        Column("status", Text, nullable=False),
        Column("opened_at", UtcDateTime, nullable=False),
        Column("due_at", UtcDateTime, nullable=False),
        Column("fulfilled_at", UtcDateTime, nullable=True),
        Column("closed_at", UtcDateTime, nullable=False),
        Column("archived_at", UtcDateTime, nullable=False),
        Column("evidence_url", Text, nullable=True),
        Column("fulfilled_by", Text, nullable=True),
        Column("fulfilled_date_only", Boolean, nullable=False),
        Column("calendar_assumed", Boolean, nullable=False),
        Column("timeline", JsonDocument, nullable=False),
        Column("view", JsonDocument, nullable=False),
        PrimaryKeyConstraint("obligation_id", "version", name="pk_archived_obligations"),
        CheckConstraint(
            "status IN ('met', 'late', 'missed', 'unverifiable', 'cancelled')",
            name="ck_archived_obligations_status",
        ),
        CheckConstraint("version >= 1", name="ck_archived_obligations_version"),
        # The report queries: by unit, rule or status over a due period; by closing time.
        Index("ix_archived_obligations_unit_due_at", "unit", "due_at"),
        Index("ix_archived_obligations_rule_id_due_at", "rule_id", "due_at"),
        Index("ix_archived_obligations_status_due_at", "status", "due_at"),
        Index("ix_archived_obligations_closed_at", "closed_at"),
        Index("ix_archived_obligations_due_at_obligation_id", "due_at", "obligation_id"),
    ]


obligations = Table(TABLE, metadata, *_columns())
