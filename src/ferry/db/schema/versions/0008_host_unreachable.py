"""A host that does not answer is 'unreachable' (was 'down')

Revision ID: 0008
Revises: 0007
"""

from alembic import op

revision = "0008"
down_revision = "0007"
branch_labels = None
depends_on = None


def upgrade() -> None:
    op.execute("UPDATE hosts SET state = 'unreachable' WHERE state = 'down'")


def downgrade() -> None:
    op.execute("UPDATE hosts SET state = 'down' WHERE state = 'unreachable'")
