"""Indexes for the operator's questions on a large audit table and for background passes.

Cap hits of the last 24 h and the reconciler's pending estimates are a small, sparse part of
the table: partial indexes keep them cheap to find and cost nothing on other rows. One run's
calls (ix_audit_run), one key's calls (ix_audit_key) and time ranges (the id is time-ordered)
already have theirs; top spenders over a day scan that day's id range.

Revision ID: 0004
Revises: 0003
"""

import sqlalchemy as sa
from alembic import op

revision = "0004"
down_revision = "0003"
branch_labels = None
depends_on = None


def _where(condition: str) -> dict[str, sa.TextClause]:
    return {"sqlite_where": sa.text(condition), "postgresql_where": sa.text(condition)}


def upgrade() -> None:
    op.create_index("ix_audit_cap_hits", "audit", ["id"], **_where("verdict = 'cap_exceeded'"))
    op.create_index("ix_audit_kept", "audit", ["id"], **_where("reservation IS NOT NULL"))


def downgrade() -> None:
    op.drop_index("ix_audit_kept", table_name="audit")
    op.drop_index("ix_audit_cap_hits", table_name="audit")
