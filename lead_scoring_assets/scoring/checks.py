"""Correctness rules of stored scores and of the LADA reference, counted in SQL."""

from dataclasses import dataclass

import sqlalchemy as sa

from lead_scoring_assets.db.database import Database
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


@dataclass(frozen=True)
class ScoreViolations:
    """Rows of ``lead_scores`` breaking each rule (all zero when the table is sound)."""

    total_out_of_range: int
    platform_over_cap: int
    tier_mismatch: int
    confidence_out_of_range: int
    contacts_without_score: int
    scores_without_contact: int


def score_violations(database: Database, config: ScoringConfig = DEFAULT_CONFIG) -> ScoreViolations:
    platform_rule = " OR ".join(f"{p}_score < 0 OR {p}_score > :cap" for p in PLATFORMS)
    with database.engine.connect() as connection:
        rules = connection.execute(
            sa.text(
                "SELECT "
                "coalesce(sum(CASE WHEN total_score < 0 OR total_score > :total_cap THEN 1 "
                "ELSE 0 END), 0), "
                f"coalesce(sum(CASE WHEN {platform_rule} THEN 1 ELSE 0 END), 0), "
                f"coalesce(sum(CASE WHEN quality_tier <> {tier_case(config)} THEN 1 "
                "ELSE 0 END), 0), "
                "coalesce(sum(CASE WHEN confidence_level < 0 OR confidence_level > 1 "
                "OR confidence_level IS NULL THEN 1 ELSE 0 END), 0) "
                "FROM lead_scores"
            ),
            {"total_cap": config.total_cap, "cap": config.platform_cap, **tier_params(config)},
        ).one()
        coverage = connection.execute(sa.text(
            "SELECT (SELECT count(*) FROM contacts c WHERE NOT EXISTS "
            "(SELECT 1 FROM lead_scores s WHERE s.contact_id = c.id)), "
            "(SELECT count(*) FROM lead_scores s WHERE NOT EXISTS "
            "(SELECT 1 FROM contacts c WHERE c.id = s.contact_id))"
        )).one()
    return ScoreViolations(*(int(v) for v in (*rules, *coverage)))


@dataclass(frozen=True)
class LadaCoverage:
    ladas: int
    missing_states: tuple[str, ...]


def lada_coverage(database: Database) -> LadaCoverage:
    frame = database.read_frame("SELECT DISTINCT lada, state_name FROM ladas_reference")
    missing = tuple(sorted(set(CANONICAL_STATES) - set(frame["state_name"])))
    return LadaCoverage(ladas=int(frame["lada"].nunique()), missing_states=missing)
