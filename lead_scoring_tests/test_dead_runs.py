"""A dead scoring writer stops blocking the others soon after it dies: a full rescoring's lease
is short while a heartbeat renews it, long only between two steps of a live run, and a lock
held by a Dagster run that has ended is broken at once."""

import itertools
import multiprocessing
import threading
import time
import uuid

import dagster as dg
import pandas as pd
import pytest
import sqlalchemy as sa

from lead_scoring_assets.db import score_swap
from lead_scoring_assets.db.bucket_inputs import SPILL_DIR_ENV
from lead_scoring_assets.db.database import Database
from lead_scoring_assets.db.score_swap import HANDOVER_LEASE_SECONDS, ScoreSwap
from lead_scoring_assets.db.tables import SCORE_COLUMNS
from lead_scoring_assets.db.writer_lock import LockBusy, LockLost
from lead_scoring_assets.defs.incremental_scoring import incremental_scoring_job
from lead_scoring_assets.defs.lock_holders import dagster_run_liveness
from lead_scoring_assets.defs.resources import DatabaseResource
from lead_scoring_assets.scoring import full_rescore
from lead_scoring_assets.scoring.full_rescore import publish_rescore, rescore_all, stage_rescore
from lead_scoring_assets.scoring.incremental import score_queued

from .conftest import AS_OF

LATER = AS_OF + pd.Timedelta(days=2)
QUEUED = range(40, 45)


def _add_validation(database: Database, contact_id: int, validation_id: int) -> None:
    with database.engine.begin() as connection:
        connection.execute(
            sa.text(
                "INSERT INTO platform_validations (id, contact_id, platform, is_valid, is_business, "
                "is_premium, confidence_score, validated_at) VALUES (:id, :contact, 'instagram', "
                ":yes, :yes, :no, 0.97, :at)"
            ),
            {
                "id": validation_id,
                "contact": contact_id,
                "yes": True,
                "no": False,
                "at": database.bind_timestamp(LATER),
            },
        )


def _queue_contacts(database: Database) -> None:
    for i, contact_id in enumerate(QUEUED):
        _add_validation(database, contact_id, 10**8 + i)


def _scores(database: Database) -> pd.DataFrame:
    frame = database.read_frame(
        f"SELECT {', '.join(SCORE_COLUMNS)} FROM lead_scores ORDER BY contact_id"
    )
    return frame[frame["contact_id"].isin(list(QUEUED))].reset_index(drop=True)


def _lock_rows(database: Database, holder: str) -> pd.DataFrame:
    return database.read_frame(
        "SELECT resource, expires_at FROM writer_locks WHERE holder = :holder", {"holder": holder}
    )


def _stage_then_hang(url: str) -> None:
    """A full rescoring that stages two chunks, then hangs in the scorer until it is killed."""
    real = full_rescore.score_chunk
    calls = itertools.count()

    def hang_after_two_chunks(*args, **kwargs):
        if next(calls) >= 2:
            time.sleep(600)
        return real(*args, **kwargs)

    full_rescore.score_chunk = hang_after_two_chunks
    stage_rescore(Database(url), LATER, chunk_size=50)


def _staging(database: Database) -> bool:
    return (
        sa.inspect(database.engine).has_table("lead_scores_p00_next")
        and database.count("lead_scores_p00_next") > 0
    )


def test_a_killed_full_rescoring_blocks_incremental_runs_for_less_than_a_minute(
    demo_database, database_url, tmp_path, monkeypatch
):
    """A real second process stages a full rescoring with the production leases and is
    SIGKILLed mid-staging; incremental runs score the queue within a minute, and the next full
    rescoring is not hindered by what the killed run left."""
    monkeypatch.setenv(SPILL_DIR_ENV, str(tmp_path))
    rescore_all(demo_database, AS_OF)
    _queue_contacts(demo_database)
    before = _scores(demo_database)
    process = multiprocessing.get_context("spawn").Process(
        target=_stage_then_hang, args=(database_url,)
    )
    process.start()
    try:
        deadline = time.monotonic() + 120
        while not _staging(demo_database) and time.monotonic() < deadline:
            time.sleep(0.1)
        assert _staging(demo_database), "the run never started staging"
        assert process.is_alive(), "the run stopped before it was killed"
        assert score_queued(demo_database, LATER, owner="while-it-stages").skipped_reason
    finally:
        process.kill()
        process.join()
    killed = time.monotonic()
    while True:
        report = score_queued(demo_database, LATER, owner="after-the-kill")
        waited = time.monotonic() - killed
        if not report.skipped_reason or waited > 60:
            break
        time.sleep(1)
    assert not report.skipped_reason, f"incremental runs still blocked {waited:.0f}s after"
    assert (report.claimed, report.removed) == (5, 5)
    after = _scores(demo_database)
    assert (after["instagram_score"] > 0).all() and not after.equals(before)
    full = rescore_all(demo_database, AS_OF)
    assert full.contacts_scored == demo_database.count("contacts")
    assert demo_database.count("writer_locks") == demo_database.count("staged_builds") == 0
    assert not sa.inspect(demo_database.engine).has_table("lead_scores_p00_next")


def _end(instance: dg.DagsterInstance, run: dg.DagsterRun, end: str) -> None:
    if end == "failure":
        instance.report_run_failed(run)
    elif end == "canceled":
        instance.report_run_canceled(run)
    else:
        instance.delete_run(run.run_id)


@pytest.mark.parametrize(
    ("database_url", "end"),
    [
        ("sqlite", "failure"),
        ("postgresql", "failure"),
        ("sqlite", "canceled"),
        ("sqlite", "deleted"),
    ],
    indirect=["database_url"],
)
def test_a_lock_held_by_an_ended_dagster_run_is_broken_by_the_next_incremental_run(
    demo_database, database_url, definitions, end
):
    """The run that staged holds its lock for the hand-over lease (minutes); once Dagster says
    that run has ended (or no longer knows it), the next incremental run breaks it at once."""
    rescore_all(demo_database, AS_OF)
    _queue_contacts(demo_database)
    resources = {"database": DatabaseResource(url=database_url)}
    with dg.instance_for_test() as instance:
        run = instance.create_run_for_job(
            definitions.resolve_job_def("full_rescore_job"), status=dg.DagsterRunStatus.STARTED
        )
        stage_rescore(demo_database, LATER, run_id=run.run_id)
        waiting = incremental_scoring_job.execute_in_process(instance=instance, resources=resources)
        assert waiting.success
        assert not waiting.asset_materializations_for_node("score_queued_contacts"), (
            "the lock of a live run is respected"
        )
        _end(instance, run, end)
        result = incremental_scoring_job.execute_in_process(instance=instance, resources=resources)
        (event,) = result.asset_materializations_for_node("score_queued_contacts")
        assert event.metadata["scored"].value == 5
        messages = [entry.user_message for entry in instance.all_logs(result.run_id)]
        assert any(run.run_id in message and "broken" in message for message in messages)
    assert _lock_rows(demo_database, run.run_id).empty
    assert (_scores(demo_database)["instagram_score"] > 0).all()
    assert rescore_all(demo_database, AS_OF).contacts_scored == demo_database.count("contacts")


@dg.op
def _nothing() -> None:
    pass


@dg.job
def _a_job() -> None:
    _nothing()


def test_which_lock_holders_dagster_says_are_alive():
    with dg.instance_for_test() as instance:
        log = dg.get_dagster_logger("test")
        alive = dagster_run_liveness(instance, log)
        statuses = [
            dg.DagsterRunStatus.NOT_STARTED,
            dg.DagsterRunStatus.STARTING,
            dg.DagsterRunStatus.STARTED,
            dg.DagsterRunStatus.CANCELING,
            dg.DagsterRunStatus.SUCCESS,
            dg.DagsterRunStatus.FAILURE,
            dg.DagsterRunStatus.CANCELED,
        ]
        runs = {status: instance.create_run_for_job(_a_job, status=status) for status in statuses}
        for status, run in runs.items():
            ended = status in (
                dg.DagsterRunStatus.SUCCESS,
                dg.DagsterRunStatus.FAILURE,
                dg.DagsterRunStatus.CANCELED,
            )
            assert alive(run.run_id) is not ended, status
        assert alive(str(uuid.uuid4())) is False, "a run the instance does not know is gone"
        for holder in ("adhoc-20261124T000000.000000", "stager", uuid.uuid4().hex):
            assert alive(holder) is True, "not a Dagster run id: its lease decides"


def test_a_full_rescoring_breaks_a_dead_holders_lock_and_the_dead_run_publishes_nothing(
    demo_database,
):
    rescore_all(demo_database, AS_OF)
    stage_rescore(demo_database, LATER, run_id="dead")
    with pytest.raises(LockBusy):
        stage_rescore(demo_database, LATER, run_id="next", buckets=[3])
    report = score_queued(
        demo_database, LATER, owner="inc", is_holder_alive=lambda holder: holder != "dead"
    )
    assert not report.skipped_reason
    assert _lock_rows(demo_database, "dead").empty
    before = demo_database.read_frame("SELECT * FROM lead_scores ORDER BY contact_id")
    with pytest.raises(LockLost):
        publish_rescore(demo_database, "dead")
    pd.testing.assert_frame_equal(
        before, demo_database.read_frame("SELECT * FROM lead_scores ORDER BY contact_id")
    )
    stage_rescore(demo_database, LATER, run_id="again", buckets=[3])
    stage_rescore(
        demo_database,
        LATER,
        run_id="after",
        buckets=[3],
        is_holder_alive=lambda holder: holder != "again",
    )
    assert _lock_rows(demo_database, "again").empty
    publish_rescore(demo_database, "after")
    assert demo_database.count("writer_locks") == 0


SHORT_LEASE = 2.0
"""Seconds: the working lease of the heartbeat tests."""


def test_a_heartbeat_keeps_a_live_holders_lock_past_its_short_lease(demo_database, monkeypatch):
    """Staging stalls for three short leases without progress; the heartbeat keeps the lock
    (an incremental run still skips), the step ends with the hand-over lease, and the publish,
    later than a short lease, still passes its fencing."""
    rescore_all(demo_database, AS_OF)
    _queue_contacts(demo_database)
    real = full_rescore.score_chunk
    calls = itertools.count()
    during = []

    def stalling(*args, **kwargs):
        if next(calls) == 0:
            time.sleep(3 * SHORT_LEASE)
            during.append(score_queued(demo_database, LATER, owner="during-the-stall"))
        return real(*args, **kwargs)

    monkeypatch.setattr(full_rescore, "score_chunk", stalling)
    stage_rescore(demo_database, LATER, run_id="slow", lease_seconds=SHORT_LEASE)
    monkeypatch.undo()
    assert during and during[0].skipped_reason
    expires = pd.to_datetime(
        _lock_rows(demo_database, "slow")["expires_at"], utc=True, format="ISO8601"
    )
    assert (
        expires > pd.Timestamp.now(tz="UTC") + pd.Timedelta(seconds=HANDOVER_LEASE_SECONDS - 30)
    ).all()
    time.sleep(2 * SHORT_LEASE)
    assert score_queued(demo_database, LATER, owner="between-steps").skipped_reason
    swap = publish_rescore(demo_database, "slow")
    assert len(swap.published_buckets) == 16
    assert demo_database.count("writer_locks") == 0
    assert score_queued(demo_database, LATER, owner="after").removed == 0


def _expire(database: Database, holder: str) -> None:
    with database.engine.begin() as connection:
        connection.execute(
            sa.text("UPDATE writer_locks SET expires_at = :past WHERE holder = :holder"),
            {"past": database.bind_timestamp(AS_OF), "holder": holder},
        )


def test_a_heartbeat_that_finds_its_lease_ended_records_it_and_nothing_is_published(demo_database):
    rescore_all(demo_database, AS_OF)
    stage_rescore(demo_database, LATER, run_id="lapsed", lease_seconds=SHORT_LEASE)
    before = demo_database.read_frame("SELECT * FROM lead_scores ORDER BY contact_id")
    swap = ScoreSwap(demo_database, run_id="lapsed", lease_seconds=SHORT_LEASE)
    with pytest.raises(LockLost), swap.keep_alive() as heartbeat:
        _expire(demo_database, "lapsed")
        deadline = time.monotonic() + 10
        while heartbeat.lost is None and time.monotonic() < deadline:
            time.sleep(0.05)
        assert heartbeat.lost is not None, "the heartbeat did not notice"
    assert not any(t.name.startswith("lease-heartbeat") for t in threading.enumerate())
    expires = pd.to_datetime(
        _lock_rows(demo_database, "lapsed")["expires_at"], utc=True, format="ISO8601"
    )
    assert (expires < pd.Timestamp.now(tz="UTC")).all(), "an ended lease is never renewed"
    with pytest.raises(LockLost):
        publish_rescore(demo_database, "lapsed")
    pd.testing.assert_frame_equal(
        before, demo_database.read_frame("SELECT * FROM lead_scores ORDER BY contact_id")
    )


@pytest.mark.parametrize("database_url", ["postgresql"], indirect=True)
def test_a_publish_transaction_longer_than_the_lease_keeps_the_other_buckets(
    demo_database, monkeypatch
):
    """Bucket 00's publish transaction lasts three short leases while an incremental run tries
    to take the lock: the heartbeat keeps renewing the other buckets (it does not queue behind
    that writer), so the publish goes on to bucket 15."""
    rescore_all(demo_database, AS_OF)
    stage_rescore(demo_database, LATER, run_id="long", lease_seconds=SHORT_LEASE)
    real = score_swap.record_changes
    writers, skipped = [], []

    def slow_first_bucket(connection, staged, *args, **kwargs):
        if staged == "lead_scores_p00_next":
            time.sleep(1.5 * SHORT_LEASE)
            writers.append(
                threading.Thread(
                    target=lambda: skipped.append(
                        score_queued(demo_database, LATER, owner="meanwhile").skipped_reason
                    )
                )
            )
            writers[0].start()
            time.sleep(1.5 * SHORT_LEASE)
        return real(connection, staged, *args, **kwargs)

    monkeypatch.setattr(score_swap, "record_changes", slow_first_bucket)
    swap = publish_rescore(demo_database, "long", lease_seconds=SHORT_LEASE)
    writers[0].join()
    assert len(swap.published_buckets) == 16
    assert skipped == ["a full rescoring is running; the queue waits for it"]
    assert demo_database.count("writer_locks") == 0
