"""A queued migration keeps what was asked of it until it is admitted; the policy as
planned is stored, so a restarted controller resumes it

Revision ID: 0009
Revises: 0008
"""

import sqlalchemy as sa
from alembic import op

revision = "0009"
down_revision = "0008"
branch_labels = None
depends_on = None


def upgrade() -> None:
    with op.batch_alter_table("migrations") as batch:
        batch.add_column(sa.Column("timeout_per_gib_s", sa.Float(), nullable=True))
        batch.add_column(sa.Column("plan", sa.JSON(), nullable=True))


def downgrade() -> None:
    with op.batch_alter_table("migrations") as batch:
        batch.drop_column("plan")
        batch.drop_column("timeout_per_gib_s")
