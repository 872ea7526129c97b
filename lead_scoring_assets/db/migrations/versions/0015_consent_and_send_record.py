"""Consent, suppression and a record of every send.

Revision ID: 0015
Revises: 0014

- ``suppressions``: one row per number (E.164, ``+52`` and 10 digits) and reason
  (``opt_out``, ``repus``, ``hard_bounce``, ``arco``, ``manual``); ``source`` says where it came
  from (a file, a reply id, a campaign, a person), ``expires_at`` NULL for never.
- ``sms_replies``: written by the SMS platform (explicit ids, the number in any form);
  ``processed_at`` is set once the replies asset has turned the reply into (or out of) an
  ``opt_out`` suppression, so an export applies the replies not yet processed itself.
- ``campaigns`` gains the columns of a campaign this product planned (every one nullable: the
  platform keeps writing ``(id, name, sent_at)``).
- ``campaign_recipients``: who a campaign selected, ``arm`` ``target`` or ``control``; the
  platform may write ``(campaign_id, contact_id, arm)`` only.
- ``campaign_recipient_features``: the conversion features each recipient had at selection
  (``conversion_v1``, typed), for point-in-time training.
- Indexes by contact on ``campaign_outcomes`` and ``malformed_validations`` and by number on
  ``sms_replies``: forgetting a person finds their rows without a scan.
- ``rejected_campaign_outcomes`` accepts a control recipient's row (not delivered, converted).
"""

import sqlalchemy as sa
from alembic import op

revision = "0015"
down_revision = "0014"
branch_labels = None
depends_on = None

REASONS = ("opt_out", "repus", "hard_bounce", "arco", "manual")
NUMERIC_FEATURES = (
    *(f"has_{p}" for p in ("whatsapp", "instagram", "facebook", "google", "apple")),
    *(f"{p}_score" for p in ("whatsapp", "instagram", "facebook", "google", "apple")),
    "platform_count",
    "business_account_count",
    "premium_account_count",
    "validation_count",
    "avg_confidence_score",
    "profile_completeness",
    "geographic_consistency",
    "account_age_days",
    "validation_recency_days",
    "has_business_accounts",
    "has_premium_accounts",
    "is_multi_platform",
    "meta_ecosystem_user",
    "tech_ecosystem_user",
)
"""``conversion_v1``'s numeric features (ml/features.py ``FEATURE_COLUMNS`` at this revision)."""
REAL_FEATURES = ("avg_confidence_score", "profile_completeness", "geographic_consistency")
INTEGER_FEATURES = ("account_age_days", "validation_recency_days")
CATEGORICAL_FEATURES = ("state", "carrier", "lada_status")
CAMPAIGN_COLUMNS = (
    ("status", sa.String(16)),
    ("planned_at", sa.DateTime(timezone=True)),
    ("as_of", sa.DateTime(timezone=True)),
    ("filters", sa.Text),
    ("file_name", sa.Text),
    ("file_sha256", sa.String(64)),
    ("cost_per_message", sa.Float),
    ("value_per_conversion", sa.Float),
    ("control_share", sa.Float),
    ("target_recipients", sa.BigInteger),
    ("control_recipients", sa.BigInteger),
    ("suppressed", sa.BigInteger),
)

REJECTED_OUTCOMES = """
CREATE VIEW rejected_campaign_outcomes AS
SELECT o.campaign_id, o.contact_id,
       CASE WHEN NOT EXISTS (SELECT 1 FROM campaigns c WHERE c.id = o.campaign_id)
                THEN 'unknown_campaign'
            WHEN NOT EXISTS (SELECT 1 FROM contacts k WHERE k.id = o.contact_id)
                THEN 'unknown_contact'
            WHEN o.delivered IS NULL THEN 'missing_delivered'
            WHEN o.converted AND NOT o.delivered {control}
                THEN 'converted_without_delivery'
       END AS reason
FROM campaign_outcomes o
WHERE NOT EXISTS (SELECT 1 FROM campaigns c WHERE c.id = o.campaign_id)
   OR NOT EXISTS (SELECT 1 FROM contacts k WHERE k.id = o.contact_id)
   OR o.delivered IS NULL
   OR (o.converted AND NOT o.delivered {control})
"""
NOT_CONTROL = (
    "AND NOT EXISTS (SELECT 1 FROM campaign_recipients r WHERE r.campaign_id = "
    "o.campaign_id AND r.contact_id = o.contact_id AND r.arm = 'control')"
)


def _feature_type(name: str) -> sa.types.TypeEngine:
    if name in REAL_FEATURES:
        return sa.REAL()
    if name in INTEGER_FEATURES:
        return sa.Integer()
    return sa.SmallInteger()


def upgrade() -> None:
    timestamp = sa.DateTime(timezone=True)
    op.create_table(
        "suppressions",
        sa.Column("phone_e164", sa.String(16), primary_key=True),
        sa.Column("reason", sa.String(16), primary_key=True),
        sa.Column("source", sa.Text, nullable=False),
        sa.Column("recorded_at", timestamp, nullable=False),
        sa.Column("expires_at", timestamp),
        sa.CheckConstraint(
            f"reason IN ({', '.join(repr(r) for r in REASONS)})", name="suppressions_reason"
        ),
        sa.CheckConstraint(
            "phone_e164 LIKE '+52__________' AND length(phone_e164) = 13", name="suppressions_e164"
        ),
    )
    op.create_index("suppressions_by_reason", "suppressions", ["reason"])
    op.create_table(
        "sms_replies",
        sa.Column("id", sa.BigInteger().with_variant(sa.Integer, "sqlite"), primary_key=True),
        sa.Column("phone_e164", sa.Text),
        sa.Column("body", sa.Text),
        sa.Column("received_at", timestamp),
        sa.Column("processed_at", timestamp),
    )
    op.create_index(
        "sms_replies_unprocessed",
        "sms_replies",
        ["received_at", "id"],
        postgresql_where=sa.text("processed_at IS NULL"),
        sqlite_where=sa.text("processed_at IS NULL"),
    )
    with op.batch_alter_table("campaigns") as batch:
        for name, column_type in CAMPAIGN_COLUMNS:
            batch.add_column(sa.Column(name, column_type))
    op.create_table(
        "campaign_recipients",
        sa.Column("campaign_id", sa.BigInteger, primary_key=True, autoincrement=False),
        sa.Column("contact_id", sa.BigInteger, primary_key=True, autoincrement=False),
        sa.Column("arm", sa.String(8), nullable=False, server_default="target"),
        sa.Column("rank", sa.BigInteger),
        sa.Column("total_score", sa.SmallInteger),
        sa.Column("conversion_probability", sa.REAL),
        sa.Column("probability_decile", sa.SmallInteger),
        sa.Column("model_version", sa.String(16)),
        sa.CheckConstraint("arm IN ('target', 'control')", name="campaign_recipients_arm"),
    )
    op.create_index("campaign_recipients_by_contact", "campaign_recipients", ["contact_id"])
    op.create_table(
        "campaign_recipient_features",
        sa.Column("campaign_id", sa.BigInteger, primary_key=True, autoincrement=False),
        sa.Column("contact_id", sa.BigInteger, primary_key=True, autoincrement=False),
        sa.Column("feature_set", sa.String(16), nullable=False),
        *(sa.Column(name, _feature_type(name)) for name in NUMERIC_FEATURES),
        *(sa.Column(name, sa.Text) for name in CATEGORICAL_FEATURES),
    )
    op.create_index(
        "campaign_recipient_features_by_contact", "campaign_recipient_features", ["contact_id"]
    )
    op.create_index("sms_replies_by_phone", "sms_replies", ["phone_e164"])
    op.create_index("campaign_outcomes_by_contact", "campaign_outcomes", ["contact_id"])
    op.create_index("malformed_validations_by_contact", "malformed_validations", ["contact_id"])
    op.execute("DROP VIEW rejected_campaign_outcomes")
    op.execute(REJECTED_OUTCOMES.format(control=NOT_CONTROL))


def downgrade() -> None:
    op.execute("DROP VIEW rejected_campaign_outcomes")
    op.drop_index("malformed_validations_by_contact", "malformed_validations")
    op.drop_index("campaign_outcomes_by_contact", "campaign_outcomes")
    op.drop_table("campaign_recipient_features")
    op.drop_table("campaign_recipients")
    with op.batch_alter_table("campaigns") as batch:
        for name, _ in reversed(CAMPAIGN_COLUMNS):
            batch.drop_column(name)
    op.execute(REJECTED_OUTCOMES.format(control=""))
    op.drop_table("sms_replies")
    op.drop_table("suppressions")
