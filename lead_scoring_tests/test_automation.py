"""The sensor and the schedule, evaluated against a real Dagster instance."""

from datetime import datetime
from zoneinfo import ZoneInfo

import dagster as dg
import pandas as pd
import pytest
import sqlalchemy as sa

from lead_scoring_assets.db.database import Database
from lead_scoring_assets.defs.incremental_scoring import incremental_scoring_job
from lead_scoring_assets.defs.resources import DatabaseResource
from lead_scoring_assets.defs.schedules import (
    build_nightly_retrain_schedule,
    schedules_from_environment,
)
from lead_scoring_assets.defs.sensors import (
    FULL_RESCORE_PERCENT_ENV,
    build_scoring_queue_sensor,
    full_rescore_percent_from_environment,
)
from lead_scoring_assets.scoring.full_rescore import rescore_all

from .conftest import AS_OF

INCREMENTAL_ONLY = 1_000.0
"""A share no backlog reaches (the freshly loaded queue holds every contact): only
incremental runs."""


def _tick(sensor, instance, database_url, cursor=None):
    with dg.build_sensor_context(
        instance=instance,
        cursor=cursor,
        resources={"database": DatabaseResource(url=database_url)},
    ) as context:
        return sensor(context), context.cursor


def _insert_validation(database: Database, contact_id: int, validation_id: int) -> None:
    with database.engine.begin() as connection:
        connection.execute(
            sa.text(
                "INSERT INTO platform_validations (id, contact_id, platform, is_valid, "
                "is_business, is_premium, confidence_score, validated_at) VALUES "
                "(:id, :contact, 'apple', :yes, :no, :no, 1.0, :at)"
            ),
            {
                "id": validation_id,
                "contact": contact_id,
                "yes": True,
                "no": False,
                "at": database.bind_timestamp(AS_OF),
            },
        )


def _analyze_contacts(database: Database) -> None:
    """Current statistics for the sensor's count of contacts (PostgreSQL)."""
    if database.dialect == "postgresql":
        with database.engine.begin() as connection:
            connection.execute(sa.text("ANALYZE contacts"))


def test_definitions_schedule_sensor_and_jobs(definitions):
    sensor = definitions.resolve_sensor_def("scoring_queue_sensor")
    assert sensor.default_status == dg.DefaultSensorStatus.RUNNING
    assert sensor.minimum_interval_seconds == 30
    assert definitions.resolve_job_def("incremental_scoring_job") is not None
    assert definitions.resolve_job_def("full_rescore_job") is not None
    [schedule] = definitions.schedules
    assert (
        schedule.name,
        schedule.cron_schedule,
        schedule.execution_timezone,
        schedule.job_name,
    ) == ("nightly_retrain_schedule", "0 3 * * *", "America/Mexico_City", "nightly_retrain_job")
    assert schedule.default_status == dg.DefaultScheduleStatus.RUNNING
    job = definitions.resolve_job_def("nightly_retrain_job")
    assert {key.to_user_string() for key in job.asset_layer.executable_asset_keys} >= {
        "ladas_reference",
        "lead_scores",
        "lead_scoring_analytics",
        "contact_features",
        "lead_scoring_model",
        "ml_lead_scores",
        "conversion_model",
        "uplift_model",
        "uplift_scores",
    }


def test_schedule_hour_and_time_zone_are_configurable(monkeypatch):
    monkeypatch.setenv("LEAD_SCORING_NIGHTLY_HOUR", "1")
    monkeypatch.setenv("LEAD_SCORING_TIMEZONE", "America/Tijuana")
    [nightly] = schedules_from_environment()
    assert (nightly.name, nightly.cron_schedule, nightly.execution_timezone) == (
        "nightly_retrain_schedule",
        "0 1 * * *",
        "America/Tijuana",
    )


@pytest.mark.parametrize("retired", ["LEAD_SCORING_FULL_RESCORE_HOUR", "LEAD_SCORING_RETRAIN_HOUR"])
def test_the_retired_hour_variables_fail_clearly(monkeypatch, retired):
    monkeypatch.setenv(retired, "2")
    with pytest.raises(
        ValueError, match=f"{retired} no longer apply: .* set LEAD_SCORING_NIGHTLY_HOUR instead"
    ):
        schedules_from_environment()


def test_nightly_schedule_rescores_as_of_its_scheduled_time():
    schedule = build_nightly_retrain_schedule(hour=4, timezone="America/Mexico_City")
    scheduled = datetime(2026, 11, 25, 4, 0, tzinfo=ZoneInfo("America/Mexico_City"))
    with (
        dg.instance_for_test() as instance,
        dg.build_schedule_context(instance=instance, scheduled_execution_time=scheduled) as context,
    ):
        [request] = schedule.evaluate_tick(context).run_requests
    assert schedule.job_name == "nightly_retrain_job"
    assert request.run_config["ops"]["staged_lead_scores"]["config"]["as_of"] == (
        "2026-11-25T10:00:00+00:00"
    )
    assert request.tags["lead_scoring/scheduled_for"] == "2026-11-25T04:00:00-06:00"


def test_sensor_skips_an_empty_queue_and_requests_runs_with_keys(demo_database, database_url):
    sensor = build_scoring_queue_sensor(
        interval_seconds=30, batch_size=1_000, max_runs=2, full_rescore_percent=INCREMENTAL_ONLY
    )
    with dg.instance_for_test() as instance:
        result, cursor = _tick(sensor, instance, database_url)
        requests = list(result)
        assert len(requests) == 2
        assert len({r.run_key for r in requests}) == 2
        assert all(r.run_key.startswith("scoring-queue-") for r in requests)
        assert (
            requests[0].run_config["ops"]["score_queued_contacts"]["config"]["batch_size"] == 1_000
        )
        rescore_all(demo_database, AS_OF)
        result, _ = _tick(sensor, instance, database_url, cursor=cursor)
        assert isinstance(result, dg.SkipReason) and "queue empty" in result.skip_message


def test_insert_then_sensor_tick_then_run_updates_the_score(demo_database, database_url):
    rescore_all(demo_database, AS_OF)
    contact_id = int(
        demo_database.read_frame(
            "SELECT contact_id FROM lead_scores WHERE apple_score = 0 ORDER BY contact_id LIMIT 1"
        )["contact_id"][0]
    )
    _insert_validation(demo_database, contact_id, 10**8)
    sensor = build_scoring_queue_sensor()
    with dg.instance_for_test() as instance:
        result, _ = _tick(sensor, instance, database_url)
        (request,) = list(result)
        run = incremental_scoring_job.execute_in_process(
            run_config=request.run_config,
            instance=instance,
            tags=request.tags,
            resources={"database": DatabaseResource(url=database_url)},
        )
        assert run.success
        event = run.asset_materializations_for_node("score_queued_contacts")[0]
        assert event.metadata["mode"].value == "incremental"
        assert event.metadata["scored"].value == 1
    row = demo_database.read_frame(
        "SELECT apple_score, last_calculated_at FROM lead_scores WHERE contact_id = :id",
        {"id": contact_id},
    )
    assert row["apple_score"][0] > 0
    assert pd.to_datetime(row["last_calculated_at"][0], utc=True) > AS_OF
    assert demo_database.count("scoring_queue") == 0


def test_run_keys_never_collide_after_the_cursor_is_reset(demo_database, database_url):
    """Keys of runs already launched are skipped by Dagster: after a cursor reset in the UI the
    sensor must still request runs with new keys."""
    sensor = build_scoring_queue_sensor(
        interval_seconds=30, batch_size=1_000, max_runs=2, full_rescore_percent=INCREMENTAL_ONLY
    )
    with dg.instance_for_test() as instance:
        result, _ = _tick(sensor, instance, database_url)
        launched = set()
        for request in result:
            run = incremental_scoring_job.execute_in_process(
                run_config=request.run_config,
                instance=instance,
                tags={**request.tags, "dagster/run_key": request.run_key},
                resources={"database": DatabaseResource(url=database_url)},
            )
            launched.add(instance.get_run_by_id(run.run_id).tags["dagster/run_key"])
        assert len(launched) == 2 and demo_database.count("scoring_queue") > 0
        for reset in (None, ""):
            again, _ = _tick(sensor, instance, database_url, cursor=reset)
            keys = {request.run_key for request in again}
            assert keys and not keys & launched


@pytest.mark.parametrize("full_job", ["full_rescore_job", "nightly_retrain_job"])
def test_a_backlog_over_the_share_requests_one_full_rescoring_instead(
    demo_database, database_url, definitions, full_job
):
    """The freshly loaded queue holds every contact: one full rescoring, not 30 incremental
    runs; none more while it (or the nightly run) is running; once it ran, the queue is
    empty."""
    sensor = build_scoring_queue_sensor(batch_size=100, max_runs=2)
    contacts = demo_database.count("contacts")
    _analyze_contacts(demo_database)
    with dg.instance_for_test() as instance:
        result, _ = _tick(sensor, instance, database_url)
        (request,) = list(result)
        assert request.job_name == "full_rescore_job"
        assert request.run_key.startswith("scoring-queue-full-")
        claimable = int(request.tags["lead_scoring/queue_claimable"])
        assert claimable >= contacts
        assert request.tags["lead_scoring/requested_because"] == (
            f"{claimable} contacts waiting, more than 5% of {contacts} contacts"
        )
        queued = instance.create_run_for_job(
            definitions.resolve_job_def(full_job), status=dg.DagsterRunStatus.STARTED
        )
        again, _ = _tick(sensor, instance, database_url)
        assert isinstance(again, dg.SkipReason)
        assert again.skip_message == (
            f"{claimable} contacts waiting, more than 5% of {contacts} contacts: a full "
            f"rescoring is already queued or running (run {queued.run_id}); it settles them"
        )
        instance.report_run_failed(queued)
        run = definitions.resolve_job_def("full_rescore_job").execute_in_process(
            instance=instance,
            tags=request.tags,
            resources={"database": DatabaseResource(url=database_url)},
        )
        assert run.success
        empty, _ = _tick(sensor, instance, database_url)
        assert isinstance(empty, dg.SkipReason) and "queue empty" in empty.skip_message


@pytest.mark.parametrize(
    "tags",
    [{"dagster/backfill": "bucketsab", "dagster/partition": "03"}, {}],
    ids=["bucket backfill run", "lead_scores from the UI"],
)
def test_no_full_rescoring_is_requested_while_a_run_materialises_lead_scores(
    demo_database, database_url, definitions, tags
):
    """A backfill of the contact buckets (or ``lead_scores`` materialised from the asset graph)
    runs as Dagster's asset job, not as ``full_rescore_job``: it rescores the backlog too, and
    a second full rescoring requested beside it would wait for its buckets."""
    sensor = build_scoring_queue_sensor(batch_size=100, max_runs=2)
    contacts = demo_database.count("contacts")
    _analyze_contacts(demo_database)
    with dg.instance_for_test() as instance:
        keys = {dg.AssetKey("staged_lead_scores"), dg.AssetKey("lead_scores")}
        running = instance.create_run_for_job(
            definitions.resolve_implicit_job_def_def_for_assets(list(keys)),
            asset_selection=keys,
            tags=tags,
            status=dg.DagsterRunStatus.STARTED,
        )
        skipped, _ = _tick(sensor, instance, database_url)
        assert isinstance(skipped, dg.SkipReason)
        claimable = demo_database.count("scoring_queue")
        assert skipped.skip_message == (
            f"{claimable} contacts waiting, more than 5% of {contacts} contacts: a full "
            f"rescoring is already queued or running (run {running.run_id}); it settles them"
        )
        instance.report_run_failed(running)
        (request,) = list(_tick(sensor, instance, database_url)[0])
        assert request.job_name == "full_rescore_job"


def test_a_backlog_under_the_share_gets_incremental_runs(demo_database, database_url):
    rescore_all(demo_database, AS_OF)
    contacts = demo_database.count("contacts")
    for i in range(contacts // 20):
        _insert_validation(demo_database, 1 + i, 10**8 + i)
    _analyze_contacts(demo_database)
    at_five = build_scoring_queue_sensor(batch_size=50, max_runs=2)
    at_four = build_scoring_queue_sensor(batch_size=50, max_runs=2, full_rescore_percent=4)
    with dg.instance_for_test() as instance:
        result, _ = _tick(at_five, instance, database_url)
        assert [r.job_name for r in result] == ["incremental_scoring_job"] * 2
        (full,) = list(_tick(at_four, instance, database_url)[0])
        assert full.job_name == "full_rescore_job"


def test_the_full_rescoring_share_comes_from_the_environment(monkeypatch):
    monkeypatch.delenv(FULL_RESCORE_PERCENT_ENV, raising=False)
    assert full_rescore_percent_from_environment() == 5
    monkeypatch.setenv(FULL_RESCORE_PERCENT_ENV, "2.5")
    assert full_rescore_percent_from_environment() == 2.5
    for bad in ("0", "-1", "five", "nan"):
        monkeypatch.setenv(FULL_RESCORE_PERCENT_ENV, bad)
        with pytest.raises(
            ValueError, match=f"{FULL_RESCORE_PERCENT_ENV} must be a percentage of the contacts"
        ):
            full_rescore_percent_from_environment()
