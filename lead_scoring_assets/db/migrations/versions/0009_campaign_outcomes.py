"""Campaign outcomes and the conversion model's scores.

Revision ID: 0009
Revises: 0008

- ``campaigns`` and ``campaign_outcomes``: written by the SMS platform like ``contacts``,
  explicit ids, no constraint rejecting a bad row (it is reported instead).
- ``rejected_campaign_outcomes``: a view of the outcome rows that take no part in training,
  with their reason (no phone number: ids only).
- ``conversion_scores``: one compact row per contact: probability (REAL), decile, and the
  three features raising and lowering it most as small-integer codes with their log-odds
  effects (codes: ``ml/conversion_features.py`` ``REASON_FEATURES``).
"""

import sqlalchemy as sa
from alembic import op

revision = "0009"
down_revision = "0008"
branch_labels = None
depends_on = None

REJECTED_OUTCOMES = """
CREATE VIEW rejected_campaign_outcomes AS
SELECT o.campaign_id, o.contact_id,
       CASE WHEN NOT EXISTS (SELECT 1 FROM campaigns c WHERE c.id = o.campaign_id)
                THEN 'unknown_campaign'
            WHEN NOT EXISTS (SELECT 1 FROM contacts k WHERE k.id = o.contact_id)
                THEN 'unknown_contact'
            WHEN o.delivered IS NULL THEN 'missing_delivered'
            WHEN o.converted AND NOT o.delivered THEN 'converted_without_delivery'
       END AS reason
FROM campaign_outcomes o
WHERE NOT EXISTS (SELECT 1 FROM campaigns c WHERE c.id = o.campaign_id)
   OR NOT EXISTS (SELECT 1 FROM contacts k WHERE k.id = o.contact_id)
   OR o.delivered IS NULL
   OR (o.converted AND NOT o.delivered)
"""


def upgrade() -> None:
    timestamp = sa.DateTime(timezone=True)
    op.create_table(
        "campaigns",
        sa.Column("id", sa.BigInteger, primary_key=True, autoincrement=False),
        sa.Column("name", sa.Text),
        sa.Column("sent_at", timestamp, nullable=False),
    )
    op.create_table(
        "campaign_outcomes",
        sa.Column("campaign_id", sa.BigInteger, primary_key=True, autoincrement=False),
        sa.Column("contact_id", sa.BigInteger, primary_key=True, autoincrement=False),
        sa.Column("delivered", sa.Boolean(create_constraint=False)),
        sa.Column("converted", sa.Boolean(create_constraint=False)),
        sa.Column("converted_at", timestamp),
    )
    op.execute(REJECTED_OUTCOMES)
    op.create_table(
        "conversion_scores",
        sa.Column("contact_id", sa.BigInteger, primary_key=True, autoincrement=False),
        sa.Column("conversion_probability", sa.REAL),
        sa.Column("probability_decile", sa.SmallInteger, nullable=False),
        sa.Column("model_version", sa.String(16)),
        sa.Column("method", sa.String(16), nullable=False),
        sa.Column("calculated_at", timestamp, nullable=False),
        *(
            sa.Column(f"{side}_feature_{i}", sa.SmallInteger)
            for side in ("up", "down")
            for i in (1, 2, 3)
        ),
        *(sa.Column(f"{side}_effect_{i}", sa.REAL) for side in ("up", "down") for i in (1, 2, 3)),
    )


def downgrade() -> None:
    op.drop_table("conversion_scores")
    op.execute("DROP VIEW rejected_campaign_outcomes")
    op.drop_table("campaign_outcomes")
    op.drop_table("campaigns")
