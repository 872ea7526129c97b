"""Write, audit, publish of ``lead_scores``: ``staged_lead_scores`` scores every contact of the
run's contact buckets (its partitions) into staging tables, the blocking check
``staged_lead_scores_pass_audit`` reads them, and only then ``lead_scores`` swaps them in,
bucket by bucket."""

import dagster as dg
from pydantic import Field

from lead_scoring_assets.db.buckets import buckets_of
from lead_scoring_assets.db.database import redact
from lead_scoring_assets.defs.lock_holders import dagster_run_liveness
from lead_scoring_assets.defs.partitions import bucket_backfill_policy, contact_buckets
from lead_scoring_assets.defs.resources import DatabaseResource
from lead_scoring_assets.defs.retries import MAX_RETRIES, retry_on_transient_database_errors
from lead_scoring_assets.defs.run_start import run_start
from lead_scoring_assets.scoring.config import DEFAULT_CONFIG
from lead_scoring_assets.scoring.full_rescore import publish_rescore, stage_rescore


class LeadScoresConfig(dg.Config):
    as_of: str | None = Field(
        default=None,
        description="ISO-8601 time the scores are computed at (UTC if no offset); "
        "default: the run's start. Validation rows dated later take no part.",
    )
    chunk_size: int = Field(default=100_000, gt=0, description="Contacts scored per chunk.")


@dg.asset(
    deps=["contacts", "platform_validations", "ladas_reference"],
    group_name="scoring",
    kinds={"pandas", "sql"},
    owners=["team:data"],
    pool="lead_scoring_postgres",
    tags={"calculation_method": DEFAULT_CONFIG.calculation_method},
    partitions_def=contact_buckets,
    backfill_policy=bucket_backfill_policy(),
)
def staged_lead_scores(
    context: dg.AssetExecutionContext, config: LeadScoresConfig, database: DatabaseResource
) -> dg.MaterializeResult:
    """One advanced_v1 score per contact of the run's buckets (SCORING_SPEC.md), written to
    staging tables under those buckets' scoring lock (incremental runs wait; the lock of a run
    that has ended is broken first); nothing live changes until the audit passes and
    ``lead_scores`` publishes them."""
    as_of = config.as_of or run_start(context)
    buckets = buckets_of(context.partition_keys)
    with retry_on_transient_database_errors(context), database.open() as db:
        context.log.info(
            f"full rescoring of buckets {context.partition_key_range.start}"
            f"-{context.partition_key_range.end} at as_of={as_of} on "
            f"{redact(str(db.url))}"
        )
        report = stage_rescore(
            db,
            as_of,
            chunk_size=config.chunk_size,
            run_id=context.run_id,
            buckets=buckets,
            is_holder_alive=dagster_run_liveness(context.instance, context.log),
        )
    if report.malformed_by_reason:
        context.log.warning(
            f"{sum(report.malformed_by_reason.values())} malformed validation rows found "
            f"(kept in malformed_validations when published): {dict(report.malformed_by_reason)}"
        )
    return dg.MaterializeResult(
        metadata={
            "dagster/row_count": report.contacts_scored,
            "buckets": len(report.buckets),
            "as_of": report.as_of.isoformat(),
            "calculation_version": DEFAULT_CONFIG.calculation_version,
            "mean_score": round(report.mean_score, 3),
            "tier_counts": dg.MetadataValue.json(
                {tier: report.tier_counts.get(tier, 0) for tier, _ in DEFAULT_CONFIG.tiers}
            ),
            "malformed_rows_by_reason": dg.MetadataValue.json(dict(report.malformed_by_reason)),
            "validation_rows_after_as_of": report.rows_after_as_of,
            "contacts_due_later": report.contacts_due_later,
            "last_platform_validation_updates": report.last_validation_updates,
            "seconds_read": round(report.seconds_read, 2),
            "seconds_score": round(report.seconds_score, 2),
            "seconds_write": round(report.seconds_write, 2),
            "duration_seconds": round(report.seconds_total, 2),
        }
    )


@dg.asset(
    deps=["staged_lead_scores"],
    group_name="scoring",
    kinds={"sql"},
    owners=["team:data"],
    pool="lead_scoring_postgres",
    tags={"calculation_method": DEFAULT_CONFIG.calculation_method},
    partitions_def=contact_buckets,
    backfill_policy=bucket_backfill_policy(),
)
def lead_scores(
    context: dg.AssetExecutionContext, database: DatabaseResource
) -> dg.MaterializeResult:
    """The published scores: each bucket of this run's audited staged scores, with its
    malformed rows, history rows, ``last_platform_validation`` updates and queue settlement,
    swapped in in one transaction of its own, only if the run still holds that bucket's
    scoring lock. A stored score computed at a later ``as_of`` than the run's is kept
    (``kept_newer_scores``); contacts with rows dated after it stay queued
    (``queued_due_later``). A failed publish discards the buckets not yet published and
    releases their lock (after the last retry, for a transient error); a retry publishes the
    rest."""
    with retry_on_transient_database_errors(context), database.open() as db:
        swap = publish_rescore(
            db, context.run_id, retry_follows=context.retry_number + 1 < MAX_RETRIES
        )
        contacts = db.count("lead_scores")
    return dg.MaterializeResult(
        metadata={
            "dagster/row_count": contacts,
            "buckets_published": len(swap.published_buckets),
            "as_of": swap.as_of.isoformat() if swap.as_of is not None else "",
            "score_changes_recorded": swap.history_rows,
            "kept_newer_scores": swap.kept_newer_scores,
            "queued_due_later": swap.queued_due_later,
            "swap_seconds": round(swap.seconds, 2),
            "locked_seconds": round(swap.seconds_locked, 2),
            "reader_wait_seconds": round(swap.seconds_waited, 2),
        }
    )
