"""lead_score_history: a row when a total score or tier changes, none otherwise."""

import threading

import dagster as dg
import pandas as pd
import pytest
import sqlalchemy as sa
from fastapi.testclient import TestClient

from lead_scoring_assets.api.app import create_app
from lead_scoring_assets.api.auth import ApiKeys
from lead_scoring_assets.db.score_history import (
    RETENTION_MONTHS_ENV,
    apply_retention,
    ensure_month_partition,
    retention_months_from_environment,
)
from lead_scoring_assets.defs.assets.lead_score_history import (
    ScoreHistoryConfig,
    lead_score_history,
)
from lead_scoring_assets.defs.resources import DatabaseResource
from lead_scoring_assets.scoring.full_rescore import rescore_all
from lead_scoring_assets.scoring.incremental import score_queued

from .conftest import AS_OF


def _history(database) -> pd.DataFrame:
    return database.read_frame(
        "SELECT contact_id, old_total_score, new_total_score, old_quality_tier, "
        "new_quality_tier, calculation_version, run_id FROM lead_score_history ORDER BY id"
    )


def test_full_rescoring_records_first_scores_then_only_changes(demo_database):
    first = rescore_all(demo_database, AS_OF, run_id="run-1")
    history = _history(demo_database)
    assert first.history_rows == len(history) == demo_database.count("contacts")
    assert history["old_total_score"].isna().all() and set(history["run_id"]) == {"run-1"}

    assert rescore_all(demo_database, AS_OF, run_id="run-2").history_rows == 0
    assert len(_history(demo_database)) == len(history)

    later = rescore_all(demo_database, AS_OF + pd.Timedelta(days=60), run_id="run-3")
    changes = _history(demo_database).query("run_id == 'run-3'")
    assert later.history_rows == len(changes) > 0
    assert (changes["old_total_score"] != changes["new_total_score"]).all() or (
        changes["old_quality_tier"] != changes["new_quality_tier"]
    ).any()
    scores = demo_database.read_frame(
        "SELECT contact_id, total_score, quality_tier FROM lead_scores"
    ).set_index("contact_id")
    assert (
        scores.loc[changes["contact_id"], "total_score"].to_numpy()
        == changes["new_total_score"].to_numpy()
    ).all()


def test_incremental_run_records_changes(demo_database):
    rescore_all(demo_database, AS_OF, run_id="full")
    contact_id = int(
        demo_database.read_frame(
            "SELECT contact_id FROM lead_scores WHERE apple_score = 0 AND total_score > 0 "
            "ORDER BY contact_id LIMIT 1"
        )["contact_id"][0]
    )
    before = demo_database.read_frame(
        "SELECT total_score, quality_tier FROM lead_scores WHERE contact_id = :id",
        {"id": contact_id},
    ).iloc[0]
    with demo_database.engine.begin() as connection:
        connection.execute(
            sa.text(
                "INSERT INTO platform_validations (id, contact_id, platform, is_valid, is_business, "
                "is_premium, confidence_score, validated_at) VALUES (:id, :contact, 'apple', :yes, "
                ":yes, :yes, 1.0, :at)"
            ),
            {
                "id": 10**8,
                "contact": contact_id,
                "yes": True,
                "at": demo_database.bind_timestamp(AS_OF),
            },
        )
    report = score_queued(demo_database, AS_OF, owner="incremental-run")
    assert report.history_rows == 1
    row = _history(demo_database).query("run_id == 'incremental-run'").iloc[0]
    assert (row.contact_id, row.old_total_score, row.old_quality_tier) == (
        contact_id,
        before.total_score,
        before.quality_tier,
    )
    assert row.new_total_score > before.total_score
    assert score_queued(demo_database, AS_OF, owner="idle-run").history_rows == 0


def _add_validation(database, contact_id: int, validation_id: int, at) -> None:
    with database.engine.begin() as connection:
        connection.execute(
            sa.text(
                "INSERT INTO platform_validations (id, contact_id, platform, is_valid, is_business, "
                "is_premium, confidence_score, validated_at) VALUES (:id, :contact, 'apple', :yes, "
                ":yes, :yes, 1.0, :at)"
            ),
            {
                "id": validation_id,
                "contact": contact_id,
                "yes": True,
                "at": database.bind_timestamp(at),
            },
        )


def _partition_of_rows(database, run_id: str) -> set[str]:
    return set(
        database.read_frame(
            "SELECT DISTINCT tableoid::regclass::text AS part FROM lead_score_history "
            "WHERE run_id = :run",
            {"run": run_id},
        )["part"]
    )


def test_history_writes_cross_a_month_boundary_and_the_api_reads_both_months(demo_database):
    """Months without a partition yet (PostgreSQL): the writer creates them; the score card
    reads the last changes and the trend across both months."""
    end_of_april = pd.Timestamp("2027-04-30T23:30:00Z")
    first_of_may = pd.Timestamp("2027-05-01T00:30:00Z")
    rescore_all(demo_database, end_of_april, run_id="april")
    contact_id = int(
        demo_database.read_frame(
            "SELECT contact_id FROM lead_scores WHERE apple_score = 0 AND total_score > 0 "
            "ORDER BY contact_id LIMIT 1"
        )["contact_id"][0]
    )
    _add_validation(demo_database, contact_id, 10**8, end_of_april)
    assert score_queued(demo_database, first_of_may, owner="may").history_rows == 1
    if demo_database.dialect == "postgresql":
        assert _partition_of_rows(demo_database, "april") == {"lead_score_history_2027_04"}
        assert _partition_of_rows(demo_database, "may") == {"lead_score_history_2027_05"}
    app = create_app(
        demo_database.url.render_as_string(hide_password=False),
        keys=ApiKeys(read=("key",), admin=()),
        cursor_secret="secret",
    )
    with TestClient(app) as client:
        card = client.get(
            f"/api/v1/lead-scoring/contacts/{contact_id}", headers={"X-API-Key": "key"}
        ).json()
    assert [pd.Timestamp(h["changed_at"]) for h in card["history"]] == [first_of_may, end_of_april]
    assert card["history"][0]["new_total_score"] > card["history"][0]["old_total_score"]
    assert card["trend"] == "improving"


@pytest.mark.parametrize("database_url", ["postgresql"], indirect=True)
def test_two_writers_starting_a_month_create_its_partition_once(database):
    """Two transactions need the same missing month at once: one creates it, the other waits
    for it and writes into it."""
    month = pd.Timestamp("2027-08-01T00:00:00Z")
    first = database.engine.connect()
    first.begin()
    assert ensure_month_partition(first, month) == "lead_score_history_2027_08"
    outcome = {}

    def second_writer() -> None:
        with database.engine.begin() as connection:
            outcome["created"] = ensure_month_partition(connection, month)

    thread = threading.Thread(target=second_writer)
    thread.start()
    thread.join(timeout=1)
    assert thread.is_alive(), "the second writer waits for the first one's partition"
    first.commit()
    first.close()
    thread.join(timeout=30)
    assert outcome == {"created": None}


def _history_at(database, moments: list[pd.Timestamp]) -> None:
    """One history row per moment, contact ids 1, 2, ..."""
    with database.engine.begin() as connection:
        for contact_id, moment in enumerate(moments, start=1):
            if database.dialect == "postgresql":
                ensure_month_partition(connection, moment)
            connection.execute(
                sa.text(
                    "INSERT INTO lead_score_history (contact_id, old_total_score, new_total_score, "
                    "old_quality_tier, new_quality_tier, calculation_version, run_id, changed_at) "
                    "VALUES (:id, NULL, 50, NULL, 'MEDIUM', 'advanced_v1.1', 'seed', :at)"
                ),
                {"id": contact_id, "at": database.bind_timestamp(moment)},
            )


def test_retention_drops_only_the_months_past_the_setting(database):
    months = [
        pd.Timestamp(f"{m}-15T12:00:00Z")
        for m in pd.period_range("2025-06", "2026-11", freq="M").astype(str)
    ]
    edges = [pd.Timestamp("2025-12-31T23:59:59Z"), pd.Timestamp("2026-01-01T00:00:00Z")]
    _history_at(database, months + edges)
    report = apply_retention(database, months=13, now=pd.Timestamp("2027-02-10T08:00:00Z"))
    assert report.kept_from == pd.Timestamp("2026-01-01T00:00:00Z")
    assert report.rows_by_month == {
        "2025-06": 1,
        "2025-07": 1,
        "2025-08": 1,
        "2025-09": 1,
        "2025-10": 1,
        "2025-11": 1,
        "2025-12": 2,
    }
    left = pd.to_datetime(
        database.read_frame("SELECT changed_at FROM lead_score_history ORDER BY changed_at")[
            "changed_at"
        ],
        utc=True,
    )
    assert list(left) == [edges[1]] + months[7:]
    if database.dialect == "postgresql":
        assert report.partitions_created == [
            "lead_score_history_2027_02",
            "lead_score_history_2027_03",
        ]
        names = set(
            database.read_frame(
                "SELECT c.relname FROM pg_inherits i JOIN pg_class c ON c.oid = i.inhrelid "
                "WHERE i.inhparent = 'lead_score_history'::regclass"
            )["relname"]
        )
        assert not {f"lead_score_history_2025_{m:02d}" for m in range(6, 13)} & names
        assert {"lead_score_history_2026_01", "lead_score_history_2027_03"} <= names
    again = apply_retention(database, months=13, now=pd.Timestamp("2027-02-10T08:00:00Z"))
    assert (again.rows_dropped, again.partitions_created) == (0, [])
    _history_at(database, [pd.Timestamp("2027-03-31T23:59:59Z")])
    assert database.count("lead_score_history") == len(left) + 1


def test_retention_months_come_from_the_environment(monkeypatch):
    monkeypatch.delenv(RETENTION_MONTHS_ENV, raising=False)
    assert retention_months_from_environment() == 13
    monkeypatch.setenv(RETENTION_MONTHS_ENV, "24")
    assert retention_months_from_environment() == 24
    for bad in ("0", "-3", "1.5", "a year"):
        monkeypatch.setenv(RETENTION_MONTHS_ENV, bad)
        with pytest.raises(ValueError, match=f"{RETENTION_MONTHS_ENV} must be a whole number"):
            retention_months_from_environment()


def test_the_nightly_job_applies_retention_and_reports_what_it_dropped(database, definitions):
    assert "lead_score_history" in {
        key.to_user_string()
        for key in definitions.resolve_job_def(
            "nightly_retrain_job"
        ).asset_layer.executable_asset_keys
    }
    _history_at(
        database, [pd.Timestamp("2025-01-10T00:00:00Z"), pd.Timestamp("2026-10-10T00:00:00Z")]
    )
    with dg.instance_for_test() as instance:
        result = dg.materialize(
            [lead_score_history],
            instance=instance,
            resources={
                "database": DatabaseResource(url=database.url.render_as_string(hide_password=False))
            },
            run_config=dg.RunConfig(
                {"lead_score_history": ScoreHistoryConfig(as_of="2026-11-25T00:00:00Z")}
            ),
        )
    [event] = result.asset_materializations_for_node("lead_score_history")
    metadata = {key: value.value for key, value in event.metadata.items()}
    assert metadata["retention_months"] == 13
    assert metadata["kept_from"] == "2025-10-01T00:00:00+00:00"
    assert metadata["rows_dropped"] == 1
    assert metadata["rows_dropped_by_month"] == {"2025-01": 1}
    assert database.count("lead_score_history") == 1
