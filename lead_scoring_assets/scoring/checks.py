"""Correctness rules of staged or stored scores and of the LADA reference, counted in SQL."""

from dataclasses import dataclass

import sqlalchemy as sa

from lead_scoring_assets.db.audit import Violations
from lead_scoring_assets.db.buckets import bucket_sql
from lead_scoring_assets.db.database import Database
from lead_scoring_assets.db.score_swap import ScoreSwap, queue_snapshot, staged_scores
from lead_scoring_assets.geography.states import CANONICAL_STATES
from lead_scoring_assets.scoring.config import DEFAULT_CONFIG, PLATFORMS, ScoringConfig

MINIMUM_LADAS = 350


def tier_case(config: ScoringConfig, column: str = "total_score", rounding: float = 0.0) -> str:
    """SQL for the tier of ``column`` (bound with ``tier_params``); a score within
    ``rounding`` below a tier's minimum belongs to it."""
    branches = " ".join(
        f"WHEN {column} >= :tier_{i} - {rounding} THEN :tier_name_{i}"
        for i in range(len(config.tiers))
    )
    return f"CASE {branches} END"


def tier_params(config: ScoringConfig) -> dict:
    params = {}
    for i, (name, minimum) in enumerate(config.tiers):
        params[f"tier_{i}"] = minimum
        params[f"tier_name_{i}"] = name
    return params


def count_rows(condition: str) -> str:
    """SQL counting the rows where ``condition`` holds (0 on an empty table)."""
    return f"coalesce(sum(CASE WHEN {condition} THEN 1 ELSE 0 END), 0)"


def contact_coverage(
    connection,
    table: str,
    queue_snapshot: str | None = None,
    buckets: list[int] | None = None,
    leave_out_queued: bool = False,
) -> tuple[int, int]:
    """Contacts without a row in the per-contact ``table``, and its rows without a contact.

    With ``queue_snapshot`` (the queue as a run found it at its start), contacts queued since
    (inserted, deleted or changed while the run read) are left out: they are the queue's work.
    With ``leave_out_queued`` (tables built from ``lead_scores`` or after it), every queued
    contact is left out: a contact added since the rescoring has no score yet, it is the
    queue's work. With ``buckets``, only those buckets' contacts are expected. ``table`` and
    ``queue_snapshot`` are table names or parenthesised queries.
    """
    since = ""
    if queue_snapshot is not None:
        since = (
            " AND NOT EXISTS (SELECT 1 FROM scoring_queue q WHERE q.contact_id = {id} "
            f"AND NOT EXISTS (SELECT 1 FROM {queue_snapshot} s "
            "WHERE s.contact_id = q.contact_id AND s.version = q.version))"
        )
    elif leave_out_queued:
        since = " AND NOT EXISTS (SELECT 1 FROM scoring_queue q WHERE q.contact_id = {id})"
    in_bucket = (
        ""
        if buckets is None
        else f" AND {bucket_sql(connection.dialect.name, 'c.id')} IN "
        f"({', '.join(str(int(b)) for b in buckets)})"
    )
    return connection.execute(
        sa.text(
            f"SELECT (SELECT count(*) FROM contacts c WHERE NOT EXISTS "
            f"(SELECT 1 FROM {table} t WHERE t.contact_id = c.id){since.format(id='c.id')}"
            f"{in_bucket}), "
            f"(SELECT count(*) FROM {table} t WHERE NOT EXISTS "
            f"(SELECT 1 FROM contacts c WHERE c.id = t.contact_id){since.format(id='t.contact_id')})"
        )
    ).one()


@dataclass(frozen=True)
class ScoreViolations(Violations):
    """Rows of ``lead_scores`` breaking each rule (all zero when the table is sound)."""

    total_out_of_range: int
    platform_over_cap: int
    tier_mismatch: int
    confidence_out_of_range: int
    contacts_without_score: int
    scores_without_contact: int


def staged_score_violations(
    database: Database, run_id: str, config: ScoringConfig = DEFAULT_CONFIG
) -> ScoreViolations:
    """The rules on the buckets staged by full rescoring ``run_id``, read together in one pass
    joined to ``contacts``; coverage counts only the contacts of those buckets it read."""
    with database.engine.connect() as connection:
        buckets = ScoreSwap(database, run_id=run_id).staged_buckets(connection)
        per_bucket = dict(
            connection.execute(
                sa.text(
                    f"SELECT {bucket_sql(database.dialect, 'id')}, count(*) FROM contacts GROUP BY 1"
                )
            ).all()
        )
    return score_violations(
        database,
        config,
        _union([staged_scores(b) for b in buckets]),
        _union([queue_snapshot(b) for b in buckets]),
        buckets=buckets,
        contacts=sum(int(per_bucket.get(b, 0)) for b in buckets),
    )


def _union(tables: list[str]) -> str:
    return "(" + " UNION ALL ".join(f"SELECT * FROM {t}" for t in tables) + ")"


def score_violations(
    database: Database,
    config: ScoringConfig = DEFAULT_CONFIG,
    table: str = "lead_scores",
    queue_snapshot: str | None = None,
    buckets: list[int] | None = None,
    contacts: int | None = None,
) -> ScoreViolations:
    """Rows of the scores ``table`` (one row per contact id) breaking each rule, in one pass
    over it joined to ``contacts``; only if that pass finds a contact without a score or a
    score without a contact does ``contact_coverage`` (with ``queue_snapshot``) count them
    precisely. With ``buckets``, ``table`` (a name or a parenthesised query) holds the
    ``contacts`` contacts of those buckets."""
    platform_rule = " OR ".join(f"{p}_score < 0 OR {p}_score > :cap" for p in PLATFORMS)
    confidence_rule = "confidence_level < 0 OR confidence_level > 1 OR confidence_level IS NULL"
    with database.engine.connect() as connection:
        *rules, with_contact, without_contact = connection.execute(
            sa.text(
                f"SELECT {count_rows('total_score < 0 OR total_score > :total_cap')}, "
                f"{count_rows(platform_rule)}, "
                f"{count_rows(f'quality_tier <> {tier_case(config)}')}, "
                f"{count_rows(confidence_rule)}, count(c.id), count(*) - count(c.id) "
                f"FROM {table} AS t LEFT JOIN contacts c ON c.id = t.contact_id"
            ),
            {"total_cap": config.total_cap, "cap": config.platform_cap, **tier_params(config)},
        ).one()
        if contacts is None:
            contacts = connection.execute(sa.text("SELECT count(*) FROM contacts")).scalar_one()
        coverage = (0, 0)
        if contacts != with_contact or without_contact:
            coverage = contact_coverage(connection, table, queue_snapshot, buckets)
    return ScoreViolations(*(int(v) for v in (*rules, *coverage)))


@dataclass(frozen=True)
class LadaCoverage:
    ladas: int
    missing_states: tuple[str, ...]


def lada_coverage(database: Database, table: str = "ladas_reference") -> LadaCoverage:
    frame = database.read_frame(f"SELECT DISTINCT lada, state_name FROM {table}")
    missing = tuple(sorted(set(CANONICAL_STATES) - set(frame["state_name"])))
    return LadaCoverage(ladas=int(frame["lada"].nunique()), missing_states=missing)
