"""Initial schema: keys, credentials, admin tokens, counters, audit, instances.

Revision ID: 0001
Revises:
"""

import sqlalchemy as sa
from alembic import op

revision = "0001"
down_revision = None
branch_labels = None
depends_on = None

MS = sa.BigInteger  # Unix milliseconds
MICRO = sa.BigInteger  # micro-USD


def _where(condition: str) -> dict[str, sa.TextClause]:
    return {"sqlite_where": sa.text(condition), "postgresql_where": sa.text(condition)}


def upgrade() -> None:
    op.create_table(
        "kb_meta",
        sa.Column("name", sa.String(64), primary_key=True),
        sa.Column("value", sa.LargeBinary, nullable=False),
    )
    op.create_table(
        "instances",
        sa.Column("id", sa.String(40), primary_key=True),
        sa.Column("hostname", sa.String(255), nullable=False),
        sa.Column("pid", sa.Integer, nullable=False),
        sa.Column("started_at", MS, nullable=False),
        sa.Column("heartbeat_at", MS, nullable=False),
    )
    op.create_table(
        "admin_tokens",
        sa.Column("id", sa.String(40), primary_key=True),
        sa.Column("token_hash", sa.String(64), nullable=False, unique=True),
        sa.Column("scope", sa.String(16), nullable=False),
        sa.Column("label", sa.String(200), nullable=False),
        sa.Column("created_at", MS, nullable=False),
        sa.Column("revoked_at", MS, nullable=True),
    )
    op.create_table(
        "credentials",
        sa.Column("name", sa.String(63), primary_key=True),
        sa.Column("vendor", sa.String(32), nullable=False),
        sa.Column("secret_enc", sa.LargeBinary, nullable=False),
        sa.Column("secret_hint", sa.String(64), nullable=False),
        sa.Column("base_url", sa.String(2048), nullable=True),
        sa.Column("livemode", sa.Boolean, nullable=True),
        sa.Column("created_at", MS, nullable=False),
        sa.Column("rotated_at", MS, nullable=True),
    )
    op.create_table(
        "vault_keys",
        sa.Column("id", sa.String(40), primary_key=True),
        sa.Column("token_hash", sa.String(64), nullable=False, unique=True),
        sa.Column("vendor", sa.String(32), nullable=False),
        sa.Column("credential", sa.String(63), nullable=False),
        sa.Column("label", sa.String(200), nullable=True),
        sa.Column("metadata", sa.Text, nullable=False),
        sa.Column("policy", sa.Text, nullable=False),
        sa.Column("policy_version", sa.Integer, nullable=False),
        sa.Column("status", sa.String(16), nullable=False),
        sa.Column("created_at", MS, nullable=False),
        sa.Column("expires_at", MS, nullable=False),
        sa.Column("revoked_at", MS, nullable=True),
        sa.Column("revoke_reason", sa.String(500), nullable=True),
        sa.Column("issued_by", sa.String(40), nullable=True),
    )
    op.create_index("ix_vault_keys_created", "vault_keys", ["created_at", "id"])
    op.create_index("ix_vault_keys_label", "vault_keys", ["label"])
    op.create_index("ix_vault_keys_credential", "vault_keys", ["credential", "status"])
    op.create_table(
        "counters",
        sa.Column("scope", sa.String(64), primary_key=True),
        sa.Column("cap", sa.String(32), primary_key=True),
        sa.Column("window_start", MS, primary_key=True),
        sa.Column("used", sa.BigInteger, nullable=False),
        sa.Column("reserved", sa.BigInteger, nullable=False),
        # The limit the last reservation was checked against (lets one statement guard many counters).
        sa.Column("cap_limit", sa.BigInteger, nullable=True),
    )
    op.create_table(
        "issuances",
        # POST /v1/keys with Idempotency-Key: the first answer, sealed, kept for 24 hours.
        sa.Column("issuer", sa.String(40), primary_key=True),
        sa.Column("idempotency_key", sa.String(255), primary_key=True),
        sa.Column("body_hash", sa.String(64), nullable=False),
        sa.Column("answer_enc", sa.LargeBinary, nullable=False),
        sa.Column("created_at", MS, nullable=False),
    )
    op.create_table(
        "ledger",
        # What Keybrake knows of a Stripe object (pi_, ch_, in_, re_, sub_): who it belongs to
        # and how much of it has been counted against caps (money is counted once per object).
        sa.Column("credential", sa.String(63), primary_key=True),
        sa.Column("object_id", sa.String(255), primary_key=True),
        sa.Column("kind", sa.String(32), nullable=False),
        sa.Column("customer", sa.String(255), nullable=True),
        sa.Column("account_context", sa.String(255), nullable=True),
        sa.Column("currency", sa.String(3), nullable=True),
        sa.Column("amount", sa.BigInteger, nullable=True),
        sa.Column("amount_counted", sa.BigInteger, nullable=False),
        sa.Column("updated_at", MS, nullable=False),
    )
    op.create_table(
        "audit",
        sa.Column("id", sa.String(40), primary_key=True),
        sa.Column("ts", MS, nullable=False),
        sa.Column("key_id", sa.String(40), nullable=True),
        sa.Column("label", sa.String(200), nullable=True),
        sa.Column("agent_run_id", sa.String(128), nullable=True),
        sa.Column("triggering_event_id", sa.String(128), nullable=True),
        sa.Column("vendor", sa.String(32), nullable=True),
        sa.Column("credential", sa.String(63), nullable=True),
        sa.Column("method", sa.String(16), nullable=False),
        sa.Column("path", sa.String(2048), nullable=False),
        sa.Column("endpoint", sa.String(512), nullable=True),
        sa.Column("verdict", sa.String(48), nullable=False),
        sa.Column("error_code", sa.String(48), nullable=True),
        sa.Column("reason", sa.Text, nullable=True),
        sa.Column("status", sa.Integer, nullable=True),
        sa.Column("upstream_status", sa.Integer, nullable=True),
        sa.Column("cost_usd", MICRO, nullable=False),
        sa.Column("reserved_usd", MICRO, nullable=False),
        sa.Column("cost_source", sa.String(16), nullable=False),
        sa.Column("cost_kind", sa.String(16), nullable=False),
        sa.Column("cap_usage_after_usd", MICRO, nullable=True),
        sa.Column("customer_scope_id", sa.String(255), nullable=True),
        sa.Column("account_context", sa.String(255), nullable=True),
        sa.Column("vendor_request_id", sa.String(255), nullable=True),
        sa.Column("vendor_object_id", sa.String(255), nullable=True),
        sa.Column("idempotency_key", sa.String(255), nullable=True),
        sa.Column("dedup_of", sa.String(40), nullable=True),
        sa.Column("settled_by", sa.String(40), nullable=True),
        sa.Column("request_summary", sa.Text, nullable=True),
        sa.Column("body_hash", sa.String(64), nullable=True),
        sa.Column("redacted_fields", sa.Text, nullable=True),
        sa.Column("preflight_lookup", sa.Text, nullable=True),
        sa.Column("latency_ms", sa.Float, nullable=True),
        sa.Column("upstream_latency_ms", sa.Float, nullable=True),
        sa.Column("overhead_ms", sa.Float, nullable=True),
        sa.Column("metadata", sa.Text, nullable=True),
        # Not API fields: which process owns an in-flight row, and what it reserved.
        sa.Column("owner", sa.String(40), nullable=True),
        sa.Column("reservation", sa.Text, nullable=True),
        # Request fingerprint (docs/sdk-stripe.md, retries): a retry with the same Idempotency-Key matches it.
        sa.Column("fingerprint", sa.String(64), nullable=True),
        # Ids are ULIDs minted from `ts`: clustering on them orders rows by time without a
        # separate (ts, id) index, and since/until become primary-key ranges.
        sqlite_with_rowid=False,
    )
    op.create_index("ix_audit_key", "audit", ["key_id", "id"])
    # Sparse columns get partial indexes: rows without a run id or Idempotency-Key cost no write.
    op.create_index("ix_audit_run", "audit", ["agent_run_id", "id"], **_where("agent_run_id IS NOT NULL"))
    op.create_index(
        "ix_audit_idempotency", "audit", ["key_id", "idempotency_key"], **_where("idempotency_key IS NOT NULL")
    )


def downgrade() -> None:
    for table in (
        "issuances",
        "ledger",
        "audit",
        "counters",
        "vault_keys",
        "credentials",
        "admin_tokens",
        "instances",
        "kb_meta",
    ):
        op.drop_table(table)
