"""Send deduplication (dedup_window_seconds): one entry per (key, fingerprint) inside its window.

Revision ID: 0002
Revises: 0001
"""

import sqlalchemy as sa
from alembic import op

revision = "0002"
down_revision = "0001"
branch_labels = None
depends_on = None

MS = sa.BigInteger  # Unix milliseconds


def upgrade() -> None:
    op.create_table(
        "dedup",
        sa.Column("key_id", sa.String(40), primary_key=True),
        sa.Column("fingerprint", sa.String(64), primary_key=True),
        # The audit row of the first request (the one forwarded), and when the window ends.
        sa.Column("row_id", sa.String(40), nullable=False),
        sa.Column("expires_at", MS, nullable=False),
        # in_flight → answered (replayable) | unknown (sent, no definite answer)
        sa.Column("state", sa.String(16), nullable=False),
        # The answer to replay, sealed with the master key; deleted when the window ends.
        sa.Column("answer_enc", sa.LargeBinary, nullable=True),
    )
    op.create_index("dedup_expires", "dedup", ["expires_at"])


def downgrade() -> None:
    op.drop_index("dedup_expires", table_name="dedup")
    op.drop_table("dedup")
