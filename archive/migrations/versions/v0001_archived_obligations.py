"""The archived_obligations table and the indexes of the report queries.

Revision ID: 0001
Revises: -
Create Date: 2026-05-01
"""

from __future__ import annotations

import sqlalchemy as sa
from alembic import op
from sqlalchemy.dialects import postgresql

revision = "0001"
down_revision = None
branch_labels = None
depends_on = None

TABLE = "archived_obligations"


def upgrade() -> None:
    json = sa.JSON().with_variant(postgresql.JSONB(), "postgresql")
    stamp = sa.DateTime(timezone=True)
    op.create_table(
        TABLE,
        sa.Column("obligation_id", sa.Text(), nullable=False),
        sa.Column("version", sa.Integer(), nullable=False),
        sa.Column("rule_id", sa.Text(), nullable=False),
        sa.Column("rule_version", sa.Text(), nullable=False),
        sa.Column("unit", sa.Text(), nullable=False),
        sa.Column("subject_id", sa.Text(), nullable=False),
        sa.Column("status", sa.Text(), nullable=False),
        sa.Column("opened_at", stamp, nullable=False),
        sa.Column("due_at", stamp, nullable=False),
        sa.Column("fulfilled_at", stamp, nullable=True),
        sa.Column("closed_at", stamp, nullable=False),
        sa.Column("archived_at", stamp, nullable=False),
        sa.Column("evidence_url", sa.Text(), nullable=True),
        sa.Column("fulfilled_by", sa.Text(), nullable=True),
        sa.Column("fulfilled_date_only", sa.Boolean(), nullable=False),
        sa.Column("calendar_assumed", sa.Boolean(), nullable=False),
        sa.Column("timeline", json, nullable=False),
        sa.Column("view", json, nullable=False),
        sa.PrimaryKeyConstraint("obligation_id", "version", name="pk_archived_obligations"),
        sa.CheckConstraint(
            "status IN ('met', 'late', 'missed', 'unverifiable', 'cancelled')",
            name="ck_archived_obligations_status",
        ),
        sa.CheckConstraint("version >= 1", name="ck_archived_obligations_version"),
    )
    for name, columns in (
        ("ix_archived_obligations_unit_due_at", ["unit", "due_at"]),
        ("ix_archived_obligations_rule_id_due_at", ["rule_id", "due_at"]),
        ("ix_archived_obligations_status_due_at", ["status", "due_at"]),
        ("ix_archived_obligations_closed_at", ["closed_at"]),
        ("ix_archived_obligations_due_at_obligation_id", ["due_at", "obligation_id"]),
    ):
        op.create_index(name, TABLE, columns)


def downgrade() -> None:
    op.drop_table(TABLE)
