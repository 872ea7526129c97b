"""lead_score_history: a row when a total score or tier changes, none otherwise."""

import pandas as pd
import sqlalchemy as sa

from lead_scoring_assets.scoring.full_rescore import rescore_all
from lead_scoring_assets.scoring.incremental import score_queued

from .conftest import AS_OF


def _history(database) -> pd.DataFrame:
    return database.read_frame(
        "SELECT contact_id, old_total_score, new_total_score, old_quality_tier, "
        "new_quality_tier, calculation_version, run_id FROM lead_score_history ORDER BY id")


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
        changes["old_quality_tier"] != changes["new_quality_tier"]).any()
    scores = demo_database.read_frame("SELECT contact_id, total_score, quality_tier "
                                      "FROM lead_scores").set_index("contact_id")
    assert (scores.loc[changes["contact_id"], "total_score"].to_numpy()
            == changes["new_total_score"].to_numpy()).all()


def test_incremental_run_records_changes(demo_database):
    rescore_all(demo_database, AS_OF, run_id="full")
    contact_id = int(demo_database.read_frame(
        "SELECT contact_id FROM lead_scores WHERE apple_score = 0 AND total_score > 0 "
        "ORDER BY contact_id LIMIT 1")["contact_id"][0])
    before = demo_database.read_frame("SELECT total_score, quality_tier FROM lead_scores "
                                      "WHERE contact_id = :id", {"id": contact_id}).iloc[0]
    with demo_database.engine.begin() as connection:
        connection.execute(sa.text(
            "INSERT INTO platform_validations (id, contact_id, platform, is_valid, is_business, "
            "is_premium, confidence_score, validated_at) VALUES (:id, :contact, 'apple', :yes, "
            ":yes, :yes, 1.0, :at)"),
            {"id": 10**8, "contact": contact_id, "yes": True,
             "at": demo_database.bind_timestamp(AS_OF)})
    report = score_queued(demo_database, AS_OF, owner="incremental-run")
    assert report.history_rows == 1
    row = _history(demo_database).query("run_id == 'incremental-run'").iloc[0]
    assert (row.contact_id, row.old_total_score, row.old_quality_tier) == (
        contact_id, before.total_score, before.quality_tier)
    assert row.new_total_score > before.total_score
    assert score_queued(demo_database, AS_OF, owner="idle-run").history_rows == 0
