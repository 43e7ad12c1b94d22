"""The web console's sign-in sessions (docs/console.md): one row per session, found by the hash of
its cookie, ended by sign-out, by expiry, or with the admin token it was opened with.

Revision ID: 0015
Revises: 0014
"""

import sqlalchemy as sa
from alembic import op

revision = "0015"
down_revision = "0014"
branch_labels = None
depends_on = None

MS = sa.BigInteger


def upgrade() -> None:
    op.create_table(
        "console_sessions",
        sa.Column("session_hash", sa.String(64), primary_key=True),  # HMAC of the cookie under the pepper
        sa.Column("id", sa.String(40), nullable=False),  # cs_…: what logs name
        sa.Column("admin_token_id", sa.String(40), nullable=False),  # adm_…: the token signed in with
        sa.Column("created_at", MS, nullable=False),
        sa.Column("expires_at", MS, nullable=False),
        sa.Column("ended_at", MS, nullable=True),  # signed out
    )
    op.create_index("ix_console_sessions_expires", "console_sessions", ["expires_at"])


def downgrade() -> None:
    op.drop_index("ix_console_sessions_expires", table_name="console_sessions")
    op.drop_table("console_sessions")
