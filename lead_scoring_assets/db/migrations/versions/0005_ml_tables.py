"""ML tables: contact_features (feature set features_v1) and ml_lead_scores.

Revision ID: 0005
Revises: 0004
"""

import sqlalchemy as sa
from alembic import op

revision = "0005"
down_revision = "0004"
branch_labels = None
depends_on = None

PLATFORMS = ("whatsapp", "instagram", "facebook", "google", "apple")


def upgrade() -> None:
    small = sa.SmallInteger
    op.create_table(
        "contact_features",
        sa.Column("contact_id", sa.BigInteger, primary_key=True, autoincrement=False),
        *(sa.Column(f"has_{p}", small, nullable=False) for p in PLATFORMS),
        *(sa.Column(f"{p}_score", small, nullable=False) for p in PLATFORMS),
        sa.Column("platform_count", small, nullable=False),
        sa.Column("business_account_count", small, nullable=False),
        sa.Column("premium_account_count", small, nullable=False),
        sa.Column("validation_count", small, nullable=False),
        sa.Column("avg_confidence_score", sa.Double, nullable=False),
        sa.Column("profile_completeness", sa.Double, nullable=False),
        sa.Column("geographic_consistency", sa.Double, nullable=False),
        sa.Column("account_age_days", sa.Integer, nullable=False),
        sa.Column("validation_recency_days", sa.Integer, nullable=False),
        sa.Column("has_business_accounts", small, nullable=False),
        sa.Column("has_premium_accounts", small, nullable=False),
        sa.Column("is_multi_platform", small, nullable=False),
        sa.Column("meta_ecosystem_user", small, nullable=False),
        sa.Column("tech_ecosystem_user", small, nullable=False),
        sa.Column("feature_set_version", sa.String(32), nullable=False),
        sa.Column("as_of", sa.DateTime(timezone=True), nullable=False),
    )
    op.create_table(
        "ml_lead_scores",
        sa.Column("contact_id", sa.BigInteger, primary_key=True, autoincrement=False),
        sa.Column("predicted_score", sa.Double, nullable=False),
        sa.Column("predicted_tier", sa.String(10), nullable=False),
        sa.Column("confidence", sa.Double, nullable=False),
        sa.Column("model_version", sa.String(32)),
        sa.Column("method", sa.String(32), nullable=False),
        sa.Column("calculated_at", sa.DateTime(timezone=True), nullable=False),
    )
    op.create_index("ix_ml_lead_scores_predicted_score", "ml_lead_scores", ["predicted_score"])


def downgrade() -> None:
    op.drop_table("ml_lead_scores")
    op.drop_table("contact_features")
