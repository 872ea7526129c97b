"""``nightly_retrain_schedule``: every night, the full rescoring (recency and account age change
daily) and, in the same run on the scores it published, the retraining and the ML scores.

Hour and time zone are read when the definitions load: ``LEAD_SCORING_NIGHTLY_HOUR`` (3) and
``LEAD_SCORING_TIMEZONE`` (America/Mexico_City).
"""

import datetime
import os

import dagster as dg

from lead_scoring_assets.defs.jobs import nightly_retrain_job

RETIRED_VARIABLES = ("LEAD_SCORING_FULL_RESCORE_HOUR", "LEAD_SCORING_RETRAIN_HOUR")
"""The hours of the two former schedules (rescoring at 03:00, retraining at 02:00 on the
previous night's scores), now one run."""


def build_nightly_retrain_schedule(
    hour: int = 3, timezone: str = "America/Mexico_City"
) -> dg.ScheduleDefinition:
    @dg.schedule(
        job=nightly_retrain_job,
        cron_schedule=f"0 {hour} * * *",
        execution_timezone=timezone,
        default_status=dg.DefaultScheduleStatus.RUNNING,
        description=f"Every day at {hour:02d}:00 {timezone}: the full rescoring as of that "
        "time, then the retraining and the ML scores on the scores it published.",
    )
    def nightly_retrain_schedule(context: dg.ScheduleEvaluationContext) -> dg.RunRequest:
        as_of = context.scheduled_execution_time.astimezone(datetime.UTC).isoformat()
        return dg.RunRequest(
            run_config={"ops": {"staged_lead_scores": {"config": {"as_of": as_of}}}},
            tags={"lead_scoring/scheduled_for": context.scheduled_execution_time.isoformat()},
        )

    return nightly_retrain_schedule


def schedules_from_environment() -> list[dg.ScheduleDefinition]:
    retired = [name for name in RETIRED_VARIABLES if name in os.environ]
    if retired:
        raise ValueError(
            f"{', '.join(retired)} no longer apply: the full rescoring and the retraining are "
            "one nightly run; set LEAD_SCORING_NIGHTLY_HOUR instead"
        )
    return [
        build_nightly_retrain_schedule(
            hour=int(os.environ.get("LEAD_SCORING_NIGHTLY_HOUR", "3")),
            timezone=os.environ.get("LEAD_SCORING_TIMEZONE", "America/Mexico_City"),
        )
    ]


@dg.definitions
def schedules() -> dg.Definitions:
    return dg.Definitions(schedules=schedules_from_environment())
