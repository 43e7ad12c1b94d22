"""Budgets: caps shared by every key a scope covers (docs/api.md, budgets).

Revision ID: 0003
Revises: 0002
"""

import sqlalchemy as sa
from alembic import op

revision = "0003"
down_revision = "0002"
branch_labels = None
depends_on = None

MS = sa.BigInteger  # Unix milliseconds
MICRO = sa.BigInteger  # micro-USD


def upgrade() -> None:
    op.create_table(
        "budgets",
        sa.Column("id", sa.String(40), primary_key=True),
        sa.Column("name", sa.String(200), nullable=False),
        sa.Column("scope_kind", sa.String(16), nullable=False),  # label_prefix | vendor | credential | all
        sa.Column("scope_value", sa.String(255), nullable=True),
        sa.Column("daily_usd_cap", MICRO, nullable=True),
        sa.Column("monthly_usd_cap", MICRO, nullable=True),
        sa.Column("total_usd_cap", MICRO, nullable=True),
        sa.Column("daily_request_cap", sa.BigInteger, nullable=True),
        sa.Column("timezone", sa.String(64), nullable=False),
        sa.Column("created_at", MS, nullable=False),
        sa.Column("updated_at", MS, nullable=False),
    )


def downgrade() -> None:
    op.drop_table("budgets")
