"""Alerts: destinations, a durable delivery outbox, and fire-once marks (docs/api.md, alerts).

Revision ID: 0005
Revises: 0004
"""

import sqlalchemy as sa
from alembic import op

revision = "0005"
down_revision = "0004"
branch_labels = None
depends_on = None

MS = sa.BigInteger


def upgrade() -> None:
    op.create_table(
        "alert_destinations",
        sa.Column("id", sa.String(40), primary_key=True),
        sa.Column("type", sa.String(16), nullable=False),  # webhook | slack
        sa.Column("url", sa.Text, nullable=False),
        sa.Column("secret_enc", sa.LargeBinary, nullable=False),  # HMAC key, sealed
        sa.Column("events", sa.Text, nullable=False),  # JSON list
        sa.Column("thresholds", sa.Text, nullable=False),  # JSON list of percentages
        sa.Column("anomaly_factor", sa.String(16), nullable=False),  # k, a decimal string
        sa.Column("created_at", MS, nullable=False),
    )
    op.create_table(
        "alert_outbox",
        # One delivery of one event to one destination; the body is exactly what is sent.
        sa.Column("id", sa.String(40), primary_key=True),  # dlv_…
        sa.Column("event_id", sa.String(40), nullable=False),  # evt_…
        sa.Column("destination_id", sa.String(40), nullable=False),
        sa.Column("event_type", sa.String(40), nullable=False),
        sa.Column("body", sa.Text, nullable=False),
        sa.Column("created_at", MS, nullable=False),
        sa.Column("next_attempt_at", MS, nullable=False),
        sa.Column("attempts", sa.Integer, nullable=False),
        sa.Column("state", sa.String(16), nullable=False),  # pending | delivered | failed
        sa.Column("last_status", sa.Integer, nullable=True),
        sa.Column("last_error", sa.Text, nullable=True),
        sa.Column("delivered_at", MS, nullable=True),
    )
    op.create_index("ix_outbox_due", "alert_outbox", ["state", "next_attempt_at"])
    op.create_table(
        "alert_fired",
        sa.Column("fire_key", sa.String(255), primary_key=True),  # e.g. threshold:alr_:key:vk_:daily_usd:ws:80
        sa.Column("created_at", MS, nullable=False),
    )


def downgrade() -> None:
    op.drop_table("alert_fired")
    op.drop_index("ix_outbox_due", table_name="alert_outbox")
    op.drop_table("alert_outbox")
    op.drop_table("alert_destinations")
