"""An index budget seeding and relabel moves read (store/sql_budgets.py): a key's settled rows
that count (the rule of `store.base.counted_request_sql`), by key and time, with their cost.

Creating a budget or relabelling a key sums, under the exclusive budgets lock, every counted row
of the covered keys in the window (`total`: since the key was issued). Refused rows (denials,
cap hits, deduplicated replays) are not in this partial index, so an agent flooding cheap
refused requests no longer makes that sum (and every charge waiting on the lock) slow.
The predicate must stay the text of `counted_request_sql()` (tests/test_budget_seed_cost.py).

Revision ID: 0010
Revises: 0009
"""

import sqlalchemy as sa
from alembic import op

revision = "0010"
down_revision = "0009"
branch_labels = None
depends_on = None

COUNTED = (
    "reservation IS NULL AND (verdict IN ('allowed', 'outcome_unknown')"
    " OR (verdict = 'upstream_error' AND upstream_status IS NOT NULL))"
)


def upgrade() -> None:
    op.create_index(
        "ix_audit_key_counted",
        "audit",
        ["key_id", "id", "cost_usd"],
        sqlite_where=sa.text(COUNTED),
        postgresql_where=sa.text(COUNTED),
    )


def downgrade() -> None:
    op.drop_index("ix_audit_key_counted", table_name="audit")
