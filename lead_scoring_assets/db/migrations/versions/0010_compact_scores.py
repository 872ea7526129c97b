"""Compact, partitioned score tables.

``lead_scores``: the JSON ``score_breakdown`` becomes typed columns, counts and scores become
``smallint``, and the columns are ordered to pack without alignment padding. On PostgreSQL,
``lead_scores``, ``contact_features`` and ``ml_lead_scores`` become hash-partitioned by
``contact_id`` into ``BUCKETS`` partitions (``<table>_p00`` …), so that a publish swaps
partitions under a parent that stays (``db/staged_table.py``). SQLite keeps single tables.

The breakdown keeps its content (SCORING_SPEC.md §8): the stored inputs are each platform's
points before quality, the number of non-blank profile fields, whether the LADA matches the
state, and the days behind the account-age and recency factors; the rest is derived on read
(``scoring.breakdown``). Existing rows are converted in SQL; their day counts come from the
factor values, so a saturated factor gives the day it saturates (365 and 15 days), which reads
back as the same factor. The downgrade rebuilds the JSON with ``breakdown_of`` (each row with
its ``calculation_version``'s configuration; a version not known to the code stops it).

Revision ID: 0010
Revises: 0009
"""

import json

import sqlalchemy as sa
from alembic import op

revision = "0010"
down_revision = "0009"
branch_labels = None
depends_on = None

PLATFORMS = ("whatsapp", "instagram", "facebook", "google", "apple")
OLD = "lead_scores_0008"
NEW = "lead_scores_0010"
TIMESTAMP = sa.DateTime(timezone=True)
SMALL = sa.SmallInteger
BUCKETS = 16
PARTITIONED = {"contact_features": (), "ml_lead_scores": ("predicted_score",)}
"""The other per-contact tables partitioned on PostgreSQL, with their indexed columns."""


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
    if _postgres():
        op.execute(f"ALTER INDEX lead_scores_pkey RENAME TO {OLD}_pkey")


def _postgres() -> bool:
    return op.get_bind().dialect.name == "postgresql"


def _add_partitions(table: str) -> None:
    for bucket in range(BUCKETS):
        op.execute(
            f"CREATE TABLE {table}_p{bucket:02d} PARTITION OF {table} "
            f"FOR VALUES WITH (MODULUS {BUCKETS}, REMAINDER {bucket})"
        )


def _create(columns: list[sa.Column], partitioned: bool = False) -> None:
    if partitioned:
        op.create_table("lead_scores", *columns, postgresql_partition_by="HASH (contact_id)")
        _add_partitions("lead_scores")
    else:
        op.create_table("lead_scores", *columns)
    op.create_index("ix_lead_scores_rank", "lead_scores", ["total_score", "contact_id"])
    op.create_index("ix_lead_scores_quality_tier", "lead_scores", ["quality_tier"])


def upgrade() -> None:
    postgres = _postgres()

    def field(*path: str) -> str:
        if postgres:
            return f"CAST(score_breakdown #>> '{{{','.join(path)}}}' AS double precision)"
        return f"json_extract(score_breakdown, '$.{'.'.join(path)}')"

    def days(expression: str) -> str:
        return f"CAST(round({expression}) AS {'smallint' if postgres else 'INTEGER'})"

    _set_aside()
    _create(_compact_columns(), partitioned=postgres)
    derived = {
        **{f"{p}_points": days(field("points_before_quality", p)) for p in PLATFORMS},
        "profile_fields": days(f"{field('quality_factors', 'profile_completeness')} * 6"),
        "account_age_days": days(f"{field('quality_factors', 'account_age')} * 365"),
        "validation_recency_days": days(
            f"(1 - {field('quality_factors', 'validation_recency')}) * 30"
        ),
        "lada_state_match": f"({field('quality_factors', 'geographic_consistency')} = 1)",
    }
    columns = [c.name for c in _compact_columns()]
    values = [derived.get(c, c) for c in columns]
    op.execute(
        f"INSERT INTO lead_scores ({', '.join(columns)}) SELECT {', '.join(values)} FROM {OLD}"
    )
    op.drop_table(OLD)
    if postgres:
        for table, indexed in PARTITIONED.items():
            _rebuild(table, indexed, partitioned=True)


def _rebuild(table: str, indexed: tuple[str, ...], partitioned: bool) -> None:
    """PostgreSQL: ``table`` rebuilt with the same columns, hash-partitioned or single."""
    aside = f"{table}_{revision}"
    for column in indexed:
        op.drop_index(f"ix_{table}_{column}", table)
    op.rename_table(table, aside)
    op.execute(f"ALTER INDEX {table}_pkey RENAME TO {aside}_pkey")
    partition_by = " PARTITION BY HASH (contact_id)" if partitioned else ""
    op.execute(f"CREATE TABLE {table} (LIKE {aside} INCLUDING DEFAULTS){partition_by}")
    if partitioned:
        _add_partitions(table)
    op.execute(f"ALTER TABLE {table} ADD CONSTRAINT {table}_pkey PRIMARY KEY (contact_id)")
    for column in indexed:
        op.create_index(f"ix_{table}_{column}", table, [column])
    op.execute(f"INSERT INTO {table} SELECT * FROM {aside}")
    op.drop_table(aside)


def downgrade() -> None:
    from lead_scoring_assets.scoring.breakdown import breakdown_of

    connection = op.get_bind()
    if _postgres():
        for table, indexed in PARTITIONED.items():
            _rebuild(table, indexed, partitioned=False)
    _set_aside()
    _create(_json_columns())
    columns = [c.name for c in _json_columns()]
    json_value = (
        "CAST(:score_breakdown AS json)"
        if connection.dialect.name == "postgresql"
        else ":score_breakdown"
    )
    insert = sa.text(
        f"INSERT INTO lead_scores ({', '.join(columns)}) VALUES "
        f"({', '.join(json_value if c == 'score_breakdown' else f':{c}' for c in columns)})"
    )
    rows = connection.execute(sa.text(f"SELECT * FROM {OLD} ORDER BY contact_id")).mappings()
    while batch := rows.fetchmany(10_000):
        connection.execute(
            insert,
            [
                {
                    **{c: row[c] for c in columns if c != "score_breakdown"},
                    "score_breakdown": json.dumps(breakdown_of(row), separators=(",", ":")),
                }
                for row in batch
            ],
        )
    op.drop_table(OLD)
