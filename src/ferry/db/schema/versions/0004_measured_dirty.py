"""The dirty-page curve measured before each migration

Revision ID: 0004
Revises: 0003
"""

import sqlalchemy as sa
from alembic import op

revision = "0004"
down_revision = "0003"
branch_labels = None
depends_on = None


def upgrade() -> None:
    with op.batch_alter_table("migrations") as b:
        b.add_column(sa.Column("measured_rate_mib_s", sa.Float(), nullable=True))
        b.add_column(sa.Column("measured_wss_mib", sa.Float(), nullable=True))


def downgrade() -> None:
    with op.batch_alter_table("migrations") as b:
        b.drop_column("measured_wss_mib")
        b.drop_column("measured_rate_mib_s")
