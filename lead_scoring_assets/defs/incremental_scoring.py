"""``incremental_scoring_job``: score the contacts waiting in ``scoring_queue``."""

import dagster as dg
from pydantic import Field

from lead_scoring_assets.defs.lock_holders import dagster_run_liveness
from lead_scoring_assets.defs.resources import DatabaseResource
from lead_scoring_assets.defs.retries import retry_on_transient_database_errors
from lead_scoring_assets.defs.run_start import run_start
from lead_scoring_assets.scoring.incremental import score_queued

DEFAULT_BATCH_SIZE = 50_000


class IncrementalScoringConfig(dg.Config):
    batch_size: int = Field(default=DEFAULT_BATCH_SIZE, gt=0, description="Contacts per run.")
    lease_seconds: int = Field(
        default=300, gt=0, description="After this, a crashed run's entries are claimable again."
    )
    as_of: str | None = Field(default=None, description="ISO-8601; default: the run's start.")


@dg.op
def score_queued_contacts(
    context: dg.OpExecutionContext, config: IncrementalScoringConfig, database: DatabaseResource
) -> None:
    """Claim a batch of the queue, score it with the advanced_v1 engine, upsert the scores.
    The scoring lock of a run that has ended (or is gone from the instance) is broken first."""
    as_of = config.as_of or run_start(context)
    with retry_on_transient_database_errors(context), database.open() as db:
        report = score_queued(
            db,
            as_of,
            owner=context.run_id,
            batch_size=config.batch_size,
            lease_seconds=config.lease_seconds,
            is_holder_alive=dagster_run_liveness(context.instance, context.log),
        )
    if report.skipped_reason:
        context.log.info(f"nothing scored: {report.skipped_reason}")
        return
    if report.batch_error:
        context.log.warning(
            f"the batch failed as a whole, scored contact by contact: {report.batch_error}"
        )
    skipped = report.skipped_lost_lease + report.skipped_newer_score
    if skipped:
        context.log.warning(
            f"{skipped} contacts left for a later run: {report.skipped_lost_lease} whose lease "
            f"this run lost, {report.skipped_newer_score} with a score of a later as_of stored"
        )
    if report.failed:
        context.log.warning(
            f"{len(report.failed)} contacts failed ({report.dead_lettered} moved to "
            f"scoring_dead_letters); first: {next(iter(report.failed.values()))}"
        )
    context.log_event(
        dg.AssetMaterialization(
            "lead_scores",
            metadata={
                "mode": "incremental",
                "as_of": report.as_of.isoformat(),
                "claimed": report.claimed,
                "scored": report.scored,
                "queue_entries_removed": report.removed,
                "skipped_lost_lease": report.skipped_lost_lease,
                "skipped_newer_score": report.skipped_newer_score,
                "validation_rows_after_as_of": report.rows_after_as_of,
                "score_changes_recorded": report.history_rows,
                "failed": len(report.failed),
                "batch_error": report.batch_error or "",
                "dead_lettered": report.dead_lettered,
                "broken_locks_of": dg.MetadataValue.json(report.broken_locks_of),
                "duration_seconds": round(report.seconds_total, 3),
            },
        )
    )


@dg.job(
    description="Score the contacts of scoring_queue (launched by scoring_queue_sensor); "
    "skips while a full rescoring holds the scoring lock.",
    tags={"lead_scoring/writes": "incremental"},
)
def incremental_scoring_job() -> None:
    score_queued_contacts()
