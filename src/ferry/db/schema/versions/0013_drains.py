"""Hosts in maintenance, and drains (a host emptied by a plan of moves)

Revision ID: 0013
Revises: 0012
"""

import sqlalchemy as sa
from alembic import op

revision = "0013"
down_revision = "0012"
branch_labels = None
depends_on = None


def upgrade() -> None:
    with op.batch_alter_table("hosts") as batch:
        batch.add_column(sa.Column("maintenance", sa.Boolean(), nullable=False,
                                   server_default=sa.false()))
    with op.batch_alter_table("migrations") as batch:
        batch.add_column(sa.Column("link_mib_s", sa.Float(), nullable=True))
    op.create_table(
        "drains",
        sa.Column("id", sa.Integer(), primary_key=True),
        sa.Column("host", sa.String(64), nullable=False, index=True),
        sa.Column("state", sa.String(16), nullable=False, index=True),
        sa.Column("request", sa.JSON(), nullable=False),
        sa.Column("moves", sa.JSON(), nullable=False),
        sa.Column("blocked", sa.JSON(), nullable=False),
        sa.Column("events", sa.JSON(), nullable=False),
        sa.Column("eta_ms", sa.Integer(), nullable=True),
        sa.Column("planned_eta_ms", sa.Integer(), nullable=True),
        sa.Column("cancel_requested", sa.Boolean(), nullable=False, server_default=sa.false()),
        sa.Column("error", sa.Text(), nullable=False, server_default=""),
        sa.Column("created_at", sa.DateTime(timezone=True), nullable=False),
        sa.Column("started_at", sa.DateTime(timezone=True), nullable=True),
        sa.Column("finished_at", sa.DateTime(timezone=True), nullable=True),
    )


def downgrade() -> None:
    op.drop_table("drains")
    with op.batch_alter_table("migrations") as batch:
        batch.drop_column("link_mib_s")
    with op.batch_alter_table("hosts") as batch:
        batch.drop_column("maintenance")
