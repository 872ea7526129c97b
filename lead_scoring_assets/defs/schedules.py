"""``daily_full_rescore_schedule`` rescores everyone daily (recency and age change daily);
``nightly_retrain_schedule`` retrains the models and rescores with the champion.

Hours and time zone are read when the definitions load: ``LEAD_SCORING_FULL_RESCORE_HOUR``
(3), ``LEAD_SCORING_RETRAIN_HOUR`` (2) and ``LEAD_SCORING_TIMEZONE`` (America/Mexico_City).
"""

import datetime
import os

import dagster as dg

from lead_scoring_assets.defs.jobs import full_rescore_job, nightly_retrain_job


def build_daily_full_rescore_schedule(
    hour: int = 3, timezone: str = "America/Mexico_City"
) -> dg.ScheduleDefinition:
    @dg.schedule(
        job=full_rescore_job,
        cron_schedule=f"0 {hour} * * *",
        execution_timezone=timezone,
        default_status=dg.DefaultScheduleStatus.RUNNING,
        description=f"Full rescoring every day at {hour:02d}:00 {timezone}, as of that time.",
    )
    def daily_full_rescore_schedule(context: dg.ScheduleEvaluationContext) -> dg.RunRequest:
        as_of = context.scheduled_execution_time.astimezone(datetime.UTC).isoformat()
        return dg.RunRequest(
            run_config={"ops": {"staged_lead_scores": {"config": {"as_of": as_of}}}})

    return daily_full_rescore_schedule


def build_nightly_retrain_schedule(
    hour: int = 2, timezone: str = "America/Mexico_City"
) -> dg.ScheduleDefinition:
    @dg.schedule(
        job=nightly_retrain_job,
        cron_schedule=f"0 {hour} * * *",
        execution_timezone=timezone,
        default_status=dg.DefaultScheduleStatus.RUNNING,
        description=f"Retrain and rescore with the champion every day at {hour:02d}:00 "
        f"{timezone}, on features as of the current lead_scores.",
    )
    def nightly_retrain_schedule(context: dg.ScheduleEvaluationContext) -> dg.RunRequest:
        return dg.RunRequest(tags={"lead_scoring/scheduled_for":
                                   context.scheduled_execution_time.isoformat()})

    return nightly_retrain_schedule


def schedules_from_environment() -> list[dg.ScheduleDefinition]:
    timezone = os.environ.get("LEAD_SCORING_TIMEZONE", "America/Mexico_City")
    return [
        build_daily_full_rescore_schedule(
            hour=int(os.environ.get("LEAD_SCORING_FULL_RESCORE_HOUR", "3")), timezone=timezone),
        build_nightly_retrain_schedule(
            hour=int(os.environ.get("LEAD_SCORING_RETRAIN_HOUR", "2")), timezone=timezone),
    ]


@dg.definitions
def schedules() -> dg.Definitions:
    return dg.Definitions(schedules=schedules_from_environment())
