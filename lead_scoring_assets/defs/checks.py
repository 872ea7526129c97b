"""Blocking asset checks. The audits of the full rescoring and of the LADA reference read the
staged rows, before anything is published: a failed audit discards them (and releases the
scoring lock), so the publishing step never runs. The ML checks guard ``contact_features`` and
``ml_lead_scores``."""

import dagster as dg

from lead_scoring_assets.db.staged_table import StagedTable
from lead_scoring_assets.defs.resources import DatabaseResource
from lead_scoring_assets.ml.checks import feature_violations, ml_score_violations
from lead_scoring_assets.scoring.checks import (
    MINIMUM_LADAS,
    lada_coverage,
    staged_score_violations,
)
from lead_scoring_assets.scoring.full_rescore import discard_rescore


@dg.asset_check(asset="staged_lead_scores", blocking=True)
def staged_lead_scores_pass_audit(
    context: dg.AssetCheckExecutionContext, database: DatabaseResource
) -> dg.AssetCheckResult:
    """On the staged scores: every total in 0–100, platform scores within their cap, the tier
    the score's tier, confidence in [0, 1], one row per contact the run read (contacts
    inserted or deleted while it ran are the queue's work). Failing discards the staged
    rows."""
    with database.open() as db:
        violations = staged_score_violations(db)
        if violations.failed:
            discard_rescore(db, context.run.run_id)
    return _result(vars(violations), violations.describe())


@dg.asset_check(asset="staged_ladas_reference", blocking=True)
def staged_ladas_reference_covers_mexico(
    context: dg.AssetCheckExecutionContext, database: DatabaseResource
) -> dg.AssetCheckResult:
    """On the staged reference: all 32 states present, and at least ``MINIMUM_LADAS`` LADAs.
    Failing discards the staged reference."""
    with database.open() as db:
        staged = StagedTable(db, "ladas_reference", run_id=context.run.run_id)
        coverage = lada_coverage(db, staged.staged)
        passed = not coverage.missing_states and coverage.ladas >= MINIMUM_LADAS
        if not passed:
            staged.discard()
    return dg.AssetCheckResult(
        passed=passed,
        metadata={"ladas": coverage.ladas, "minimum_ladas": MINIMUM_LADAS,
                  "missing_states": dg.MetadataValue.json(list(coverage.missing_states))},
    )


@dg.asset_check(asset="contact_features", blocking=True)
def contact_features_are_valid(database: DatabaseResource) -> dg.AssetCheckResult:
    """Flags 0/1, platform scores within their cap, counts 0–5, ratios in [0, 1], geography
    0.3/0.5/1.0, days in range, the current feature set, and one row per contact."""
    with database.open() as db:
        counts = vars(feature_violations(db))
    return _result(counts)


@dg.asset_check(asset="ml_lead_scores", blocking=True)
def ml_lead_scores_are_consistent(database: DatabaseResource) -> dg.AssetCheckResult:
    """Predicted scores in 0–100 with their tier, model confidence in [0.5, 1], fallback rows
    at confidence 0.7 without a model version, and one row per contact."""
    with database.open() as db:
        counts = vars(ml_score_violations(db))
    return _result(counts)


def _result(counts: dict[str, int], description: str | None = None) -> dg.AssetCheckResult:
    return dg.AssetCheckResult(
        passed=not any(counts.values()),
        metadata={name: dg.MetadataValue.int(count) for name, count in counts.items()},
        description=description or ", ".join(f"{n}: {c}" for n, c in counts.items() if c)
        or "all rules hold",
    )
