"""Contact buckets: the bucket function is where PostgreSQL's hash partitions put the rows,
the bucket reader sees every contact and validation row once, a publish stopped half-way is
finished by its retry, and a backfill of every bucket in two concurrent runs publishes exactly
what a single run does."""

import multiprocessing
from pathlib import Path

import dagster as dg
import pandas as pd
import psycopg
import pytest
import sqlalchemy as sa

from lead_scoring_assets.db.bucket_inputs import iter_bucket_inputs
from lead_scoring_assets.db.buckets import BUCKET_COUNT, bucket_sql
from lead_scoring_assets.db.database import Database
from lead_scoring_assets.db.score_swap import ScoreSwap, staged_scores
from lead_scoring_assets.db.tables import VALIDATION_COLUMNS
from lead_scoring_assets.defs.assets.lead_scores import (
    LeadScoresConfig,
    lead_scores,
    staged_lead_scores,
)
from lead_scoring_assets.defs.checks import staged_lead_scores_pass_audit
from lead_scoring_assets.defs.partitions import (
    BUCKETS_PER_RUN_ENV,
    bucket_backfill_policy,
    bucket_range,
)
from lead_scoring_assets.defs.resources import DatabaseResource
from lead_scoring_assets.scoring.full_rescore import publish_rescore, rescore_all, stage_rescore

from .conftest import AS_OF, _admin_dsn

ALL = list(range(BUCKET_COUNT))


def _buckets_of_contacts(database: Database) -> dict[int, int]:
    frame = database.read_frame(
        f"SELECT id, {bucket_sql(database.dialect, 'id')} AS bucket FROM contacts"
    )
    return dict(zip(frame["id"].astype(int), frame["bucket"].astype(int), strict=True))


def _add_stray_validations(database: Database) -> list[int]:
    """Three rows whose contact does not exist: below every id, none, above every id."""
    rows = database.read_frame(
        f"SELECT {', '.join(VALIDATION_COLUMNS)} FROM "
        "platform_validations WHERE is_valid IS NOT NULL ORDER BY id "
        "LIMIT 3"
    )
    top = int(database.read_frame("SELECT max(id) AS m FROM platform_validations")["m"][0])
    rows["id"] = [top + 1, top + 2, top + 3]
    rows["contact_id"] = pd.array([-5, None, 10**12], dtype="Int64")
    database.append_frame("platform_validations", rows)
    return list(rows["id"])


@pytest.mark.parametrize("database_url", ["postgresql"], indirect=True)
def test_the_bucket_function_is_where_postgresql_puts_the_rows(demo_database):
    rescore_all(demo_database, AS_OF)
    with demo_database.engine.connect() as connection:
        rows, misplaced = connection.execute(
            sa.text(
                "SELECT count(*), count(*) FILTER (WHERE right(tableoid::regclass::text, 2)::int "
                "<> lead_scoring_bucket(contact_id)) FROM lead_scores"
            )
        ).one()
        null_bucket = connection.execute(sa.text("SELECT lead_scoring_bucket(NULL)")).scalar_one()
    assert rows == demo_database.count("contacts") and misplaced == 0
    assert null_bucket == 0


def test_each_contact_and_validation_row_is_read_once_in_its_bucket(demo_database):
    strays = _add_stray_validations(demo_database)
    expected = _buckets_of_contacts(demo_database)
    seen_contacts, seen_rows, order = [], [], []
    for bucket, contacts, validations in iter_bucket_inputs(demo_database, ALL, chunk_size=97):
        assert "phone_e164" not in contacts.columns
        assert all(expected[int(i)] == bucket for i in contacts["id"])
        known = validations["contact_id"].dropna().astype(int)
        in_chunk = set(contacts["id"].astype(int))
        assert all(i in in_chunk for i in known if i in expected), "a row away from its contact"
        assert list(contacts["id"]) == sorted(contacts["id"])
        seen_contacts += list(contacts["id"].astype(int))
        seen_rows += list(validations["id"].astype(int))
        order.append(bucket)
    assert order == sorted(order) and set(order) == set(ALL)
    assert sorted(seen_contacts) == sorted(expected) and len(set(seen_contacts)) == len(expected)
    all_rows = demo_database.read_frame("SELECT id FROM platform_validations")["id"]
    assert sorted(seen_rows) == sorted(all_rows.astype(int))
    assert set(strays) <= set(seen_rows)


def test_a_run_of_some_buckets_rescores_only_those(demo_database):
    rescore_all(demo_database, AS_OF)
    later = AS_OF + pd.Timedelta(days=1)
    report = rescore_all(demo_database, later, buckets=[3, 11])
    stored = demo_database.read_frame("SELECT contact_id, last_calculated_at FROM lead_scores")
    moved = pd.to_datetime(stored["last_calculated_at"], utc=True, format="ISO8601") == later
    buckets = _buckets_of_contacts(demo_database)
    assert set(stored.loc[moved, "contact_id"].map(buckets)) == {3, 11}
    assert moved.sum() == report.contacts_scored == sum(b in (3, 11) for b in buckets.values())
    assert len(stored) == demo_database.count("contacts")


def _fail_bucket(bucket: int):
    real = ScoreSwap._publish_bucket

    def publish_bucket(self, chosen):
        if chosen == bucket:
            raise sa.exc.OperationalError("publish", {}, ConnectionError("server closed"))
        return real(self, chosen)

    return publish_bucket


def test_a_publish_stopped_half_way_is_finished_by_its_retry(demo_database, monkeypatch):
    rescore_all(demo_database, AS_OF)
    later = AS_OF + pd.Timedelta(days=1)
    stage_rescore(demo_database, later, run_id="halfway")
    monkeypatch.setattr(ScoreSwap, "_publish_bucket", _fail_bucket(5))
    with pytest.raises(sa.exc.OperationalError):
        publish_rescore(demo_database, "halfway", retry_follows=True)
    stored = demo_database.read_frame("SELECT contact_id, last_calculated_at FROM lead_scores")
    at = pd.to_datetime(stored["last_calculated_at"], utc=True, format="ISO8601")
    buckets = stored["contact_id"].map(_buckets_of_contacts(demo_database))
    assert (at[buckets < 5] == later).all() and (at[buckets >= 5] == AS_OF).all()
    names = set(sa.inspect(demo_database.engine).get_table_names())
    assert {staged_scores(b) for b in range(5, BUCKET_COUNT)} <= names
    monkeypatch.undo()
    publish_rescore(demo_database, "halfway")
    stored = demo_database.read_frame("SELECT last_calculated_at FROM lead_scores")
    assert (pd.to_datetime(stored["last_calculated_at"], utc=True, format="ISO8601") == later).all()
    assert demo_database.count("writer_locks") == demo_database.count("staged_builds") == 0
    assert not {staged_scores(b) for b in ALL} & set(
        sa.inspect(demo_database.engine).get_table_names()
    )


def test_buckets_per_run_sets_the_backfill_policy(monkeypatch):
    assert bucket_backfill_policy().max_partitions_per_run is None
    monkeypatch.setenv(BUCKETS_PER_RUN_ENV, "4")
    assert bucket_backfill_policy().max_partitions_per_run == 4
    monkeypatch.setenv(BUCKETS_PER_RUN_ENV, "0")
    with pytest.raises(ValueError, match="whole number"):
        bucket_backfill_policy()


def _materialize_buckets(url: str, first: str, last: str, home: str, together=None) -> None:
    """One run of the rescoring's three steps over buckets ``first``..``last`` (a child
    process: each run of a backfill is a process of its own). With ``together`` (a barrier
    shared with the other run), the run waits at its first staged chunk until the other run
    has staged one too, so the two provably stage at the same time."""
    if together is not None:
        stage_chunk = ScoreSwap.add

        def add_when_both_stage(self, *args):
            if not getattr(self, "_met", False):
                self._met = True
                together.wait(timeout=120)
            return stage_chunk(self, *args)

        ScoreSwap.add = add_when_both_stage
    Path(home).mkdir(parents=True)
    with dg.instance_for_test(temp_dir=home) as instance:
        result = dg.materialize(
            [staged_lead_scores, staged_lead_scores_pass_audit, lead_scores],
            instance=instance,
            resources={"database": DatabaseResource(url=url)},
            run_config=dg.RunConfig(
                {"staged_lead_scores": LeadScoresConfig(as_of=AS_OF.isoformat())}
            ),
            tags=bucket_range(first, last),
            raise_on_error=False,
        )
    if not result.success:
        raise SystemExit(f"run {first}-{last} failed")


def _published(database: Database) -> dict[str, pd.DataFrame]:
    history = database.read_frame(
        "SELECT contact_id, old_total_score, new_total_score, old_quality_tier, "
        "new_quality_tier, calculation_version, changed_at FROM lead_score_history"
    )
    return {
        "lead_scores": database.read_frame("SELECT * FROM lead_scores"),
        "malformed": database.read_frame(
            "SELECT validation_id, contact_id, reason FROM malformed_validations"
        ),
        "last_validation": database.read_frame("SELECT id, last_platform_validation FROM contacts"),
        "history": history,
        "queue": database.read_frame("SELECT contact_id FROM scoring_queue"),
    }


def _sorted(frame: pd.DataFrame) -> pd.DataFrame:
    return frame.sort_values(list(frame.columns[:2])).reset_index(drop=True)


@pytest.mark.parametrize("database_url", ["postgresql"], indirect=True)
def test_a_backfill_in_two_concurrent_runs_publishes_what_one_run_does(
    demo_database, database_url, tmp_path
):
    """The same data in two databases: one run of every bucket in one, a backfill of two
    concurrent runs (buckets 00-07 and 08-15, each its own process, both staging at once) in
    the other."""
    _add_stray_validations(demo_database)
    demo_database.dispose()
    url = sa.make_url(database_url)
    twin = f"{url.database}_twin"
    with psycopg.connect(_admin_dsn(), autocommit=True) as connection:
        connection.execute(f'CREATE DATABASE "{twin}" TEMPLATE "{url.database}"')
    twin_url = url.set(database=twin).render_as_string(hide_password=False)
    try:
        context = multiprocessing.get_context("spawn")
        single = context.Process(
            target=_materialize_buckets, args=(database_url, "00", "15", str(tmp_path / "one"))
        )
        single.start()
        single.join(timeout=300)
        assert single.exitcode == 0
        together = context.Barrier(2)
        runs = [
            context.Process(
                target=_materialize_buckets,
                args=(twin_url, first, last, str(tmp_path / first), together),
            )
            for first, last in (("00", "07"), ("08", "15"))
        ]
        for run in runs:
            run.start()
        for run in runs:
            run.join(timeout=300)
        assert [run.exitcode for run in runs] == [0, 0], "a run failed or never met the other"
        one, backfilled = Database(database_url), Database(twin_url)
        expected, actual = _published(one), _published(backfilled)
        for name in expected:
            pd.testing.assert_frame_equal(_sorted(expected[name]), _sorted(actual[name]), obj=name)
        assert len(expected["lead_scores"]) == one.count("contacts") > 0
        assert len(expected["malformed"]) > 0
        assert backfilled.count("writer_locks") == backfilled.count("staged_builds") == 0
        one.dispose()
        backfilled.dispose()
    finally:
        with psycopg.connect(_admin_dsn(), autocommit=True) as connection:
            connection.execute(f'DROP DATABASE IF EXISTS "{twin}" WITH (FORCE)')
