"""Correctness rules of ``contact_features`` and ``ml_lead_scores``, counted in SQL."""

from dataclasses import dataclass

import sqlalchemy as sa

from lead_scoring_assets.db.audit import Violations
from lead_scoring_assets.db.database import Database
from lead_scoring_assets.ml.features import FEATURE_SET_VERSION
from lead_scoring_assets.ml.predictions import (
    FALLBACK_CONFIDENCE,
    FALLBACK_METHOD,
    MINIMUM_CONFIDENCE,
)
from lead_scoring_assets.ml.training import TIER_ROUNDING
from lead_scoring_assets.scoring.checks import (
    contact_coverage,
    count_rows,
    tier_case,
    tier_params,
)
from lead_scoring_assets.scoring.config import DEFAULT_CONFIG, PLATFORMS

FLAGS = (
    *(f"has_{p}" for p in PLATFORMS),
    "has_business_accounts",
    "has_premium_accounts",
    "is_multi_platform",
    "meta_ecosystem_user",
    "tech_ecosystem_user",
)
COUNTS = ("platform_count", "business_account_count", "premium_account_count", "validation_count")


@dataclass(frozen=True)
class FeatureViolations(Violations):
    """Rows of ``contact_features`` breaking each rule (all zero when the table is sound)."""

    flag_not_binary: int
    platform_score_out_of_range: int
    count_out_of_range: int
    ratio_out_of_range: int
    days_out_of_range: int
    other_feature_set: int
    contacts_without_features: int
    features_without_contact: int


def feature_violations(database: Database, table: str = "contact_features") -> FeatureViolations:
    """The rules on the features ``table`` (the live one, or the staged one before publish)."""
    flags = " OR ".join(f"{f} NOT IN (0, 1)" for f in FLAGS)
    scores = " OR ".join(f"{p}_score < 0 OR {p}_score > :cap" for p in PLATFORMS)
    counts = " OR ".join(f"{c} < 0 OR {c} > :platforms" for c in COUNTS)
    ratios = (
        "avg_confidence_score < 0 OR avg_confidence_score > 1 "
        "OR profile_completeness < 0 OR profile_completeness > 1 "
        "OR geographic_consistency NOT IN (:geo_mismatch, 0.5, 1.0)"
    )
    days = "account_age_days < -1 OR validation_recency_days < 0"
    with database.engine.connect() as connection:
        rules = connection.execute(
            sa.text(
                f"SELECT {count_rows(flags)}, {count_rows(scores)}, {count_rows(counts)}, "
                f"{count_rows(ratios)}, {count_rows(days)}, "
                f"{count_rows('feature_set_version <> :version')} FROM {table}"
            ),
            {
                "cap": DEFAULT_CONFIG.platform_cap,
                "platforms": len(PLATFORMS),
                "geo_mismatch": DEFAULT_CONFIG.geo_mismatch_value,
                "version": FEATURE_SET_VERSION,
            },
        ).one()
        coverage = contact_coverage(connection, table, leave_out_queued=True)
    return FeatureViolations(*(int(v) for v in (*rules, *coverage)))


@dataclass(frozen=True)
class MlScoreViolations(Violations):
    """Rows of ``ml_lead_scores`` breaking each rule (all zero when the table is sound)."""

    score_out_of_range: int
    tier_mismatch: int
    confidence_out_of_range: int
    fallback_inconsistent: int
    contacts_without_ml_score: int
    ml_scores_without_contact: int


def ml_score_violations(database: Database, table: str = "ml_lead_scores") -> MlScoreViolations:
    """The rules on the ML scores ``table`` (the live one, or the staged one before publish)."""
    tier = tier_case(DEFAULT_CONFIG, "predicted_score", TIER_ROUNDING)
    model_confidence = "method <> :fallback AND (confidence < :minimum OR confidence > 1)"
    fallback_row = (
        "method = :fallback AND (confidence <> :fallback_confidence OR model_version IS NOT NULL)"
    )
    with database.engine.connect() as connection:
        rules = connection.execute(
            sa.text(
                "SELECT "
                f"{count_rows('predicted_score < 0 OR predicted_score > :total_cap')}, "
                f"{count_rows(f'predicted_tier <> {tier}')}, "
                f"{count_rows(model_confidence)}, {count_rows(fallback_row)} "
                f"FROM {table}"
            ),
            {
                "total_cap": DEFAULT_CONFIG.total_cap,
                "fallback": FALLBACK_METHOD,
                "minimum": MINIMUM_CONFIDENCE,
                "fallback_confidence": FALLBACK_CONFIDENCE,
                **tier_params(DEFAULT_CONFIG),
            },
        ).one()
        coverage = contact_coverage(connection, table, leave_out_queued=True)
    return MlScoreViolations(*(int(v) for v in (*rules, *coverage)))
