"""Migration policy and the prediction made before it started

Revision ID: 0003
Revises: 0002
"""

import sqlalchemy as sa
from alembic import op

revision = "0003"
down_revision = "0002"
branch_labels = None
depends_on = None


def upgrade() -> None:
    with op.batch_alter_table("migrations") as b:
        b.add_column(sa.Column("policy", sa.String(length=16), nullable=False,
                               server_default="precopy"))
        b.add_column(sa.Column("predicted_converges", sa.Boolean(), nullable=True))
        b.add_column(sa.Column("predicted_total_ms", sa.Integer(), nullable=True))
        b.add_column(sa.Column("predicted_downtime_ms", sa.Integer(), nullable=True))


def downgrade() -> None:
    with op.batch_alter_table("migrations") as b:
        for col in ("predicted_downtime_ms", "predicted_total_ms", "predicted_converges",
                    "policy"):
            b.drop_column(col)
