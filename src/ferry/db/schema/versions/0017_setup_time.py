"""Set-up time of a staged job: libvirt's set-up (the destination QEMU starting)
overlaps the guest's measurement or another move's transfer, and its samples begin
at its release, so it is read from the trickle before it (history of set-ups)

Revision ID: 0017
Revises: 0016
"""

import sqlalchemy as sa
from alembic import op

revision = "0017"
down_revision = "0016"
branch_labels = None
depends_on = None


def upgrade() -> None:
    with op.batch_alter_table("migrations") as batch:
        batch.add_column(sa.Column("setup_ms", sa.Integer(), nullable=True))


def downgrade() -> None:
    with op.batch_alter_table("migrations") as batch:
        batch.drop_column("setup_ms")
