"""Whether a migration's stream was compressed (zstd over multifd): its round 1 sent
the guest's non-zero pages squeezed, so history does not read them from it; and
whether the operator asked for it (--compress / --no-compress; none: where it pays)

Revision ID: 0018
Revises: 0017
"""

import sqlalchemy as sa
from alembic import op

revision = "0018"
down_revision = "0017"
branch_labels = None
depends_on = None


def upgrade() -> None:
    with op.batch_alter_table("migrations") as batch:
        batch.add_column(sa.Column("compressed", sa.Boolean(), nullable=True))
        batch.add_column(sa.Column("compress_requested", sa.Boolean(), nullable=True))


def downgrade() -> None:
    with op.batch_alter_table("migrations") as batch:
        batch.drop_column("compress_requested")
        batch.drop_column("compressed")
