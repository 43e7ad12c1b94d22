"""Credential generations: a key is bound to the credential row it was issued for, not its name.

`credentials.generation` is a random id given when a credential is added (kept by rotation);
`vault_keys.credential_gen` is the generation the key was issued against. The proxy resolves a
key's secret by name AND generation, so a key can never bind to a later credential that merely
reuses the name (docs/security.md, credential generations). Existing rows get the generation
`g0`: keys issued before this migration stay bound to the credential of their name as it is now.

Revision ID: 0007
Revises: 0006
"""

import sqlalchemy as sa
from alembic import op

revision = "0007"
down_revision = "0006"
branch_labels = None
depends_on = None


def upgrade() -> None:
    op.add_column("credentials", sa.Column("generation", sa.String(40), nullable=False, server_default="g0"))
    op.add_column("vault_keys", sa.Column("credential_gen", sa.String(40), nullable=False, server_default="g0"))


def downgrade() -> None:
    with op.batch_alter_table("vault_keys") as batch:
        batch.drop_column("credential_gen")
    with op.batch_alter_table("credentials") as batch:
        batch.drop_column("generation")
