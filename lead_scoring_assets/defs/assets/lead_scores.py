"""The ``lead_scores`` asset: the full advanced_v1 rescoring of every contact."""

import dagster as dg
from pydantic import Field

from lead_scoring_assets.db.database import redact
from lead_scoring_assets.defs.resources import DatabaseResource
from lead_scoring_assets.defs.retries import retry_on_transient_database_errors
from lead_scoring_assets.defs.run_start import run_start
from lead_scoring_assets.scoring.config import DEFAULT_CONFIG
from lead_scoring_assets.scoring.full_rescore import rescore_all


class LeadScoresConfig(dg.Config):
    as_of: str | None = Field(
        default=None,
        description="ISO-8601 time the scores are computed at (UTC if no offset); "
        "default: the run's start.",
    )
    chunk_size: int = Field(default=100_000, gt=0, description="Contacts scored per chunk.")


@dg.asset(
    deps=["contacts", "platform_validations", "ladas_reference"],
    group_name="scoring",
    kinds={"pandas", "sql"},
    owners=["team:data"],
    tags={"calculation_method": DEFAULT_CONFIG.calculation_method},
)
def lead_scores(
    context: dg.AssetExecutionContext, config: LeadScoresConfig, database: DatabaseResource
) -> dg.MaterializeResult:
    """One advanced_v1 score per contact (SCORING_SPEC.md), written aside and swapped in, so a
    failed run leaves the previous scores intact. Malformed validation rows are kept in
    ``malformed_validations`` with their reason."""
    as_of = config.as_of or run_start(context)
    with retry_on_transient_database_errors(context):
        with database.open() as db:
            context.log.info(f"full rescoring at as_of={as_of} on {redact(str(db.url))}")
            report = rescore_all(db, as_of, chunk_size=config.chunk_size,
                                 run_id=context.run_id)
    if report.malformed_by_reason:
        context.log.warning(
            f"{sum(report.malformed_by_reason.values())} malformed validation rows kept in "
            f"malformed_validations: {dict(report.malformed_by_reason)}"
        )
    return dg.MaterializeResult(
        metadata={
            "dagster/row_count": report.contacts_scored,
            "as_of": report.as_of.isoformat(),
            "calculation_version": DEFAULT_CONFIG.calculation_version,
            "mean_score": round(report.mean_score, 3),
            "tier_counts": dg.MetadataValue.json(
                {tier: report.tier_counts.get(tier, 0) for tier, _ in DEFAULT_CONFIG.tiers}
            ),
            "malformed_rows_by_reason": dg.MetadataValue.json(dict(report.malformed_by_reason)),
            "last_platform_validation_updates": report.last_validation_updates,
            "score_changes_recorded": report.history_rows,
            "seconds_read": round(report.seconds_read, 2),
            "seconds_score": round(report.seconds_score, 2),
            "seconds_write": round(report.seconds_write, 2),
            "duration_seconds": round(report.seconds_total, 2),
        }
    )
