"""Blocking asset checks that guard ``lead_scores``, ``ladas_reference``, ``contact_features``
and ``ml_lead_scores``."""

import dagster as dg

from lead_scoring_assets.defs.resources import DatabaseResource
from lead_scoring_assets.ml.checks import feature_violations, ml_score_violations
from lead_scoring_assets.scoring.checks import MINIMUM_LADAS, lada_coverage, score_violations


@dg.asset_check(asset="lead_scores", blocking=True)
def lead_scores_are_consistent(database: DatabaseResource) -> dg.AssetCheckResult:
    """Every score in 0–100, platform scores within their cap, the tier the score's tier,
    confidence in [0, 1], and exactly one row per contact."""
    return _violations_result(database, score_violations)


@dg.asset_check(asset="contact_features", blocking=True)
def contact_features_are_valid(database: DatabaseResource) -> dg.AssetCheckResult:
    """Flags 0/1, platform scores within their cap, counts 0–5, ratios in [0, 1], geography
    0.3/0.5/1.0, days in range, the current feature set, and one row per contact."""
    return _violations_result(database, feature_violations)


@dg.asset_check(asset="ml_lead_scores", blocking=True)
def ml_lead_scores_are_consistent(database: DatabaseResource) -> dg.AssetCheckResult:
    """Predicted scores in 0–100 with their tier, model confidence in [0.5, 1], fallback rows
    at confidence 0.7 without a model version, and one row per contact."""
    return _violations_result(database, ml_score_violations)


def _violations_result(database: DatabaseResource, count_violations) -> dg.AssetCheckResult:
    with database.open() as db:
        counts = vars(count_violations(db))
    return dg.AssetCheckResult(
        passed=not any(counts.values()),
        metadata={name: dg.MetadataValue.int(count) for name, count in counts.items()},
        description=", ".join(f"{n}: {c}" for n, c in counts.items() if c) or "all rules hold",
    )


@dg.asset_check(asset="ladas_reference", blocking=True)
def ladas_reference_covers_mexico(database: DatabaseResource) -> dg.AssetCheckResult:
    """All 32 states present, and at least ``MINIMUM_LADAS`` LADAs."""
    with database.open() as db:
        coverage = lada_coverage(db)
    return dg.AssetCheckResult(
        passed=not coverage.missing_states and coverage.ladas >= MINIMUM_LADAS,
        metadata={"ladas": coverage.ladas, "minimum_ladas": MINIMUM_LADAS,
                  "missing_states": dg.MetadataValue.json(list(coverage.missing_states))},
    )
