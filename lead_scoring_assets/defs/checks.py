"""Blocking asset checks that guard the correctness of ``lead_scores`` and ``ladas_reference``."""

import dagster as dg

from lead_scoring_assets.defs.resources import DatabaseResource
from lead_scoring_assets.scoring.checks import MINIMUM_LADAS, lada_coverage, score_violations


@dg.asset_check(asset="lead_scores", blocking=True)
def lead_scores_are_consistent(database: DatabaseResource) -> dg.AssetCheckResult:
    """Every score in 0–100, platform scores within their cap, the tier the score's tier,
    confidence in [0, 1], and exactly one row per contact."""
    db = database.open()
    try:
        violations = score_violations(db)
    finally:
        db.dispose()
    counts = vars(violations)
    return dg.AssetCheckResult(
        passed=not any(counts.values()),
        metadata={name: dg.MetadataValue.int(count) for name, count in counts.items()},
        description=", ".join(f"{n}: {c}" for n, c in counts.items() if c) or "all rules hold",
    )


@dg.asset_check(asset="ladas_reference", blocking=True)
def ladas_reference_covers_mexico(database: DatabaseResource) -> dg.AssetCheckResult:
    """All 32 states present, and at least ``MINIMUM_LADAS`` LADAs."""
    db = database.open()
    try:
        coverage = lada_coverage(db)
    finally:
        db.dispose()
    return dg.AssetCheckResult(
        passed=not coverage.missing_states and coverage.ladas >= MINIMUM_LADAS,
        metadata={"ladas": coverage.ladas, "minimum_ladas": MINIMUM_LADAS,
                  "missing_states": dg.MetadataValue.json(list(coverage.missing_states))},
    )
