"""Money counted per vendor object, row by row; whole Idempotency-Keys.

`ledger_counts` holds, for every forwarded call that counted money for a Stripe object, what it
counted (minor units), what that holds in the counters (µUSD) and which USD counters hold it,
so that a capture or cancel for less can release the part that will never move. The object's
"counted" is the sum of its rows: only Keybrake's own settlements count, never an object's
status. `ledger.refunded` and `ledger.captured` keep a charge's refunded amount (a refund-all call
counts only the remainder) and whether it was captured (refunding an uncaptured charge releases
its authorisation rather than moving money back). `audit.idempotency_key` grows to 256
characters (Resend takes keys that long). `audit.object_ref` names the object a write acts on, so
that one write per object is in flight at a time.

Revision ID: 0006
Revises: 0005
"""

import sqlalchemy as sa
from alembic import op

revision = "0006"
down_revision = "0005"
branch_labels = None
depends_on = None


def upgrade() -> None:
    op.create_table(
        "ledger_counts",
        sa.Column("credential", sa.String(63), primary_key=True),
        sa.Column("object_id", sa.String(255), primary_key=True),
        sa.Column("row_id", sa.String(40), primary_key=True),  # the audit row that counted it
        sa.Column("amount_minor", sa.BigInteger, nullable=False),
        sa.Column("cost_usd", sa.BigInteger, nullable=False),  # µUSD held in the counters for it
        sa.Column("items", sa.Text, nullable=False),  # JSON [[scope, counter, window_start], …] (USD)
    )
    op.add_column("ledger", sa.Column("refunded", sa.BigInteger, nullable=True))
    op.add_column("ledger", sa.Column("captured", sa.Boolean, nullable=True))
    # What earlier versions counted per object carries over as one row of unknown counters.
    op.execute(
        "INSERT INTO ledger_counts (credential, object_id, row_id, amount_minor, cost_usd, items)"
        " SELECT credential, object_id, 'legacy', amount_counted, 0, '[]' FROM ledger WHERE amount_counted > 0"
    )
    if op.get_bind().dialect.name == "postgresql":
        op.alter_column("audit", "idempotency_key", type_=sa.String(256), existing_nullable=True)
    # The vendor object a write acts on (Stripe `pi_…` in the path or a parameter): one write per
    # object may be in flight at a time, so a confirm cannot race the update that changes its amount.
    op.add_column("audit", sa.Column("object_ref", sa.String(255), nullable=True))
    where = "verdict = 'in_flight' AND object_ref IS NOT NULL"
    op.create_index(
        "ix_audit_object_in_flight",
        "audit",
        ["credential", "object_ref"],
        sqlite_where=sa.text(where),
        postgresql_where=sa.text(where),
    )


def downgrade() -> None:
    op.drop_index("ix_audit_object_in_flight", table_name="audit")
    op.drop_column("audit", "object_ref")
    if op.get_bind().dialect.name == "postgresql":
        op.alter_column("audit", "idempotency_key", type_=sa.String(255), existing_nullable=True)
    op.drop_column("ledger", "captured")
    op.drop_column("ledger", "refunded")
    op.drop_table("ledger_counts")
