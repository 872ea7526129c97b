"""Operational schema: platform tables, LADA reference, lead scores, malformed validations.

Revision ID: 0001
Revises:
"""

import sqlalchemy as sa
from alembic import op

revision = "0001"
down_revision = None
branch_labels = None
depends_on = None

ID = sa.BigInteger().with_variant(sa.Integer(), "sqlite")
TIMESTAMP = sa.DateTime(timezone=True)


def _validation_columns() -> list[sa.Column]:
    """The columns a platform validation row carries (no constraint rejects malformed values)."""
    return [
        sa.Column("contact_id", sa.BigInteger, nullable=True),
        sa.Column("platform", sa.Text, nullable=True),
        sa.Column("is_valid", sa.Boolean, nullable=True),
        sa.Column("is_business", sa.Boolean, nullable=True),
        sa.Column("is_premium", sa.Boolean, nullable=True),
        sa.Column("confidence_score", sa.Double, nullable=True),
        sa.Column("validation_method", sa.Text, nullable=True),
        sa.Column("response_time_ms", sa.Integer, nullable=True),
        sa.Column("validated_at", TIMESTAMP, nullable=True),
    ]


def upgrade() -> None:
    op.create_table(
        "contacts",
        sa.Column("id", ID, sa.Identity(always=False), primary_key=True),
        sa.Column("phone_e164", sa.String(20), nullable=False),
        sa.Column("full_name", sa.Text),
        sa.Column("address", sa.Text),
        sa.Column("state_name", sa.Text),
        sa.Column("municipality", sa.Text),
        sa.Column("lada", sa.String(10)),
        sa.Column("operator", sa.Text),
        sa.Column("created_at", TIMESTAMP),
        sa.Column("last_platform_validation", TIMESTAMP),
    )
    op.create_index("ix_contacts_phone_e164", "contacts", ["phone_e164"])

    op.create_table(
        "platform_validations",
        sa.Column("id", ID, sa.Identity(always=False), primary_key=True),
        *_validation_columns(),
    )
    op.create_index(
        "ix_platform_validations_current",
        "platform_validations",
        ["contact_id", "platform", "validated_at", "id"],
    )

    op.create_table(
        "ladas_reference",
        sa.Column("lada", sa.String(10), primary_key=True),
        sa.Column("state_name", sa.Text, primary_key=True),
    )

    op.create_table(
        "lead_scores",
        sa.Column("contact_id", sa.BigInteger, primary_key=True, autoincrement=False),
        sa.Column("phone_e164", sa.String(20)),
        *(
            sa.Column(f"{platform}_score", sa.Integer, nullable=False)
            for platform in ("whatsapp", "instagram", "facebook", "google", "apple")
        ),
        sa.Column("total_score", sa.Integer, nullable=False),
        sa.Column("quality_tier", sa.String(10), nullable=False),
        sa.Column("confidence_level", sa.Double, nullable=False),
        sa.Column("platform_count", sa.Integer, nullable=False),
        sa.Column("business_account_count", sa.Integer, nullable=False),
        sa.Column("premium_account_count", sa.Integer, nullable=False),
        sa.Column("score_breakdown", sa.JSON, nullable=False),
        sa.Column("calculation_method", sa.String(32), nullable=False),
        sa.Column("calculation_version", sa.String(32), nullable=False),
        sa.Column("last_calculated_at", TIMESTAMP, nullable=False),
    )
    op.create_index("ix_lead_scores_total_score", "lead_scores", ["total_score"])
    op.create_index("ix_lead_scores_quality_tier", "lead_scores", ["quality_tier"])

    op.create_table(
        "malformed_validations",
        sa.Column("validation_id", sa.BigInteger, primary_key=True, autoincrement=False),
        *_validation_columns(),
        sa.Column("reason", sa.String(64), nullable=False),
        sa.Column("detected_at", TIMESTAMP, nullable=False),
    )
    op.create_index("ix_malformed_validations_reason", "malformed_validations", ["reason"])


def downgrade() -> None:
    for table in (
        "malformed_validations",
        "lead_scores",
        "ladas_reference",
        "platform_validations",
        "contacts",
    ):
        op.drop_table(table)
