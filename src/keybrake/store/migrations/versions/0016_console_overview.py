"""The console overview's refusals of the last 24 hours, without reading the day's other rows.

Refused calls (every row with an error code: denials, cap hits, upstream failures) are a small,
sparse part of a busy audit table. A partial index on them, ordered by id (ids start with their
time), answers "refusals since t, counted by code" from the index alone.

Revision ID: 0016
Revises: 0015
"""

import sqlalchemy as sa
from alembic import op

revision = "0016"
down_revision = "0015"
branch_labels = None
depends_on = None

_WHERE = "error_code IS NOT NULL"


def upgrade() -> None:
    op.create_index(
        "ix_audit_refusals",
        "audit",
        ["id", "verdict", "error_code"],
        sqlite_where=sa.text(_WHERE),
        postgresql_where=sa.text(_WHERE),
    )


def downgrade() -> None:
    op.drop_index("ix_audit_refusals", table_name="audit")
