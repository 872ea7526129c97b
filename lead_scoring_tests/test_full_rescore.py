"""Full rescoring against real databases (each test on SQLite and PostgreSQL)."""

import json
import multiprocessing
import time

import pandas as pd
import pytest
import sqlalchemy as sa

from lead_scoring_assets.db.database import Database
from lead_scoring_assets.db.tables import CONTACT_COLUMNS, SCORE_COLUMNS, VALIDATION_COLUMNS
from lead_scoring_assets.scoring import full_rescore
from lead_scoring_assets.scoring.engine import score_chunk
from lead_scoring_assets.scoring.explain import explain_contact
from lead_scoring_assets.scoring.full_rescore import read_lada_reference, rescore_all

from .conftest import AS_OF

NUMERIC = [c for c in SCORE_COLUMNS if c.endswith(("_score", "_count")) or c == "confidence_level"]


def _scores(database: Database) -> pd.DataFrame:
    return database.read_frame(
        f"SELECT {', '.join(SCORE_COLUMNS)} FROM lead_scores ORDER BY contact_id"
    )


def _in_memory_scores(database: Database) -> pd.DataFrame:
    contacts = database.read_frame(f"SELECT {', '.join(CONTACT_COLUMNS)} FROM contacts")
    validations = database.read_frame(
        f"SELECT {', '.join(VALIDATION_COLUMNS)} FROM platform_validations"
    )
    return score_chunk(contacts, validations, read_lada_reference(database), AS_OF).scores


def test_every_contact_gets_one_row_equal_to_the_engine(demo_database):
    report = rescore_all(demo_database, AS_OF, chunk_size=700)
    stored = _scores(demo_database)
    expected = _in_memory_scores(demo_database)
    assert report.contacts_scored == demo_database.count("contacts") == len(stored)
    assert stored["contact_id"].is_unique
    assert "phone_e164" not in stored.columns
    for column in NUMERIC + ["quality_tier"]:
        assert stored[column].tolist() == expected[column].tolist(), column
    assert {row["total_score"] for row in map(json.loads, stored["score_breakdown"])} == set(
        stored["total_score"]
    )
    assert set(stored["calculation_method"]) == {"advanced_v1"}
    assert report.tier_counts == stored["quality_tier"].value_counts().to_dict()


def test_chunk_size_does_not_change_scores(demo_database):
    rescore_all(demo_database, AS_OF, chunk_size=3_000)
    whole = _scores(demo_database)
    rescore_all(demo_database, AS_OF, chunk_size=97)
    pd.testing.assert_frame_equal(whole, _scores(demo_database))


def test_malformed_rows_kept_with_reason_idempotently(demo_database):
    first = rescore_all(demo_database, AS_OF)
    kept = demo_database.read_frame(
        "SELECT validation_id, reason, platform, confidence_score FROM malformed_validations "
        "ORDER BY validation_id"
    )
    assert len(kept) == sum(first.malformed_by_reason.values()) > 0
    assert set(kept["reason"]) == set(first.malformed_by_reason)
    assert len(set(kept["reason"])) == 6
    rescore_all(demo_database, AS_OF)
    again = demo_database.read_frame(
        "SELECT validation_id, reason, platform, confidence_score FROM malformed_validations "
        "ORDER BY validation_id"
    )
    pd.testing.assert_frame_equal(kept, again)
    assert demo_database.count("platform_validations") > len(kept)


def test_last_platform_validation_is_kept_up_to_date(demo_database):
    with demo_database.engine.begin() as connection:
        connection.execute(sa.text("UPDATE contacts SET last_platform_validation = NULL"))
    report = rescore_all(demo_database, AS_OF)
    assert report.last_validation_updates > 0
    stored = demo_database.read_frame(
        "SELECT c.id, c.last_platform_validation, max(v.validated_at) AS latest "
        "FROM contacts c JOIN platform_validations v ON v.contact_id = c.id "
        "WHERE v.platform IN ('whatsapp','instagram','facebook','google','apple') "
        "AND v.is_valid IS NOT NULL AND v.validated_at IS NOT NULL "
        "AND v.confidence_score BETWEEN 0 AND 1 GROUP BY c.id, c.last_platform_validation"
    )
    assert (
        pd.to_datetime(stored["last_platform_validation"], utc=True, format="ISO8601")
        == pd.to_datetime(stored["latest"], utc=True, format="ISO8601")
    ).all()
    assert rescore_all(demo_database, AS_OF).last_validation_updates == 0


def test_failed_run_leaves_previous_scores_intact(demo_database, monkeypatch):
    rescore_all(demo_database, AS_OF)
    before = _scores(demo_database)
    calls = {"n": 0}
    real = full_rescore.score_chunk

    def failing(*args, **kwargs):
        calls["n"] += 1
        if calls["n"] == 2:
            raise RuntimeError("scorer crashed mid-run")
        return real(*args, **kwargs)

    monkeypatch.setattr(full_rescore, "score_chunk", failing)
    with pytest.raises(RuntimeError, match="mid-run"):
        rescore_all(demo_database, AS_OF + pd.Timedelta(days=30), chunk_size=500)
    pd.testing.assert_frame_equal(before, _scores(demo_database))
    assert not sa.inspect(demo_database.engine).has_table("lead_scores_next")


def test_explain_reproduces_the_stored_breakdown(demo_database):
    rescore_all(demo_database, AS_OF)
    stored = _scores(demo_database).set_index("contact_id")
    for contact_id in stored.sort_values("total_score").index[[0, len(stored) // 2, -1]]:
        explanation = explain_contact(demo_database, int(contact_id))
        assert explanation.breakdown == json.loads(stored.loc[contact_id, "score_breakdown"])
        assert explanation.score["total_score"] == stored.loc[contact_id, "total_score"]
        assert f"{stored.loc[contact_id, 'total_score']}/100" in explanation.render()
    with pytest.raises(LookupError, match="no contact"):
        explain_contact(demo_database, 10**12)


def _rescore_forever(url: str) -> None:
    rescore_all(Database(url), AS_OF + pd.Timedelta(days=1), chunk_size=50)


@pytest.mark.parametrize("database_url", ["postgresql"], indirect=True)
def test_killed_run_leaves_previous_scores_intact(demo_database, database_url):
    rescore_all(demo_database, AS_OF)
    before = _scores(demo_database)
    process = multiprocessing.get_context("spawn").Process(
        target=_rescore_forever, args=(database_url,)
    )
    process.start()
    deadline = time.monotonic() + 60
    staged = 0
    while time.monotonic() < deadline and not staged:
        time.sleep(0.05)
        if sa.inspect(demo_database.engine).has_table("lead_scores_next"):
            staged = demo_database.count("lead_scores_next")
    process.kill()
    process.join()
    assert staged > 0, "the run never started writing"
    pd.testing.assert_frame_equal(before, _scores(demo_database))
    report = rescore_all(demo_database, AS_OF)
    assert report.contacts_scored == len(before)
    pd.testing.assert_frame_equal(before, _scores(demo_database))


@pytest.mark.parametrize("database_url", ["postgresql"], indirect=True)
def test_concurrent_full_rescore_is_refused(demo_database):
    from lead_scoring_assets.db.score_swap import ScoreSwap

    with ScoreSwap(demo_database), pytest.raises(RuntimeError, match="another full rescoring"):
        rescore_all(demo_database, AS_OF)


def test_validation_rows_outside_every_contact_range_are_reported(demo_database):
    rows = demo_database.read_frame(
        f"SELECT {', '.join(VALIDATION_COLUMNS)} FROM platform_validations "
        "WHERE is_valid IS NOT NULL ORDER BY id LIMIT 3"
    )
    top = int(demo_database.read_frame("SELECT max(id) AS m FROM platform_validations")["m"][0])
    rows["id"] = [top + 1, top + 2, top + 3]
    rows["contact_id"] = pd.array([-5, None, 10**12], dtype="Int64")
    demo_database.append_frame("platform_validations", rows)
    rescore_all(demo_database, AS_OF, chunk_size=400)
    kept = demo_database.read_frame(
        "SELECT validation_id, reason FROM malformed_validations WHERE validation_id > :top",
        {"top": top},
    )
    assert sorted(kept["validation_id"]) == [top + 1, top + 2, top + 3]
    assert set(kept["reason"]) == {"unknown_contact"}
