"""``lead_score_history``: the retention of the score-change history, applied by the nightly
job after the publish of ``lead_scores`` (which writes the history rows)."""

import dagster as dg
from pydantic import Field

from lead_scoring_assets.db.score_history import (
    RETENTION_MONTHS_ENV,
    apply_retention,
    retention_months_from_environment,
)
from lead_scoring_assets.defs.resources import DatabaseResource
from lead_scoring_assets.defs.retries import retry_on_transient_database_errors
from lead_scoring_assets.defs.run_start import run_start


class ScoreHistoryConfig(dg.Config):
    retention_months: int | None = Field(
        default=None,
        ge=1,
        description=f"Months of history kept; default: {RETENTION_MONTHS_ENV} (13).",
    )
    as_of: str | None = Field(
        default=None,
        description="ISO-8601 time retention counts back from; default: the run's start.",
    )


@dg.asset(
    deps=["lead_scores"],
    group_name="scoring",
    kinds={"sql"},
    owners=["team:data"],
)
def lead_score_history(
    context: dg.AssetExecutionContext, config: ScoreHistoryConfig, database: DatabaseResource
) -> dg.MaterializeResult:
    """One row per change of a contact's total score or tier, kept for
    ``LEAD_SCORING_HISTORY_RETENTION_MONTHS`` (13) whole months: PostgreSQL drops the older
    monthly partitions and creates this month's and the next's; SQLite deletes the rows."""
    months = config.retention_months or retention_months_from_environment()
    with retry_on_transient_database_errors(context), database.open() as db:
        report = apply_retention(db, months, config.as_of or run_start(context))
    if report.rows_by_month:
        context.log.info(
            f"history retention dropped {report.rows_dropped} rows of "
            f"{', '.join(report.rows_by_month)}"
        )
    return dg.MaterializeResult(
        metadata={
            "retention_months": months,
            "kept_from": report.kept_from.isoformat(),
            "rows_dropped": report.rows_dropped,
            "rows_dropped_by_month": dg.MetadataValue.json(report.rows_by_month),
            "partitions_created": dg.MetadataValue.json(report.partitions_created),
        }
    )
