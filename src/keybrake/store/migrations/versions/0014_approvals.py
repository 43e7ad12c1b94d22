"""Human approval of risky calls (docs/approvals.md): held calls, their decisions, grants for the
rest of a run; the audit row's `approval` and a budget's `approval_above_usd`.

Revision ID: 0014
Revises: 0013
"""

import sqlalchemy as sa
from alembic import op

revision = "0014"
down_revision = "0013"
branch_labels = None
depends_on = None

MS = sa.BigInteger


def upgrade() -> None:
    op.create_table(
        "approvals",
        # One held call: what it is, why it was held, and what was decided (pending → approved |
        # denied | expired | cancelled, each change made once, only from pending).
        sa.Column("id", sa.String(40), primary_key=True),  # apr_…
        sa.Column("audit_id", sa.String(40), nullable=False),  # the held call's audit row
        sa.Column("key_id", sa.String(40), nullable=False),
        sa.Column("label", sa.Text, nullable=True),
        sa.Column("agent_run_id", sa.Text, nullable=True),  # the key's bound run id
        sa.Column("vendor", sa.String(64), nullable=False),
        sa.Column("method", sa.String(16), nullable=False),
        sa.Column("endpoint", sa.Text, nullable=False),
        sa.Column("amount_usd", MS, nullable=False),  # µUSD reserved against every cap
        sa.Column("summary", sa.Text, nullable=True),  # JSON: the request summary of the audit row
        sa.Column("reasons", sa.Text, nullable=False),  # JSON list of sentences: why it was held
        sa.Column("state", sa.String(16), nullable=False),
        sa.Column("created_at", MS, nullable=False),
        sa.Column("expires_at", MS, nullable=False),
        sa.Column("decided_at", MS, nullable=True),
        sa.Column("decided_by", sa.Text, nullable=True),  # adm_… or slack-link:adm_…, or keybrake
        sa.Column("reason", sa.Text, nullable=True),
        sa.Column("grant_usd", MS, nullable=True),  # approved with "the rest of this run up to"
        sa.Column("owner", sa.String(40), nullable=False),  # the replica holding the call
    )
    op.create_index("ix_approvals_state", "approvals", ["state", "id"])
    op.create_index("ix_approvals_key", "approvals", ["key_id", "state"])
    op.create_table(
        "approval_grants",
        # "The rest of this run up to $X": calls of the run that need approval go without asking
        # while what they reserve fits in `remaining_usd`.
        sa.Column("run_scope", sa.String(300), primary_key=True),  # run:<agent_run_id> | key:<vk_…>
        sa.Column("approval_id", sa.String(40), nullable=False),
        sa.Column("granted_usd", MS, nullable=False),
        sa.Column("remaining_usd", MS, nullable=False),
        sa.Column("granted_by", sa.Text, nullable=False),
        sa.Column("created_at", MS, nullable=False),
        sa.Column("expires_at", MS, nullable=False),
    )
    # Plain ADD COLUMN (nullable, no default): no copy of the audit table on either engine.
    op.add_column("audit", sa.Column("approval", sa.Text, nullable=True))  # JSON
    op.add_column("budgets", sa.Column("approval_above_usd", MS, nullable=True))


def downgrade() -> None:
    with op.batch_alter_table("budgets") as b:
        b.drop_column("approval_above_usd")
    with op.batch_alter_table("audit") as b:
        b.drop_column("approval")
    op.drop_table("approval_grants")
    op.drop_index("ix_approvals_key", table_name="approvals")
    op.drop_index("ix_approvals_state", table_name="approvals")
    op.drop_table("approvals")
