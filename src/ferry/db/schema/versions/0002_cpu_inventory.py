"""CPU inventory of hosts, CPU mobility of VMs, settings (CPU policy)

Revision ID: 0002
Revises: 0001
"""

import sqlalchemy as sa
from alembic import op

revision = "0002"
down_revision = "0001"
branch_labels = None
depends_on = None


def upgrade() -> None:
    with op.batch_alter_table("hosts") as b:
        b.add_column(sa.Column("host_cpu_xml", sa.Text(), nullable=False, server_default=""))
        b.add_column(sa.Column("cpu_models", sa.JSON(), nullable=False, server_default="[]"))
    with op.batch_alter_table("vms") as b:
        b.add_column(sa.Column("cpu_blocked", sa.JSON(), nullable=False, server_default="{}"))
    op.create_table(
        "settings",
        sa.Column("key", sa.String(length=64), nullable=False),
        sa.Column("value", sa.Text(), nullable=False),
        sa.PrimaryKeyConstraint("key"),
    )


def downgrade() -> None:
    op.drop_table("settings")
    with op.batch_alter_table("vms") as b:
        b.drop_column("cpu_blocked")
    with op.batch_alter_table("hosts") as b:
        b.drop_column("cpu_models")
        b.drop_column("host_cpu_xml")
