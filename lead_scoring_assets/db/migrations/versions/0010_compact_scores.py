"""Compact lead_scores: the JSON ``score_breakdown`` becomes typed columns, counts and scores
become ``smallint``, and the columns are ordered to pack without alignment padding.

The breakdown keeps its content (SCORING_SPEC.md §8): the stored inputs are each platform's
points before quality, the number of non-blank profile fields, whether the LADA matches the
state, and the days behind the account-age and recency factors; the rest is derived on read
(``scoring.breakdown``). Existing rows are converted in SQL; their day counts come from the
factor values, so a saturated factor gives the day it saturates (365 and 15 days), which reads
back as the same factor. The downgrade rebuilds the JSON with ``breakdown_of``.

Revision ID: 0010
Revises: 0008
"""

import json

import sqlalchemy as sa
from alembic import op

revision = "0010"
down_revision = "0008"
branch_labels = None
depends_on = None

PLATFORMS = ("whatsapp", "instagram", "facebook", "google", "apple")
OLD = "lead_scores_0008"
NEW = "lead_scores_0010"
TIMESTAMP = sa.DateTime(timezone=True)
SMALL = sa.SmallInteger


def _compact_columns() -> list[sa.Column]:
    return [
        sa.Column("contact_id", sa.BigInteger, primary_key=True, autoincrement=False),
        sa.Column("last_calculated_at", TIMESTAMP, nullable=False),
        sa.Column("confidence_level", sa.Double, nullable=False),
        *(sa.Column(f"{p}_score", SMALL, nullable=False) for p in PLATFORMS),
        sa.Column("total_score", SMALL, nullable=False),
        sa.Column("platform_count", SMALL, nullable=False),
        sa.Column("business_account_count", SMALL, nullable=False),
        sa.Column("premium_account_count", SMALL, nullable=False),
        *(sa.Column(f"{p}_points", SMALL, nullable=False) for p in PLATFORMS),
        sa.Column("profile_fields", SMALL, nullable=False),
        sa.Column("account_age_days", SMALL),
        sa.Column("validation_recency_days", SMALL),
        sa.Column("lada_state_match", sa.Boolean),
        sa.Column("quality_tier", sa.String(10), nullable=False),
        sa.Column("calculation_method", sa.String(32), nullable=False),
        sa.Column("calculation_version", sa.String(32), nullable=False),
    ]


def _json_columns() -> list[sa.Column]:
    return [
        sa.Column("contact_id", sa.BigInteger, primary_key=True, autoincrement=False),
        *(sa.Column(f"{p}_score", sa.Integer, nullable=False) for p in PLATFORMS),
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
    ]


def _set_aside() -> None:
    """Rename the live table to ``OLD`` and drop its indexes, freeing their names."""
    op.drop_index("ix_lead_scores_rank", "lead_scores")
    op.drop_index("ix_lead_scores_quality_tier", "lead_scores")
    op.rename_table("lead_scores", OLD)
    if op.get_bind().dialect.name == "postgresql":
        op.execute(f"ALTER INDEX lead_scores_pkey RENAME TO {OLD}_pkey")


def _create(columns: list[sa.Column]) -> None:
    op.create_table("lead_scores", *columns)
    op.create_index("ix_lead_scores_rank", "lead_scores", ["total_score", "contact_id"])
    op.create_index("ix_lead_scores_quality_tier", "lead_scores", ["quality_tier"])


def upgrade() -> None:
    postgres = op.get_bind().dialect.name == "postgresql"

    def field(*path: str) -> str:
        if postgres:
            return f"CAST(score_breakdown #>> '{{{','.join(path)}}}' AS double precision)"
        return f"json_extract(score_breakdown, '$.{'.'.join(path)}')"

    def days(expression: str) -> str:
        return f"CAST(round({expression}) AS {'smallint' if postgres else 'INTEGER'})"

    _set_aside()
    _create(_compact_columns())
    derived = {
        **{f"{p}_points": days(field("points_before_quality", p)) for p in PLATFORMS},
        "profile_fields": days(f"{field('quality_factors', 'profile_completeness')} * 6"),
        "account_age_days": days(f"{field('quality_factors', 'account_age')} * 365"),
        "validation_recency_days": days(
            f"(1 - {field('quality_factors', 'validation_recency')}) * 30"),
        "lada_state_match": f"({field('quality_factors', 'geographic_consistency')} = 1)",
    }
    columns = [c.name for c in _compact_columns()]
    values = [derived.get(c, c) for c in columns]
    op.execute(f"INSERT INTO lead_scores ({', '.join(columns)}) "
               f"SELECT {', '.join(values)} FROM {OLD}")
    op.drop_table(OLD)


def downgrade() -> None:
    from lead_scoring_assets.scoring.breakdown import breakdown_of

    connection = op.get_bind()
    _set_aside()
    _create(_json_columns())
    columns = [c.name for c in _json_columns()]
    json_value = ("CAST(:score_breakdown AS json)" if connection.dialect.name == "postgresql"
                  else ":score_breakdown")
    insert = sa.text(
        f"INSERT INTO lead_scores ({', '.join(columns)}) VALUES "
        f"({', '.join(json_value if c == 'score_breakdown' else f':{c}' for c in columns)})")
    rows = connection.execute(sa.text(f"SELECT * FROM {OLD} ORDER BY contact_id")).mappings()
    while batch := rows.fetchmany(10_000):
        connection.execute(insert, [
            {**{c: row[c] for c in columns if c != "score_breakdown"},
             "score_breakdown": json.dumps(breakdown_of(row), separators=(",", ":"))}
            for row in batch])
    op.drop_table(OLD)
