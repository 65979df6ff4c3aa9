"""Guest networks: each VM's interfaces (and the lab address Ferry gave it), and what
each host offers them (libvirt networks, bridges, devices), for placement

Revision ID: 0014
Revises: 0013
"""

import sqlalchemy as sa
from alembic import op

revision = "0014"
down_revision = "0013"
branch_labels = None
depends_on = None


def upgrade() -> None:
    with op.batch_alter_table("vms") as batch:
        batch.add_column(sa.Column("nics", sa.JSON(), nullable=False, server_default="[]"))
        batch.add_column(sa.Column("address", sa.String(64), nullable=False,
                                   server_default=""))
    with op.batch_alter_table("hosts") as batch:
        batch.add_column(sa.Column("networks", sa.JSON(), nullable=True))


def downgrade() -> None:
    with op.batch_alter_table("hosts") as batch:
        batch.drop_column("networks")
    with op.batch_alter_table("vms") as batch:
        batch.drop_column("address")
        batch.drop_column("nics")
