"""How a lab guest's writes spread over its working set (uniform, hotcold, burst,
sequential): prediction is measured on more than one uniform dirtier

Revision ID: 0012
Revises: 0011
"""

import sqlalchemy as sa
from alembic import op

revision = "0012"
down_revision = "0011"
branch_labels = None
depends_on = None


def upgrade() -> None:
    with op.batch_alter_table("vms") as batch:
        batch.add_column(sa.Column("workload_pattern", sa.String(16), nullable=False,
                                   server_default="uniform"))


def downgrade() -> None:
    with op.batch_alter_table("vms") as batch:
        batch.drop_column("workload_pattern")
