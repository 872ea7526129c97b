"""The API's needs: the analytics history keeps the per-state table (the analytics page reads
it from there), and ``lead_scores`` gets a ``(total_score, contact_id)`` index for the keyset
pages of the contact list, replacing the ``total_score`` index it extends.

Revision ID: 0008
Revises: 0007
"""

import sqlalchemy as sa
from alembic import op

revision = "0008"
down_revision = "0007"
branch_labels = None
depends_on = None


def upgrade() -> None:
    with op.batch_alter_table("lead_scoring_analytics_history") as table:
        table.add_column(sa.Column("by_state", sa.JSON, nullable=True))
    op.create_index("ix_lead_scores_rank", "lead_scores", ["total_score", "contact_id"])
    op.drop_index("ix_lead_scores_total_score", "lead_scores")


def downgrade() -> None:
    op.create_index("ix_lead_scores_total_score", "lead_scores", ["total_score"])
    op.drop_index("ix_lead_scores_rank", "lead_scores")
    with op.batch_alter_table("lead_scoring_analytics_history") as table:
        table.drop_column("by_state")
