"""Host load: each host's CPU counters and how busy it was at the last reconcile,
and per migration how busy its source was when its job started (history is read
from migrations that ran at a like load)

Revision ID: 0016
Revises: 0015
"""

import sqlalchemy as sa
from alembic import op

revision = "0016"
down_revision = "0015"
branch_labels = None
depends_on = None


def upgrade() -> None:
    with op.batch_alter_table("hosts") as batch:
        batch.add_column(sa.Column("cpu_busy_ns", sa.BigInteger(), nullable=False,
                                   server_default="0"))
        batch.add_column(sa.Column("cpu_total_ns", sa.BigInteger(), nullable=False,
                                   server_default="0"))
        batch.add_column(sa.Column("cpu_busy", sa.Float(), nullable=True))
    with op.batch_alter_table("migrations") as batch:
        batch.add_column(sa.Column("source_busy", sa.Float(), nullable=True))


def downgrade() -> None:
    with op.batch_alter_table("migrations") as batch:
        batch.drop_column("source_busy")
    with op.batch_alter_table("hosts") as batch:
        batch.drop_column("cpu_busy")
        batch.drop_column("cpu_total_ns")
        batch.drop_column("cpu_busy_ns")
