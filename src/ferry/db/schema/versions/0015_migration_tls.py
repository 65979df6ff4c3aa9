"""Encrypted migration streams: hosts registered with QEMU migration certificates,
and per migration what was asked (--tls / --no-tls) and whether the stream was
encrypted

Revision ID: 0015
Revises: 0014
"""

import sqlalchemy as sa
from alembic import op

revision = "0015"
down_revision = "0014"
branch_labels = None
depends_on = None


def upgrade() -> None:
    with op.batch_alter_table("hosts") as batch:
        batch.add_column(sa.Column("migration_tls", sa.Boolean(), nullable=False,
                                   server_default=sa.false()))
    with op.batch_alter_table("migrations") as batch:
        batch.add_column(sa.Column("tls_requested", sa.Boolean(), nullable=True))
        batch.add_column(sa.Column("encrypted", sa.Boolean(), nullable=True))


def downgrade() -> None:
    with op.batch_alter_table("migrations") as batch:
        batch.drop_column("encrypted")
        batch.drop_column("tls_requested")
    with op.batch_alter_table("hosts") as batch:
        batch.drop_column("migration_tls")
