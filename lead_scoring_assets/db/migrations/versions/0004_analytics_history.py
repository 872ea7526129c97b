"""Analytics history: each lead_scoring_analytics run's figures, to compare over time.

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
    op.create_table(
        "lead_scoring_analytics_history",
        sa.Column(
            "id",
            sa.BigInteger().with_variant(sa.Integer(), "sqlite"),
            sa.Identity(),
            primary_key=True,
        ),
        sa.Column("run_id", sa.String(64)),
        sa.Column("computed_at", sa.DateTime(timezone=True), nullable=False),
        sa.Column("contacts", sa.BigInteger, nullable=False),
        sa.Column("premium_leads", sa.BigInteger, nullable=False),
        sa.Column("average_score", sa.Double, nullable=False),
        sa.Column("validated_contacts", sa.BigInteger, nullable=False),
        sa.Column("multi_platform_contacts", sa.BigInteger, nullable=False),
        sa.Column("tier_distribution", sa.JSON, nullable=False),
        sa.Column("score_distribution", sa.JSON, nullable=False),
        sa.Column("platform_success", sa.JSON, nullable=False),
    )


def downgrade() -> None:
    op.drop_table("lead_scoring_analytics_history")
