"""Queue triggers and incremental scoring on real databases (SQLite and PostgreSQL)."""

import multiprocessing
import threading
import time

import pandas as pd
import pytest
import sqlalchemy as sa

from lead_scoring_assets.db.database import Database
from lead_scoring_assets.db.score_swap import ScoreSwap
from lead_scoring_assets.db.scoring_queue import ScoringQueue
from lead_scoring_assets.db.tables import SCORE_COLUMNS
from lead_scoring_assets.scoring import incremental
from lead_scoring_assets.scoring.full_rescore import rescore_all
from lead_scoring_assets.scoring.incremental import score_queued

from .conftest import AS_OF

LATER = AS_OF + pd.Timedelta(days=2)


def _queue(database: Database) -> pd.DataFrame:
    return database.read_frame(
        "SELECT contact_id, priority, version, attempts, updated_at FROM scoring_queue "
        "ORDER BY contact_id"
    ).set_index("contact_id")


def _execute(database: Database, sql: str, params: dict | None = None) -> None:
    with database.engine.begin() as connection:
        connection.execute(sa.text(sql), params or {})


def _add_validation(database: Database, contact_id, validation_id: int, platform="instagram",
                    days_ago: int = 0) -> None:
    _execute(database,
             "INSERT INTO platform_validations (id, contact_id, platform, is_valid, is_business, "
             "is_premium, confidence_score, validated_at) VALUES (:id, :contact, :platform, "
             ":yes, :yes, :no, 0.97, :at)",
             {"id": validation_id, "contact": contact_id, "platform": platform, "yes": True,
              "no": False, "at": database.bind_timestamp(LATER - pd.Timedelta(days=days_ago))})


def _scores(database: Database, ids) -> pd.DataFrame:
    frame = database.read_frame(
        f"SELECT {', '.join(SCORE_COLUMNS)} FROM lead_scores ORDER BY contact_id")
    return frame[frame["contact_id"].isin(list(ids))].reset_index(drop=True)


def test_triggers_enqueue_once_per_contact_and_raise_priority(database):
    _execute(database, "INSERT INTO contacts (id, phone_e164, full_name) VALUES "
                       "(1, '+523300000001', 'A'), (2, '+523300000002', 'B')")
    _execute(database, "DELETE FROM scoring_queue")
    _add_validation(database, 1, 10)
    first = _queue(database).loc[1]
    assert (first.priority, first.version) == (5, 1)
    _add_validation(database, 1, 11, platform="google")
    second = _queue(database).loc[1]
    assert len(_queue(database)) == 1
    assert (second.priority, second.version) == (6, 2)
    assert pd.Timestamp(second.updated_at) >= pd.Timestamp(first.updated_at)

    _execute(database, "UPDATE contacts SET last_platform_validation = :t",
             {"t": database.bind_timestamp(AS_OF)})
    assert list(_queue(database).index) == [1]
    _execute(database, "UPDATE contacts SET state_name = 'Jalisco' WHERE id = 2")
    assert _queue(database).loc[2].priority == 3
    _execute(database, "DELETE FROM scoring_queue")
    _execute(database, "UPDATE contacts SET phone_e164 = '+523300000009' WHERE id = 1")
    assert list(_queue(database).index) == [1]
    _execute(database, "DELETE FROM scoring_queue")
    _execute(database, "DELETE FROM platform_validations WHERE id = 11")
    _add_validation(database, None, 12)
    assert list(_queue(database).index) == [1]
    for _ in range(8):
        _add_validation(database, 1, 100 + _)
    assert _queue(database).loc[1].priority == 10


def test_incremental_score_equals_full_rescoring_for_the_same_as_of(demo_database):
    rescore_all(demo_database, AS_OF)
    assert demo_database.count("scoring_queue") == 0
    top = int(demo_database.read_frame("SELECT max(id) AS m FROM platform_validations")["m"][0])
    for i, contact_id in enumerate(range(1, 60, 2)):
        _add_validation(demo_database, contact_id, top + 1 + i, days_ago=i % 7)
    _execute(demo_database, "UPDATE contacts SET lada = '999' WHERE id BETWEEN 100 AND 110")
    _execute(demo_database, "DELETE FROM platform_validations WHERE contact_id BETWEEN 200 AND 205")
    _add_validation(demo_database, 10**9, top + 500)
    queued = set(_queue(demo_database).index)
    assert set(range(1, 60, 2)) | {10**9} <= queued <= set(range(1, 60, 2)) | set(
        range(100, 111)) | set(range(200, 206)) | {10**9}
    assert len(queued) > 40

    report = score_queued(demo_database, LATER, owner="run-a", batch_size=1_000)
    assert (report.claimed, report.removed) == (len(queued), len(queued))
    assert demo_database.count("scoring_queue") == 0
    incremental_rows = _scores(demo_database, queued)
    rescore_all(demo_database, LATER)
    pd.testing.assert_frame_equal(incremental_rows, _scores(demo_database, queued))
    orphan = demo_database.read_frame(
        "SELECT reason FROM malformed_validations WHERE validation_id = :id", {"id": top + 500})
    assert orphan["reason"].tolist() == ["unknown_contact"]


def test_contact_enqueued_again_while_in_flight_is_scored_by_a_later_run(demo_database):
    rescore_all(demo_database, AS_OF)
    _add_validation(demo_database, 5, 10**8)
    queue = ScoringQueue(demo_database)
    claimed = queue.claim("run-a", 10, lease_seconds=60)
    contacts, validations = queue.read_batch("run-a")
    _add_validation(demo_database, 5, 10**8 + 1, platform="apple")
    result = incremental.score_chunk(
        contacts, validations, incremental.read_lada_reference(demo_database), LATER)
    removed, _ = queue.complete("run-a", claimed, result.scores, result.malformed,
                             pd.DataFrame(), LATER)
    assert removed == 0
    assert queue.depth().claimable == 1
    report = score_queued(demo_database, LATER, owner="run-b")
    assert report.removed == 1
    assert _scores(demo_database, [5])["apple_score"].iloc[0] > 0


def test_lease_expires_and_entries_are_claimable_again(demo_database):
    rescore_all(demo_database, AS_OF)
    for i in range(3):
        _add_validation(demo_database, 20 + i, 10**8 + i)
    queue = ScoringQueue(demo_database)
    assert len(queue.claim("crashed-run", 10, lease_seconds=1)) == 3
    assert queue.claim("other-run", 10, lease_seconds=60).empty
    assert queue.depth().leased == 3
    time.sleep(1.2)
    assert sorted(queue.claim("other-run", 10, lease_seconds=60)["contact_id"]) == [20, 21, 22]


def test_failing_contact_is_retried_then_dead_lettered(demo_database, monkeypatch):
    rescore_all(demo_database, AS_OF)
    for i, contact_id in enumerate((30, 31, 32)):
        _add_validation(demo_database, contact_id, 10**8 + i)
    real = incremental.score_chunk

    def fails_for_31(contacts, *args, **kwargs):
        if 31 in set(contacts["id"]):
            raise ValueError("cannot score contact 31")
        return real(contacts, *args, **kwargs)

    monkeypatch.setattr(incremental, "score_chunk", fails_for_31)
    first = score_queued(demo_database, LATER, owner="run-1")
    assert (first.scored, list(first.failed)) == (2, [31])
    assert first.batch_error == "ValueError: cannot score contact 31"
    assert _queue(demo_database).loc[31].attempts == 1
    for attempt in (2, 3):
        report = score_queued(demo_database, LATER, owner=f"run-{attempt}")
    assert report.dead_lettered == 1
    assert demo_database.count("scoring_queue") == 0
    dead = demo_database.read_frame("SELECT contact_id, attempts, last_error FROM "
                                    "scoring_dead_letters")
    assert dead.values.tolist() == [[31, 3, "ValueError: cannot score contact 31"]]


@pytest.mark.parametrize("database_url", ["postgresql"], indirect=True)
def test_concurrent_runs_neither_lose_nor_double_score(demo_database, database_url):
    rescore_all(demo_database, AS_OF)
    top = int(demo_database.read_frame("SELECT max(id) AS m FROM platform_validations")["m"][0])
    for i in range(400):
        _add_validation(demo_database, 1 + i * 7, top + 1 + i)
    queued = set(_queue(demo_database).index)
    claims: dict[str, list] = {}
    original = ScoringQueue.claim

    def recording_claim(self, owner, batch_size, lease_seconds):
        claimed = original(self, owner, batch_size, lease_seconds)
        claims.setdefault(owner, []).extend(claimed["contact_id"])
        return claimed

    ScoringQueue.claim = recording_claim
    try:
        def worker(owner: str) -> None:
            db = Database(database_url)
            while score_queued(db, LATER, owner=owner, batch_size=37).claimed:
                pass
            db.dispose()

        threads = [threading.Thread(target=worker, args=(f"run-{i}",)) for i in range(2)]
        for thread in threads:
            thread.start()
        for thread in threads:
            thread.join()
    finally:
        ScoringQueue.claim = original
    first, second = (set(claims.get(f"run-{i}", [])) for i in range(2))
    assert first and second, "both runs took work"
    assert not first & second
    assert first | second == queued
    assert demo_database.count("scoring_queue") == 0
    incremental_rows = _scores(demo_database, queued)
    rescore_all(demo_database, LATER)
    pd.testing.assert_frame_equal(incremental_rows, _scores(demo_database, queued))


def _claim_and_hang(url: str) -> None:
    def hang(*args, **kwargs):
        time.sleep(600)

    incremental.score_chunk = hang
    score_queued(Database(url), LATER, owner="doomed-run", lease_seconds=2)


@pytest.mark.parametrize("database_url", ["postgresql"], indirect=True)
def test_run_killed_mid_batch_loses_nothing(demo_database, database_url):
    rescore_all(demo_database, AS_OF)
    for i in range(5):
        _add_validation(demo_database, 40 + i, 10**8 + i)
    before = _scores(demo_database, range(40, 45))
    process = multiprocessing.get_context("spawn").Process(target=_claim_and_hang,
                                                           args=(database_url,))
    process.start()
    queue = ScoringQueue(demo_database)
    deadline = time.monotonic() + 60
    while queue.depth().leased < 5 and time.monotonic() < deadline:
        time.sleep(0.05)
    process.kill()
    process.join()
    assert queue.depth().leased == 5
    pd.testing.assert_frame_equal(before, _scores(demo_database, range(40, 45)))
    time.sleep(2.1)
    report = score_queued(demo_database, LATER, owner="next-run")
    assert (report.claimed, report.removed) == (5, 5)
    assert (_scores(demo_database, range(40, 45))["instagram_score"] > 0).all()


@pytest.mark.parametrize("database_url", ["postgresql"], indirect=True)
def test_incremental_runs_wait_while_a_full_rescoring_runs(demo_database):
    rescore_all(demo_database, AS_OF)
    _add_validation(demo_database, 3, 10**8)
    with pytest.raises(RuntimeError, match="abort"), ScoreSwap(demo_database):
        report = score_queued(demo_database, LATER, owner="run-a")
        raise RuntimeError("abort the full rescoring")
    assert report.skipped_reason and report.claimed == 0
    assert score_queued(demo_database, LATER, owner="run-a").removed == 1


def test_full_rescoring_settles_the_queue_entries_it_covered(demo_database):
    assert demo_database.count("scoring_queue") >= demo_database.count("contacts")
    rescore_all(demo_database, AS_OF)
    assert demo_database.count("scoring_queue") == 0
