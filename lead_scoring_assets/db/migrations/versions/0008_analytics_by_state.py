"""Analytics history keeps the per-state table, so the API's analytics page reads it from there.

Revision ID: 0008
Revises: 0005
"""

import sqlalchemy as sa
from alembic import op

revision = "0008"
down_revision = "0005"
branch_labels = None
depends_on = None


def upgrade() -> None:
    with op.batch_alter_table("lead_scoring_analytics_history") as table:
        table.add_column(sa.Column("by_state", sa.JSON, nullable=True))


def downgrade() -> None:
    with op.batch_alter_table("lead_scoring_analytics_history") as table:
        table.drop_column("by_state")
