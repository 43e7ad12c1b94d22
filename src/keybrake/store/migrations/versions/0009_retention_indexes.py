"""Indexes the retention purge walks (store/sql_retention.py), so each hourly pass reads only
what it deletes instead of scanning whole tables.

Counters by window start, ledger objects by last touch, alert deliveries by creation, keys by
expiry and (the few revoked ones) by revocation. The counter index is written once per counter
row (its window never changes); the ledger one on each answer about an object.

Revision ID: 0009
Revises: 0006
"""

import sqlalchemy as sa
from alembic import op

revision = "0009"
down_revision = "0008"
branch_labels = None
depends_on = None


def upgrade() -> None:
    op.create_index("ix_counters_window", "counters", ["window_start", "scope", "cap"])
    op.create_index("ix_ledger_updated", "ledger", ["updated_at"])
    op.create_index("ix_outbox_created", "alert_outbox", ["created_at"])
    op.create_index("ix_vault_keys_expires", "vault_keys", ["expires_at"])
    where = "revoked_at IS NOT NULL"
    op.create_index(
        "ix_vault_keys_revoked",
        "vault_keys",
        ["revoked_at"],
        sqlite_where=sa.text(where),
        postgresql_where=sa.text(where),
    )


def downgrade() -> None:
    op.drop_index("ix_vault_keys_revoked", table_name="vault_keys")
    op.drop_index("ix_vault_keys_expires", table_name="vault_keys")
    op.drop_index("ix_outbox_created", table_name="alert_outbox")
    op.drop_index("ix_ledger_updated", table_name="ledger")
    op.drop_index("ix_counters_window", table_name="counters")
