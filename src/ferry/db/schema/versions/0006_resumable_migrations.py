"""What a restarted controller needs to finish a migration (its timeout, on-timeout
action, copied volumes); the CPU policy setting is now called the CPU mode

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
    with op.batch_alter_table("migrations") as batch:
        batch.add_column(sa.Column("timeout_s", sa.Float(), nullable=True))
        batch.add_column(sa.Column("on_timeout", sa.String(16), nullable=False,
                                   server_default="abort"))
        batch.add_column(sa.Column("copies", sa.JSON(), nullable=False,
                                   server_default="[]"))
    op.execute("UPDATE settings SET key = 'cpu_mode' WHERE key = 'cpu_policy'")


def downgrade() -> None:
    op.execute("UPDATE settings SET key = 'cpu_policy' WHERE key = 'cpu_mode'")
    with op.batch_alter_table("migrations") as batch:
        batch.drop_column("copies")
        batch.drop_column("on_timeout")
        batch.drop_column("timeout_s")
