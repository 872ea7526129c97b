"""No phone number in logs, errors, run events or the queue, even when a write fails.

Failures are planted mid-write on both dialects (a trigger that raises, on PostgreSQL with the
row in its message, like a full disk during a write), the runs go through a real Dagster
instance, and every phone number of the dataset is looked for in the event log, the
instance's files (captured compute logs), the queue tables and the captured output.
"""

import re
from collections.abc import Iterable
from pathlib import Path

import dagster as dg
import pandas as pd
import pytest
import sqlalchemy as sa

from lead_scoring_assets.db.database import Database
from lead_scoring_assets.db.errors import describe_error
from lead_scoring_assets.defs import retries
from lead_scoring_assets.defs.assets.lead_scores import (
    LeadScoresConfig,
    lead_scores,
    staged_lead_scores,
)
from lead_scoring_assets.defs.incremental_scoring import incremental_scoring_job
from lead_scoring_assets.defs.partitions import ALL_BUCKETS
from lead_scoring_assets.defs.resources import DatabaseResource
from lead_scoring_assets.defs.retries import retry_on_transient_database_errors
from lead_scoring_assets.demo.generator import generate_demo_data
from lead_scoring_assets.demo_definitions import DemoDataConfig, demo_data_job
from lead_scoring_assets.scoring import incremental
from lead_scoring_assets.scoring.full_rescore import rescore_all

from .conftest import AS_OF

LATER = AS_OF + pd.Timedelta(days=2)
DEMO_SEED = 77
DEMO_CONTACTS = 400


def phone_leaks(texts: Iterable[str], phones: Iterable[str]) -> set[str]:
    """The phones (by their 10 national digits, so any formatting) found in ``texts``."""
    national = {phone[-10:] for phone in phones}
    found = set()
    for text in texts:
        for run in re.findall(r"\d{10,}", re.sub(r"(?<=\d)[ .-](?=\d)", "", text)):
            found |= {run[i : i + 10] for i in range(len(run) - 9)} & national
    return found


def _plant_failing_triggers(database: Database) -> None:
    """Updates of ``contacts`` (the score writers' ``last_platform_validation``) and inserts
    (the demo loader) fail: on PostgreSQL with the whole row, phone included, in the message."""
    with database.engine.begin() as connection:
        if database.dialect == "postgresql":
            connection.execute(
                sa.text(
                    "CREATE FUNCTION disk_full() RETURNS trigger LANGUAGE plpgsql AS $$ BEGIN "
                    "RAISE EXCEPTION 'No space left on device writing %', NEW; END $$"
                )
            )
            for event in ("UPDATE", "INSERT"):
                connection.execute(
                    sa.text(
                        f"CREATE TRIGGER disk_full_{event.lower()} BEFORE {event} ON contacts "
                        "FOR EACH ROW EXECUTE FUNCTION disk_full()"
                    )
                )
            return
        for event in ("UPDATE", "INSERT"):
            connection.execute(
                sa.text(
                    f"CREATE TRIGGER disk_full_{event.lower()} BEFORE {event} ON contacts "
                    "BEGIN SELECT RAISE(ABORT, 'No space left on device'); END"
                )
            )


def _add_validations(database: Database, contact_ids: list[int]) -> None:
    top = int(database.read_frame("SELECT max(id) AS m FROM platform_validations")["m"][0])
    with database.engine.begin() as connection:
        for i, contact_id in enumerate(contact_ids):
            connection.execute(
                sa.text(
                    "INSERT INTO platform_validations (id, contact_id, platform, is_valid, "
                    "confidence_score, validated_at) VALUES (:id, :contact, 'apple', :yes, 0.9, :at)"
                ),
                {
                    "id": top + 1 + i,
                    "contact": contact_id,
                    "yes": True,
                    "at": database.bind_timestamp(LATER),
                },
            )


def test_the_scan_catches_a_planted_number():
    phones = ["+526671234567", "+523312345678"]
    assert phone_leaks(['retry in 2s: (1,+526671234567,"Ana")'], phones) == {"6671234567"}
    assert phone_leaks(["call 33 1234 5678 now"], phones) == {"3312345678"}
    assert phone_leaks(["contact 31, score 6671"], phones) == set()


def test_no_phone_number_leaves_a_failing_write(
    demo_database, database_url, monkeypatch, caplog, capfd
):
    database = demo_database
    rescore_all(database, AS_OF)
    phones = set(database.read_frame("SELECT phone_e164 FROM contacts")["phone_e164"])
    phones |= set(
        pd.concat(b.contacts for b in generate_demo_data(DEMO_CONTACTS, DEMO_SEED, AS_OF))[
            "phone_e164"
        ]
    )
    resources = {"database": DatabaseResource(url=database_url)}
    incremental_config = {
        "ops": {"score_queued_contacts": {"config": {"as_of": LATER.isoformat()}}}
    }

    with dg.instance_for_test() as instance:
        # 1. a contact whose scoring raises with its phone number in the message
        victim = database.read_frame("SELECT id, phone_e164 FROM contacts WHERE id = 42")
        real = incremental.score_chunk

        def fails_with_the_phone(contacts, *args, **kwargs):
            if 42 in set(contacts["id"]):
                raise ValueError(f"cannot score {victim['phone_e164'].iloc[0]}")
            return real(contacts, *args, **kwargs)

        monkeypatch.setattr(incremental, "score_chunk", fails_with_the_phone)
        _add_validations(database, [41, 42, 43])
        for _ in range(3):
            assert incremental_scoring_job.execute_in_process(
                run_config=incremental_config, resources=resources, instance=instance
            ).success
        monkeypatch.setattr(incremental, "score_chunk", real)
        dead = database.read_frame("SELECT contact_id, last_error FROM scoring_dead_letters")
        assert dead.values.tolist() == [[42, "ValueError: cannot score #"]]

        # 2. the disk fills up while the score writers update contacts (a new row for the
        # rescoring to take: it keeps the contacts the incremental runs scored since)
        _add_validations(database, [44])
        _plant_failing_triggers(database)
        with pytest.raises(Exception) as raw:
            rescore_all(database, LATER + pd.Timedelta(days=1))
        if database.dialect == "postgresql":
            assert phone_leaks([str(raw.value)], phones), "the planted error carries the row"
        assert not phone_leaks([describe_error(raw.value)], phones)
        full = dg.materialize(
            [staged_lead_scores, lead_scores],
            resources=resources,
            instance=instance,
            raise_on_error=False,
            tags=ALL_BUCKETS,
            run_config=dg.RunConfig(
                {
                    "staged_lead_scores": LeadScoresConfig(
                        as_of=(LATER + pd.Timedelta(days=1)).isoformat()
                    )
                }
            ),
        )
        assert not full.success
        assert database.count("writer_locks") == 0, "a failed publish releases the lock"
        _add_validations(database, [50, 51])
        settle = incremental_scoring_job.execute_in_process(
            run_config=incremental_config,
            resources=resources,
            instance=instance,
            raise_on_error=False,
        )
        assert not settle.success
        failure = settle.get_step_failure_events()[0].step_failure_data.error.cause
        assert failure.cls_name in ("DatabaseError", "TransientDatabaseError")
        assert failure.cause is None and failure.context is None

        # 3. the disk fills up while the demo loader writes contacts
        demo = demo_data_job.execute_in_process(
            run_config=dg.RunConfig(
                {
                    "generate_demo_data_op": DemoDataConfig(
                        contacts=DEMO_CONTACTS, seed=DEMO_SEED, replace_existing=True
                    )
                }
            ),
            resources=resources,
            instance=instance,
            raise_on_error=False,
        )
        assert not demo.success

        events = [
            dg.serialize_value(event)
            for run in instance.get_runs()
            for event in instance.all_logs(run.run_id)
        ]
        assert len(instance.get_runs()) == 6 and any("No space left" in e for e in events)
        stored = [
            path.read_bytes().decode("utf-8", "replace")
            for path in Path(instance.root_directory).rglob("*")
            if path.is_file()
        ]
    queue = [
        database.read_frame(f"SELECT * FROM {table}").to_csv()
        for table in ("scoring_queue", "scoring_dead_letters")
    ]
    captured = capfd.readouterr()
    assert "No space left" in captured.err + caplog.text
    assert (
        phone_leaks(events + stored + queue + [caplog.text, captured.out, captured.err], phones)
        == set()
    )


def test_sanitised_errors_keep_class_sqlstate_and_identifiers(database):
    with pytest.raises(sa.exc.IntegrityError) as raw, database.engine.begin() as connection:
        connection.execute(
            sa.text("INSERT INTO contacts (id, phone_e164) VALUES (:id, :phone)"),
            [{"id": 1, "phone": "+526671234567"}, {"id": 1, "phone": "+526671234568"}],
        )
    assert "parameters hidden" in str(raw.value) and "667123456" not in str(raw.value)
    described = describe_error(raw.value)
    assert "6671234567" not in described and "parameters" not in described
    assert described.startswith("IntegrityError [")
    if database.dialect == "postgresql":
        assert described.startswith("IntegrityError [23505]: ")
        assert described.endswith("(table contacts, constraint contacts_pkey)")
    else:
        assert described.startswith("IntegrityError [SQLITE_CONSTRAINT")


def test_retry_warning_describes_the_error_without_its_values(
    postgres_server, monkeypatch, caplog, capfd
):
    """A real transient error whose message names a phone (a database named after one) is
    retried with a warning that keeps its class, and the run's events chain nothing."""
    url = (
        sa.make_url(postgres_server)
        .set(database="list_+526671234567")
        .render_as_string(hide_password=False)
    )
    with pytest.raises(Exception) as raw:
        Database(url).current_revision()
    assert phone_leaks([str(raw.value)], ["+526671234567"]) == {"6671234567"}

    @dg.op
    def open_the_list(context: dg.OpExecutionContext, database: DatabaseResource) -> None:
        with retry_on_transient_database_errors(context), database.open():
            pass

    @dg.job
    def list_job() -> None:
        open_the_list()

    monkeypatch.setattr(retries, "MAX_RETRIES", 0)
    with dg.instance_for_test() as instance:
        result = list_job.execute_in_process(
            resources={"database": DatabaseResource(url=url)},
            instance=instance,
            raise_on_error=False,
        )
        events = [dg.serialize_value(e) for e in instance.all_logs(result.run_id)]
    assert not result.success
    captured = capfd.readouterr()
    logged = events + [caplog.text, captured.err, captured.out]
    assert any("transient database error, retry in 2s: OperationalError" in t for t in logged)
    assert phone_leaks(logged, ["+526671234567"]) == set()
