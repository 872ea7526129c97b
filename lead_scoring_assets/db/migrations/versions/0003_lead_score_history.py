"""Score history: one append-only row whenever a contact's total score or tier changes.

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
    op.create_table(
        "lead_score_history",
        sa.Column(
            "id",
            sa.BigInteger().with_variant(sa.Integer(), "sqlite"),
            sa.Identity(),
            primary_key=True,
        ),
        sa.Column("contact_id", sa.BigInteger, nullable=False),
        sa.Column("old_total_score", sa.Integer),
        sa.Column("new_total_score", sa.Integer, nullable=False),
        sa.Column("old_quality_tier", sa.String(10)),
        sa.Column("new_quality_tier", sa.String(10), nullable=False),
        sa.Column("calculation_version", sa.String(32), nullable=False),
        sa.Column("run_id", sa.String(64)),
        sa.Column("changed_at", sa.DateTime(timezone=True), nullable=False),
    )
    op.create_index(
        "ix_lead_score_history_contact", "lead_score_history", ["contact_id", "changed_at"]
    )


def downgrade() -> None:
    op.drop_table("lead_score_history")
