"""``scoring_queue_sensor``: launch incremental scoring when contacts wait in the queue.

Run keys are unique per tick (never derived from the cursor, which a user may reset: a key
that collides with an earlier run is skipped by Dagster, and scoring would silently stop).

When the claimable backlog exceeds a share of all contacts, one full rescoring is cheaper than
the hundreds of incremental runs it would take: the sensor then requests one
``full_rescore_job`` run instead (never while a full rescoring, the nightly run that includes
one, or a run of the asset graph selecting ``lead_scores``, such as a bucket backfill, is
queued or running), and says so in the tick.

Interval, batch size, how many runs may be in flight and the share are read when the
definitions load: ``LEAD_SCORING_QUEUE_INTERVAL_SECONDS`` (30),
``LEAD_SCORING_QUEUE_BATCH_SIZE`` (50000), ``LEAD_SCORING_QUEUE_MAX_RUNS`` (2),
``LEAD_SCORING_QUEUE_FULL_RESCORE_PERCENT`` (5).

``sms_replies_sensor``: one ``opt_out_replies_job`` run while unprocessed SMS replies wait
(``processed_at`` marks the work, so no cursor) and no run of that job is in flight, so a
failed run is followed by a new one at the next tick; every
``LEAD_SCORING_REPLIES_INTERVAL_SECONDS`` (30).
"""

import math
import os
import uuid

import dagster as dg

from lead_scoring_assets.consent.replies import waiting
from lead_scoring_assets.db.scoring_queue import ScoringQueue
from lead_scoring_assets.defs.incremental_scoring import (
    DEFAULT_BATCH_SIZE,
    IncrementalScoringConfig,
    incremental_scoring_job,
)
from lead_scoring_assets.defs.jobs import (
    full_rescore_job,
    nightly_retrain_job,
    opt_out_replies_job,
)
from lead_scoring_assets.defs.resources import DatabaseResource

IN_FLIGHT = [
    dg.DagsterRunStatus.QUEUED,
    dg.DagsterRunStatus.NOT_STARTED,
    dg.DagsterRunStatus.STARTING,
    dg.DagsterRunStatus.STARTED,
]
FULL_RESCORE_PERCENT_ENV = "LEAD_SCORING_QUEUE_FULL_RESCORE_PERCENT"
REPLIES_INTERVAL_ENV = "LEAD_SCORING_REPLIES_INTERVAL_SECONDS"
FULL_RESCORING_JOBS = (full_rescore_job.name, nightly_retrain_job.name)
SCORES_KEY = dg.AssetKey("lead_scores")


def full_rescore_percent_from_environment() -> float:
    """``LEAD_SCORING_QUEUE_FULL_RESCORE_PERCENT`` (default 5), more than 0 (above 100: never,
    unless the queue holds more entries than there are contacts)."""
    raw = os.environ.get(FULL_RESCORE_PERCENT_ENV, "5")
    try:
        percent = float(raw)
    except ValueError:
        percent = math.nan
    if not percent > 0:
        raise ValueError(
            f"{FULL_RESCORE_PERCENT_ENV} must be a percentage of the contacts, "
            f"more than 0 (got {raw!r})"
        )
    return percent


def _in_flight(context: dg.SensorEvaluationContext, job_names) -> list[str]:
    return [
        run_id
        for name in job_names
        for run_id in context.instance.get_run_ids(dg.RunsFilter(job_name=name, statuses=IN_FLIGHT))
    ]


def _full_rescorings_in_flight(context: dg.SensorEvaluationContext) -> list[str]:
    """Queued or running runs that rescore contact buckets: the two jobs, and runs of the asset
    graph selecting ``lead_scores`` (a bucket backfill, a materialisation from the UI)."""
    runs = context.instance.get_runs(dg.RunsFilter(statuses=IN_FLIGHT))
    return [
        run.run_id
        for run in runs
        if run.job_name in FULL_RESCORING_JOBS or SCORES_KEY in (run.asset_selection or ())
    ]


def build_scoring_queue_sensor(
    interval_seconds: int = 30,
    batch_size: int = DEFAULT_BATCH_SIZE,
    max_runs: int = 2,
    full_rescore_percent: float = 5.0,
) -> dg.SensorDefinition:
    @dg.sensor(
        jobs=[incremental_scoring_job, full_rescore_job],
        minimum_interval_seconds=interval_seconds,
        default_status=dg.DefaultSensorStatus.RUNNING,
        description=f"Every {interval_seconds}s: one incremental_scoring_job run per "
        f"{batch_size} claimable queue entries, at most {max_runs} in flight; one "
        f"full_rescore_job run instead when more than {full_rescore_percent:g}% of the "
        "contacts wait.",
    )
    def scoring_queue_sensor(context: dg.SensorEvaluationContext, database: DatabaseResource):
        with database.open() as db:
            depth = ScoringQueue(db).depth()
            if depth.claimable == 0:
                return dg.SkipReason(
                    f"queue empty ({depth.leased} leased, {depth.dead_letters} dead letters)"
                )
            contacts = db.estimated_count("contacts")
        tick = uuid.uuid4().hex[:16]
        if depth.claimable > contacts * full_rescore_percent / 100:
            backlog = (
                f"{depth.claimable} contacts waiting, more than {full_rescore_percent:g}% "
                f"of {contacts} contacts"
            )
            running = _full_rescorings_in_flight(context)
            if running:
                return dg.SkipReason(
                    f"{backlog}: a full rescoring is already queued or "
                    f"running (run {running[0]}); it settles them"
                )
            context.log.info(
                f"{backlog}: requesting one full rescoring instead of "
                f"{math.ceil(depth.claimable / batch_size)} incremental runs"
            )
            return [
                dg.RunRequest(
                    run_key=f"scoring-queue-full-{tick}",
                    job_name=full_rescore_job.name,
                    tags={
                        "lead_scoring/queue_claimable": str(depth.claimable),
                        "lead_scoring/requested_because": backlog,
                    },
                )
            ]
        in_flight = len(_in_flight(context, [incremental_scoring_job.name]))
        runs = min(max_runs - in_flight, math.ceil(depth.claimable / batch_size))
        if runs <= 0:
            return dg.SkipReason(f"{depth.claimable} waiting, {in_flight} runs already in flight")
        return [
            dg.RunRequest(
                run_key=f"scoring-queue-{tick}-{i + 1}",
                job_name=incremental_scoring_job.name,
                run_config=dg.RunConfig(
                    {"score_queued_contacts": IncrementalScoringConfig(batch_size=batch_size)}
                ),
                tags={"lead_scoring/queue_claimable": str(depth.claimable)},
            )
            for i in range(runs)
        ]

    return scoring_queue_sensor


def build_sms_replies_sensor(interval_seconds: int = 30) -> dg.SensorDefinition:
    @dg.sensor(
        job=opt_out_replies_job,
        minimum_interval_seconds=interval_seconds,
        default_status=dg.DefaultSensorStatus.RUNNING,
        description=f"Every {interval_seconds}s: one opt_out_replies_job run while SMS replies "
        "wait unprocessed (an opt-out becomes a suppression within one interval).",
    )
    def sms_replies_sensor(context: dg.SensorEvaluationContext, database: DatabaseResource):
        with database.open() as db:
            count, newest = waiting(db)
        if not count:
            return dg.SkipReason("no unprocessed replies")
        running = _in_flight(context, [opt_out_replies_job.name])
        if running:
            return dg.SkipReason(f"{count} replies waiting: run {running[0]} is applying them")
        return dg.RunRequest(
            run_key=f"sms-replies-{newest}-{uuid.uuid4().hex[:16]}",
            tags={"lead_scoring/replies_waiting": str(count)},
        )

    return sms_replies_sensor


@dg.definitions
def sensors() -> dg.Definitions:
    return dg.Definitions(
        sensors=[
            build_scoring_queue_sensor(
                interval_seconds=int(os.environ.get("LEAD_SCORING_QUEUE_INTERVAL_SECONDS", "30")),
                batch_size=int(
                    os.environ.get("LEAD_SCORING_QUEUE_BATCH_SIZE", str(DEFAULT_BATCH_SIZE))
                ),
                max_runs=int(os.environ.get("LEAD_SCORING_QUEUE_MAX_RUNS", "2")),
                full_rescore_percent=full_rescore_percent_from_environment(),
            ),
            build_sms_replies_sensor(int(os.environ.get(REPLIES_INTERVAL_ENV, "30"))),
        ]
    )
