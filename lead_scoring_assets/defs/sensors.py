"""``scoring_queue_sensor``: launch incremental scoring when contacts wait in the queue.

Run keys are unique per tick (never derived from the cursor, which a user may reset: a key
that collides with an earlier run is skipped by Dagster, and scoring would silently stop).

Interval, batch size and how many runs may be in flight are read when the definitions load:
``LEAD_SCORING_QUEUE_INTERVAL_SECONDS`` (30), ``LEAD_SCORING_QUEUE_BATCH_SIZE`` (50000),
``LEAD_SCORING_QUEUE_MAX_RUNS`` (2).
"""

import math
import os
import uuid

import dagster as dg

from lead_scoring_assets.db.scoring_queue import ScoringQueue
from lead_scoring_assets.defs.incremental_scoring import (
    DEFAULT_BATCH_SIZE,
    IncrementalScoringConfig,
    incremental_scoring_job,
)
from lead_scoring_assets.defs.resources import DatabaseResource

IN_FLIGHT = [dg.DagsterRunStatus.QUEUED, dg.DagsterRunStatus.NOT_STARTED,
             dg.DagsterRunStatus.STARTING, dg.DagsterRunStatus.STARTED]


def build_scoring_queue_sensor(
    interval_seconds: int = 30, batch_size: int = DEFAULT_BATCH_SIZE, max_runs: int = 2
) -> dg.SensorDefinition:
    @dg.sensor(
        job=incremental_scoring_job,
        minimum_interval_seconds=interval_seconds,
        default_status=dg.DefaultSensorStatus.RUNNING,
        description=f"Every {interval_seconds}s: one incremental_scoring_job run per "
        f"{batch_size} claimable queue entries, at most {max_runs} in flight.",
    )
    def scoring_queue_sensor(context: dg.SensorEvaluationContext, database: DatabaseResource):
        with database.open() as db:
            depth = ScoringQueue(db).depth()
        if depth.claimable == 0:
            return dg.SkipReason(
                f"queue empty ({depth.leased} leased, {depth.dead_letters} dead letters)"
            )
        in_flight = len(context.instance.get_run_ids(
            dg.RunsFilter(job_name=incremental_scoring_job.name, statuses=IN_FLIGHT)))
        runs = min(max_runs - in_flight, math.ceil(depth.claimable / batch_size))
        if runs <= 0:
            return dg.SkipReason(f"{depth.claimable} waiting, {in_flight} runs already in flight")
        tick = uuid.uuid4().hex[:16]
        return [
            dg.RunRequest(
                run_key=f"scoring-queue-{tick}-{i + 1}",
                run_config=dg.RunConfig(
                    {"score_queued_contacts": IncrementalScoringConfig(batch_size=batch_size)}
                ),
                tags={"lead_scoring/queue_claimable": str(depth.claimable)},
            )
            for i in range(runs)
        ]

    return scoring_queue_sensor


@dg.definitions
def sensors() -> dg.Definitions:
    return dg.Definitions(sensors=[build_scoring_queue_sensor(
        interval_seconds=int(os.environ.get("LEAD_SCORING_QUEUE_INTERVAL_SECONDS", "30")),
        batch_size=int(os.environ.get("LEAD_SCORING_QUEUE_BATCH_SIZE", str(DEFAULT_BATCH_SIZE))),
        max_runs=int(os.environ.get("LEAD_SCORING_QUEUE_MAX_RUNS", "2")),
    )])
