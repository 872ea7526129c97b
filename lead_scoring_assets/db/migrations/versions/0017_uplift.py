"""Uplift scores and send lists sized for profit.

Revision ID: 0017
Revises: 0016

- ``uplift_scores``: one compact row per contact from the uplift champion: the expected
  change in the probability of converting when messaged (``uplift``, REAL, may be negative),
  its decile (10 = highest, as ``conversion_scores.probability_decile``), the model version
  and method, and the three features raising and lowering it most as small-integer codes (``ml/conversion_features.py``) with their effects.
  Hash-partitioned by ``contact_id`` on PostgreSQL (16 partitions, as ``conversion_scores``),
  so that a publish swaps partitions; SQLite keeps one table.
- ``campaigns`` gains how a planned campaign was selected (``rank_by``, ``select_rule``,
  ``budget``, the uplift model version) and what it was expected to bring: incremental
  conversions and profit, each with a 95 % interval, for "predicted vs measured".
"""

import sqlalchemy as sa
from alembic import op

revision = "0017"
down_revision = "0016"
branch_labels = None
depends_on = None

TABLE = "uplift_scores"
BUCKETS = 16
CAMPAIGN_COLUMNS = (
    ("rank_by", sa.String(16)),
    ("select_rule", sa.String(16)),
    ("budget", sa.Float),
    ("uplift_model_version", sa.String(16)),
    ("expected_incremental_conversions", sa.Float),
    ("expected_incremental_low", sa.Float),
    ("expected_incremental_high", sa.Float),
    ("expected_profit", sa.Float),
    ("expected_profit_low", sa.Float),
    ("expected_profit_high", sa.Float),
)


def upgrade() -> None:
    timestamp = sa.DateTime(timezone=True)
    columns = [
        sa.Column("contact_id", sa.BigInteger, primary_key=True, autoincrement=False),
        sa.Column("uplift", sa.REAL, nullable=False),
        sa.Column("uplift_decile", sa.SmallInteger, nullable=False),
        sa.Column("model_version", sa.String(16), nullable=False),
        sa.Column("method", sa.String(32), nullable=False),
        sa.Column("calculated_at", timestamp, nullable=False),
        *(
            sa.Column(f"{side}_feature_{i}", sa.SmallInteger)
            for side in ("up", "down")
            for i in (1, 2, 3)
        ),
        *(sa.Column(f"{side}_effect_{i}", sa.REAL) for side in ("up", "down") for i in (1, 2, 3)),
    ]
    if op.get_bind().dialect.name == "postgresql":
        op.create_table(TABLE, *columns, postgresql_partition_by="HASH (contact_id)")
        for bucket in range(BUCKETS):
            op.execute(
                f"CREATE TABLE {TABLE}_p{bucket:02d} PARTITION OF {TABLE} "
                f"FOR VALUES WITH (MODULUS {BUCKETS}, REMAINDER {bucket})"
            )
    else:
        op.create_table(TABLE, *columns)
    with op.batch_alter_table("campaigns") as batch:
        for name, column_type in CAMPAIGN_COLUMNS:
            batch.add_column(sa.Column(name, column_type))


def downgrade() -> None:
    for name, _ in reversed(CAMPAIGN_COLUMNS):  # in place: a batch copy breaks the views
        op.execute(f"ALTER TABLE campaigns DROP COLUMN {name}")
    op.drop_table(TABLE)
