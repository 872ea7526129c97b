"""Full rescoring against real databases (each test on SQLite and PostgreSQL)."""

import multiprocessing
import time

import pandas as pd
import pytest
import sqlalchemy as sa

from lead_scoring_assets.db.bucket_inputs import SPILL_DIR_ENV, SPILL_PREFIX, spill_root
from lead_scoring_assets.db.buckets import BUCKET_COUNT
from lead_scoring_assets.db.database import Database
from lead_scoring_assets.db.score_swap import ScoreSwap, staged_scores
from lead_scoring_assets.db.tables import CONTACT_COLUMNS, SCORE_COLUMNS, VALIDATION_COLUMNS
from lead_scoring_assets.db.writer_lock import LockBusy
from lead_scoring_assets.scoring import full_rescore
from lead_scoring_assets.scoring.breakdown import breakdown_of
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
    for row in stored.to_dict("records"):
        parts = breakdown_of(row)
        assert (
            min(100, sum(parts["adjusted_scores"].values()) + parts["bonus"]["total"])
            == (row["total_score"])
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
    assert len(set(kept["reason"])) == 7
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
        "AND v.confidence_score BETWEEN 0 AND 1 AND v.validated_at <= :as_of "
        "GROUP BY c.id, c.last_platform_validation",
        {"as_of": demo_database.bind_timestamp(AS_OF)},
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
    assert not sa.inspect(demo_database.engine).has_table("lead_scores_p00_next")


def test_explain_reproduces_the_stored_breakdown(demo_database):
    rescore_all(demo_database, AS_OF)
    stored = _scores(demo_database).set_index("contact_id")
    for contact_id in stored.sort_values("total_score").index[[0, len(stored) // 2, -1]]:
        explanation = explain_contact(demo_database, int(contact_id))
        row = {**stored.loc[contact_id].to_dict(), "contact_id": contact_id}
        assert explanation.breakdown == breakdown_of(row)
        assert explanation.score["total_score"] == stored.loc[contact_id, "total_score"]
        assert f"{stored.loc[contact_id, 'total_score']}/100" in explanation.render()
    with pytest.raises(LookupError, match="no contact"):
        explain_contact(demo_database, 10**12)


KILLED_RUN_LEASE = 5
"""Seconds: long enough for the run to renew under a loaded test machine (1 s once expired
before the kill, and the run stopped by itself), short for the next run to wait out."""


def _rescore_forever(url: str) -> None:
    rescore_all(
        Database(url), AS_OF + pd.Timedelta(days=1), chunk_size=50, lease_seconds=KILLED_RUN_LEASE
    )


@pytest.mark.parametrize("database_url", ["postgresql"], indirect=True)
def test_killed_run_leaves_previous_scores_intact(
    demo_database, database_url, tmp_path, monkeypatch
):
    monkeypatch.setenv(SPILL_DIR_ENV, str(tmp_path))
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
        if sa.inspect(demo_database.engine).has_table("lead_scores_p00_next"):
            staged = demo_database.count("lead_scores_p00_next")
    assert process.is_alive(), "the run stopped before it was killed"
    process.kill()
    process.join()
    assert staged > 0, "the run never started writing"
    pd.testing.assert_frame_equal(before, _scores(demo_database))
    left = list(spill_root().glob(f"{SPILL_PREFIX}{process.pid}_*"))
    assert left, "the killed run's spill folder (names and addresses) is left behind"
    time.sleep(KILLED_RUN_LEASE + 0.1)
    report = rescore_all(demo_database, AS_OF)
    assert report.contacts_scored == len(before)
    pd.testing.assert_frame_equal(before, _scores(demo_database))
    assert not any(folder.exists() for folder in left), "the next run deletes it"


def test_concurrent_full_rescore_is_refused(demo_database):
    with (
        ScoreSwap(demo_database, run_id="first").stage(),
        pytest.raises(LockBusy, match="another run holds lead_scores"),
    ):
        rescore_all(demo_database, AS_OF, run_id="second")


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


def _insert_validation(
    database: Database, id: int, contact_id, validated_at, valid=True, platform="whatsapp"
) -> None:
    with database.engine.begin() as connection:
        connection.execute(
            sa.text(
                "INSERT INTO platform_validations (id, contact_id, platform, is_valid, is_business, "
                "is_premium, confidence_score, validated_at) VALUES (:id, :contact, :platform, "
                ":valid, :no, :no, 0.9, :at)"
            ),
            {
                "id": id,
                "contact": contact_id,
                "platform": platform,
                "valid": valid,
                "no": False,
                "at": database.bind_timestamp(validated_at),
            },
        )


def test_rows_dated_after_as_of_take_no_part_and_old_as_of_is_reproducible(demo_database):
    """Scoring an old as_of on today's database reproduces that day's scores; published, they
    replace no score of a later as_of."""
    rescore_all(demo_database, AS_OF)
    that_day = _scores(demo_database)
    _insert_validation(demo_database, 10**8, 11, AS_OF + pd.Timedelta(hours=2), valid=False)
    _insert_validation(
        demo_database, 10**8 + 1, 12, pd.Timestamp("2099-01-01T00:00:00Z"), valid=False
    )
    for i in range(20):
        _insert_validation(
            demo_database, 10**8 + 10 + i, 100 + i, AS_OF + pd.Timedelta(days=3), platform="apple"
        )
    report = rescore_all(demo_database, AS_OF)
    assert report.rows_after_as_of == 1
    assert report.malformed_by_reason["validated_in_future"] >= 21
    pd.testing.assert_frame_equal(that_day, _scores(demo_database))
    latest = demo_database.read_frame("SELECT max(last_platform_validation) AS m FROM contacts")
    assert pd.Timestamp(latest["m"][0]).tz_localize(None) <= AS_OF.tz_localize(None)
    kept = demo_database.read_frame(
        "SELECT reason FROM malformed_validations WHERE validation_id = :id", {"id": 10**8 + 1}
    )
    assert kept["reason"].tolist() == ["validated_in_future"]
    later = rescore_all(demo_database, AS_OF + pd.Timedelta(days=4))
    assert later.rows_after_as_of == 0
    later_scores = _scores(demo_database)
    assert not later_scores.equals(that_day)
    full_rescore.stage_rescore(demo_database, AS_OF, run_id="that-day-again")
    staged = demo_database.read_frame(
        " UNION ALL ".join(
            f"SELECT {', '.join(SCORE_COLUMNS)} FROM {staged_scores(b)}"
            for b in range(BUCKET_COUNT)
        )
        + " ORDER BY contact_id"
    )
    pd.testing.assert_frame_equal(that_day, staged)
    swap = full_rescore.publish_rescore(demo_database, "that-day-again")
    assert swap.kept_newer_scores == len(later_scores)
    pd.testing.assert_frame_equal(later_scores, _scores(demo_database))


def test_ids_above_two_to_the_53_stay_exact_next_to_a_null_contact_id(database):
    huge = [2**60 + 1, 2**60 + 2, 2**60 + 3]
    with database.engine.begin() as connection:
        for contact_id in huge:
            connection.execute(
                sa.text(
                    "INSERT INTO contacts (id, phone_e164, full_name) VALUES (:id, :phone, 'X')"
                ),
                {"id": contact_id, "phone": f"+52331000000{contact_id % 10}"},
            )
    for i, contact_id in enumerate(huge):
        _insert_validation(
            database,
            10 + i,
            contact_id,
            AS_OF - pd.Timedelta(days=1),
            platform=("whatsapp", "apple", "google")[i],
        )
    _insert_validation(database, 99, None, AS_OF - pd.Timedelta(days=1))
    report = rescore_all(database, AS_OF, chunk_size=2)
    assert report.malformed_by_reason == {"unknown_contact": 1}
    scores = _scores(database).set_index("contact_id")
    assert list(scores.index) == huge
    per_contact = [
        scores.loc[c, f"{p}_score"] for c, p in zip(huge, ("whatsapp", "apple", "google"))
    ]
    assert per_contact[0] > 0 and per_contact == [per_contact[0]] * 3
    contacts = database.read_frame("SELECT id FROM contacts ORDER BY id")
    assert contacts["id"].tolist() == huge
