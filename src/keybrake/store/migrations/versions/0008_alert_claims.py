"""Alert deliveries claimed by one replica at a time; fire-once marks that end with their window.

`alert_outbox.claimed_by` (the instance id of the replica sending it) and `lease_until` (Unix ms
on the database's clock) are set together by one UPDATE: a delivery is POSTed by the replica
holding an unexpired lease, and a crashed replica's lease runs out so another takes it over.
`alert_fired.keep_until` (Unix ms) is when a mark's window ends (NULL: never, e.g. a total cap):
the purge forgets a mark only 40 days after that, so a threshold of a total cap never fires twice
while the next day's or month's window fires again (its mark names its window start).

Revision ID: 0008
Revises: 0006
"""

import sqlalchemy as sa
from alembic import op

revision = "0008"
down_revision = "0007"
branch_labels = None
depends_on = None


def upgrade() -> None:
    op.add_column("alert_outbox", sa.Column("claimed_by", sa.String(40), nullable=True))
    op.add_column("alert_outbox", sa.Column("lease_until", sa.BigInteger, nullable=True))
    # The attempts whose outcomes were written ("att_… att_… "; at most MAX_ATTEMPTS and a few):
    # writing the same outcome again, after its first write's answer was lost, counts it once.
    op.add_column("alert_outbox", sa.Column("attempt_ids", sa.Text, nullable=True))
    op.create_index("ix_outbox_dest_due", "alert_outbox", ["destination_id", "state", "next_attempt_at"])
    op.add_column("alert_fired", sa.Column("keep_until", sa.BigInteger, nullable=True))
    # key.revoked is found by every replica's scan of recent revocations (any path revoked it).
    op.create_index("ix_vault_keys_revoked_at", "vault_keys", ["revoked_at"])
    # Earlier marks were forgotten 40 days after they were made; marks of total caps (window 0) are kept.
    op.execute(
        sa.text(
            "UPDATE alert_fired SET keep_until = created_at WHERE NOT (fire_key LIKE :total ESCAPE '!')"
        ).bindparams(total="threshold:%:total!_usd:0:%")
    )


def downgrade() -> None:
    op.drop_index("ix_vault_keys_revoked_at", table_name="vault_keys")
    op.drop_column("alert_fired", "keep_until")
    op.drop_index("ix_outbox_dest_due", table_name="alert_outbox")
    op.drop_column("alert_outbox", "attempt_ids")
    op.drop_column("alert_outbox", "lease_until")
    op.drop_column("alert_outbox", "claimed_by")
