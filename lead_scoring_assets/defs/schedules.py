"""``daily_full_rescore_schedule``: rescore everyone daily (recency and age change daily).

The hour and time zone are read when the definitions load: ``LEAD_SCORING_FULL_RESCORE_HOUR``
(3) and ``LEAD_SCORING_TIMEZONE`` (America/Mexico_City).
"""

import datetime
import os

import dagster as dg

from lead_scoring_assets.defs.jobs import full_rescore_job


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
        return dg.RunRequest(run_config={"ops": {"lead_scores": {"config": {"as_of": as_of}}}})

    return daily_full_rescore_schedule


@dg.definitions
def schedules() -> dg.Definitions:
    return dg.Definitions(schedules=[build_daily_full_rescore_schedule(
        hour=int(os.environ.get("LEAD_SCORING_FULL_RESCORE_HOUR", "3")),
        timezone=os.environ.get("LEAD_SCORING_TIMEZONE", "America/Mexico_City"),
    )])
