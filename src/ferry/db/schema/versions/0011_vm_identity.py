"""A VM's libvirt UUID, and the identity and size a migration moved, so that history
describes this very VM (a VM re-created under the same name starts afresh)

Revision ID: 0011
Revises: 0010
"""

import sqlalchemy as sa
from alembic import op

revision = "0011"
down_revision = "0010"
branch_labels = None
depends_on = None


def upgrade() -> None:
    with op.batch_alter_table("vms") as batch:
        batch.add_column(sa.Column("uuid", sa.String(36), nullable=True))
    with op.batch_alter_table("migrations") as batch:
        batch.add_column(sa.Column("vm_uuid", sa.String(36), nullable=True))
        batch.add_column(sa.Column("memory_mib", sa.Integer(), nullable=True))


def downgrade() -> None:
    with op.batch_alter_table("migrations") as batch:
        batch.drop_column("memory_mib")
        batch.drop_column("vm_uuid")
    with op.batch_alter_table("vms") as batch:
        batch.drop_column("uuid")
