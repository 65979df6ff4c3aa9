"""Uniqueness held by the database: one unfinished migration per VM, one pool per
directory (check-then-insert in the application raced under concurrent requests)

Revision ID: 0007
Revises: 0006
"""

import sqlalchemy as sa
from alembic import op

revision = "0007"
down_revision = "0006"
branch_labels = None
depends_on = None

UNFINISHED = "state IN ('queued', 'prechecking', 'running', 'postcopy-paused')"


def upgrade() -> None:
    op.create_index("uq_migrations_active_vm", "migrations", ["vm"], unique=True,
                    sqlite_where=sa.text(UNFINISHED), postgresql_where=sa.text(UNFINISHED))
    op.create_index("uq_pools_path", "pools", ["path"], unique=True,
                    sqlite_where=sa.text("path != ''"), postgresql_where=sa.text("path != ''"))


def downgrade() -> None:
    op.drop_index("uq_pools_path", "pools")
    op.drop_index("uq_migrations_active_vm", "migrations")
