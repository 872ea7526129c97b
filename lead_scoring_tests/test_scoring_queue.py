"""Queue triggers and incremental scoring on real databases (SQLite and PostgreSQL)."""

import multiprocessing
import random
import re
import threading
import time

import pandas as pd
import pytest
import sqlalchemy as sa

from lead_scoring_assets.db.buckets import bucket_sql
from lead_scoring_assets.db.database import Database
from lead_scoring_assets.db.score_swap import ScoreSwap
from lead_scoring_assets.db.scoring_queue import (
    CLAIM_GROUPS,
    CLAIM_ORDER,
    GROUP_ORDER,
    LOST_WORKER_ERROR,
    ScoringQueue,
)
from lead_scoring_assets.db.tables import SCORE_COLUMNS
from lead_scoring_assets.scoring import full_rescore, incremental
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


def _add_validation(
    database: Database, contact_id, validation_id: int, platform="instagram", days_ago: int = 0
) -> None:
    _execute(
        database,
        "INSERT INTO platform_validations (id, contact_id, platform, is_valid, is_business, "
        "is_premium, confidence_score, validated_at) VALUES (:id, :contact, :platform, "
        ":yes, :yes, :no, 0.97, :at)",
        {
            "id": validation_id,
            "contact": contact_id,
            "platform": platform,
            "yes": True,
            "no": False,
            "at": database.bind_timestamp(LATER - pd.Timedelta(days=days_ago)),
        },
    )


def _scores(database: Database, ids) -> pd.DataFrame:
    frame = database.read_frame(
        f"SELECT {', '.join(SCORE_COLUMNS)} FROM lead_scores ORDER BY contact_id"
    )
    return frame[frame["contact_id"].isin(list(ids))].reset_index(drop=True)


def test_triggers_enqueue_once_per_contact_and_raise_priority(database):
    _execute(
        database,
        "INSERT INTO contacts (id, phone_e164, full_name) VALUES "
        "(1, '+523300000001', 'A'), (2, '+523300000002', 'B')",
    )
    _execute(database, "DELETE FROM scoring_queue")
    _add_validation(database, 1, 10)
    first = _queue(database).loc[1]
    assert (first.priority, first.version) == (5, 1)
    _add_validation(database, 1, 11, platform="google")
    second = _queue(database).loc[1]
    assert len(_queue(database)) == 1
    assert (second.priority, second.version) == (6, 2)
    assert pd.Timestamp(second.updated_at) >= pd.Timestamp(first.updated_at)

    _execute(
        database,
        "UPDATE contacts SET last_platform_validation = :t",
        {"t": database.bind_timestamp(AS_OF)},
    )
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
    assert (
        set(range(1, 60, 2)) | {10**9}
        <= queued
        <= set(range(1, 60, 2)) | set(range(100, 111)) | set(range(200, 206)) | {10**9}
    )
    assert len(queued) > 40

    report = score_queued(demo_database, LATER, owner="run-a", batch_size=1_000)
    assert (report.claimed, report.removed) == (len(queued), len(queued))
    assert demo_database.count("scoring_queue") == 0
    incremental_rows = _scores(demo_database, queued)
    rescore_all(demo_database, LATER)
    pd.testing.assert_frame_equal(incremental_rows, _scores(demo_database, queued))
    orphan = demo_database.read_frame(
        "SELECT reason FROM malformed_validations WHERE validation_id = :id", {"id": top + 500}
    )
    assert orphan["reason"].tolist() == ["unknown_contact"]


def test_contact_enqueued_again_while_in_flight_is_scored_by_a_later_run(demo_database):
    rescore_all(demo_database, AS_OF)
    _add_validation(demo_database, 5, 10**8)
    queue = ScoringQueue(demo_database)
    claimed = queue.claim("run-a", 10, lease_seconds=60)
    contacts, validations = queue.read_batch("run-a")
    _add_validation(demo_database, 5, 10**8 + 1, platform="apple")
    result = incremental.score_chunk(
        contacts, validations, incremental.read_lada_reference(demo_database), LATER
    )
    settlement = queue.complete(
        "run-a", claimed, result.scores, result.malformed, pd.DataFrame(), LATER
    )
    assert (settlement.removed, settlement.scored) == (0, 0)
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
    dead = demo_database.read_frame(
        "SELECT contact_id, attempts, last_error FROM scoring_dead_letters"
    )
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


def _claim_and_hang(url: str, owner: str = "doomed-run", lease_seconds: int = 2) -> None:
    def hang(*args, **kwargs):
        time.sleep(600)

    incremental.score_chunk = hang
    score_queued(Database(url), LATER, owner=owner, lease_seconds=lease_seconds)


def _kill_once_claimed(
    database: Database, database_url: str, owner: str, leased: int, lease_seconds: int = 2
) -> None:
    """Run ``_claim_and_hang`` in a real second process and SIGKILL it once it holds
    ``leased`` entries."""
    process = multiprocessing.get_context("spawn").Process(
        target=_claim_and_hang, args=(database_url, owner, lease_seconds)
    )
    process.start()
    queue = ScoringQueue(database)
    deadline = time.monotonic() + 60
    while queue.depth().leased < leased and time.monotonic() < deadline:
        time.sleep(0.05)
    process.kill()
    process.join()
    assert queue.depth().leased == leased, "the worker never claimed its batch"


def test_run_killed_mid_batch_loses_nothing(demo_database, database_url):
    rescore_all(demo_database, AS_OF)
    for i in range(5):
        _add_validation(demo_database, 40 + i, 10**8 + i)
    before = _scores(demo_database, range(40, 45))
    _kill_once_claimed(demo_database, database_url, "doomed-run", leased=5)
    pd.testing.assert_frame_equal(before, _scores(demo_database, range(40, 45)))
    time.sleep(2.1)
    report = score_queued(demo_database, LATER, owner="next-run")
    assert (report.claimed, report.removed) == (5, 5)
    assert (_scores(demo_database, range(40, 45))["instagram_score"] > 0).all()


def test_incremental_runs_wait_while_a_full_rescoring_runs(demo_database):
    rescore_all(demo_database, AS_OF)
    _add_validation(demo_database, 3, 10**8)
    with pytest.raises(RuntimeError, match="abort"), ScoreSwap(demo_database).stage():
        report = score_queued(demo_database, LATER, owner="run-a")
        raise RuntimeError("abort the full rescoring")
    assert report.skipped_reason and report.claimed == 0
    assert score_queued(demo_database, LATER, owner="run-a").removed == 1


def test_full_rescoring_settles_the_queue_entries_it_covered(demo_database):
    assert demo_database.count("scoring_queue") >= demo_database.count("contacts")
    rescore_all(demo_database, AS_OF)
    assert demo_database.count("scoring_queue") == 0


def test_a_batch_that_kills_its_worker_three_times_is_dead_lettered(demo_database, database_url):
    rescore_all(demo_database, AS_OF)
    for i in range(3):
        _add_validation(demo_database, 50 + i, 10**8 + i)
    for attempt in range(3):
        _kill_once_claimed(
            demo_database, database_url, f"killed-{attempt}", leased=3, lease_seconds=1
        )
        time.sleep(1.1)
    assert _queue(demo_database)["attempts"].tolist() == [3, 3, 3]
    report = score_queued(demo_database, LATER, owner="survivor")
    assert report.claimed == 0
    assert demo_database.count("scoring_queue") == 0
    dead = demo_database.read_frame(
        "SELECT contact_id, attempts, last_error FROM scoring_dead_letters ORDER BY contact_id"
    )
    assert dead["contact_id"].tolist() == [50, 51, 52]
    assert set(dead["attempts"]) == {3}
    assert set(dead["last_error"]) == {LOST_WORKER_ERROR}


def test_a_run_settling_after_its_lease_expired_changes_nothing_a_later_run_stored(demo_database):
    rescore_all(demo_database, AS_OF)
    _add_validation(demo_database, 60, 10**8)
    _add_validation(demo_database, 61, 10**8 + 1, platform="apple")
    queue = ScoringQueue(demo_database)
    late = queue.claim("late-run", 10, lease_seconds=1)
    contacts, validations = queue.read_batch("late-run")
    late_result = incremental.score_chunk(
        contacts, validations, incremental.read_lada_reference(demo_database), LATER
    )
    time.sleep(1.2)
    later = score_queued(demo_database, LATER + pd.Timedelta(hours=1), owner="later-run")
    assert later.removed == 2
    stored = _scores(demo_database, [60, 61])
    history = demo_database.count("lead_score_history")
    settlement = queue.complete(
        "late-run", late, late_result.scores, late_result.malformed, pd.DataFrame(), LATER
    )
    assert (settlement.scored, settlement.removed, settlement.skipped_lost_lease) == (0, 0, 2)
    pd.testing.assert_frame_equal(stored, _scores(demo_database, [60, 61]))
    assert demo_database.count("lead_score_history") == history
    assert demo_database.count("scoring_queue") == 0


def test_a_score_of_a_later_as_of_is_never_replaced(demo_database):
    rescore_all(demo_database, AS_OF)
    _add_validation(demo_database, 62, 10**8)
    newer = LATER + pd.Timedelta(days=1)
    _execute(
        demo_database,
        "UPDATE lead_scores SET last_calculated_at = :at, total_score = 1, "
        "quality_tier = 'POOR' WHERE contact_id = 62",
        {"at": demo_database.bind_timestamp(newer)},
    )
    stored = _scores(demo_database, [62])
    report = score_queued(demo_database, LATER, owner="older-run")
    assert (report.scored, report.skipped_newer_score, report.removed) == (0, 1, 0)
    pd.testing.assert_frame_equal(stored, _scores(demo_database, [62]))
    assert _queue(demo_database).loc[62].attempts == 0
    assert score_queued(demo_database, newer + pd.Timedelta(hours=1), owner="newer").scored == 1


def test_claim_order_is_the_same_on_both_dialects(database):
    _execute(
        database,
        "INSERT INTO contacts (id, phone_e164) VALUES (1, '+523300000001'), "
        "(2, '+523300000002'), (3, '+523300000003'), (4, '+523300000004')",
    )
    _execute(database, "DELETE FROM scoring_queue")
    base = pd.Timestamp("2026-11-20T00:00:00Z")
    for contact_id, priority, minutes, leased in (
        (1, 5, 10, False),
        (2, 10, 20, False),
        (3, 3, 30, True),
        (4, 5, 0, False),
    ):
        _execute(
            database,
            "INSERT INTO scoring_queue (contact_id, priority, created_at, updated_at, "
            "leased_by, leased_until) VALUES (:id, :priority, :at, :at, :by, :until)",
            {
                "id": contact_id,
                "priority": priority,
                "at": database.bind_timestamp(base + pd.Timedelta(minutes=minutes)),
                "by": "crashed" if leased else None,
                "until": database.bind_timestamp(base) if leased else None,
            },
        )
    queue = ScoringQueue(database)
    order = [int(queue.claim(f"run-{i}", 1, 60)["contact_id"].iloc[0]) for i in range(4)]
    assert order == [3, 2, 4, 1]


def test_isolating_one_bad_contact_costs_a_few_times_the_batch(demo_database, monkeypatch):
    contacts = demo_database.read_frame("SELECT * FROM contacts ORDER BY id LIMIT 1000")
    validations = demo_database.read_frame(
        "SELECT * FROM platform_validations WHERE contact_id <= :top",
        {"top": int(contacts["id"].max())},
    )
    real = incremental.score_chunk
    rows_scored = []

    def one_bad_contact(part, *args, **kwargs):
        rows_scored.append(len(part))
        if 500 in set(part["id"]):
            raise ValueError("contact 500 cannot be scored")
        return real(part, *args, **kwargs)

    monkeypatch.setattr(incremental, "score_chunk", one_bad_contact)
    chunks, errors, batch_error = incremental._score_isolating_failures(
        contacts,
        validations,
        incremental.read_lada_reference(demo_database),
        LATER,
        incremental.DEFAULT_CONFIG,
    )
    assert list(errors) == [500] and batch_error
    assert sum(len(c.scores) for c in chunks) == 999
    assert sum(rows_scored) <= 4 * len(contacts)
    assert len(rows_scored) <= 2 * 10 + 3


def test_full_and_incremental_runs_interleaved_lose_nothing(demo_database, monkeypatch):
    """An incremental run tried between two chunks of a full rescoring (its own connections)
    skips; the contact changed meanwhile stays queued and is scored afterwards."""
    rescore_all(demo_database, AS_OF)
    real = full_rescore.score_chunk
    during = {}

    def incremental_meanwhile(*args, **kwargs):
        if not during:
            _add_validation(demo_database, 2_000, 10**8, platform="apple")
            during["report"] = score_queued(demo_database, LATER, owner="incremental")
        return real(*args, **kwargs)

    monkeypatch.setattr(full_rescore, "score_chunk", incremental_meanwhile)
    rescore_all(demo_database, AS_OF, chunk_size=500)
    assert during["report"].skipped_reason and during["report"].claimed == 0
    assert list(_queue(demo_database).index) == [2_000]
    monkeypatch.setattr(full_rescore, "score_chunk", real)
    assert score_queued(demo_database, LATER, owner="after").scored == 1
    assert _scores(demo_database, [2_000])["apple_score"].iloc[0] > 0


DUE_LATER = pd.Timedelta(seconds=10)
"""Long enough for the first run to finish before the row is due, even on a loaded machine."""


def test_a_contact_with_a_row_due_later_stays_queued_until_it_is_due(demo_database):
    """A row dated a little after the run's as_of (a validator's clock ahead of ours) takes no
    part now; the contact stays queued, claimable once the row is due, and is then rescored
    with it."""
    rescore_all(demo_database, AS_OF)
    now = pd.Timestamp.now(tz="UTC")
    _execute(
        demo_database,
        "INSERT INTO platform_validations (id, contact_id, platform, is_valid, "
        "is_business, is_premium, confidence_score, validated_at) VALUES "
        "(:id, 70, 'apple', :yes, :no, :no, 0.97, :at)",
        {
            "id": 10**8,
            "yes": True,
            "no": False,
            "at": demo_database.bind_timestamp(now + DUE_LATER),
        },
    )
    early = score_queued(demo_database, now, owner="early")
    assert (early.scored, early.rows_after_as_of, early.removed) == (1, 1, 0)
    assert _scores(demo_database, [70])["apple_score"].iloc[0] == 0
    assert ScoringQueue(demo_database).depth().claimable == 0
    time.sleep(max(0.0, (now + DUE_LATER - pd.Timestamp.now(tz="UTC")).total_seconds()) + 0.2)
    due = score_queued(demo_database, pd.Timestamp.now(tz="UTC"), owner="due")
    assert (due.scored, due.removed, due.rows_after_as_of) == (1, 1, 0)
    assert _scores(demo_database, [70])["apple_score"].iloc[0] > 0
    assert demo_database.count("scoring_queue") == 0


NIGHT = LATER + pd.Timedelta(hours=3, minutes=2)
"""A nightly full rescoring's ``as_of``: its scheduled time (it stages later)."""


def _add_row_at(
    database: Database,
    contact_id: int,
    validation_id: int,
    at: pd.Timestamp,
    platform: str = "whatsapp",
) -> None:
    _execute(
        database,
        "INSERT INTO platform_validations (id, contact_id, platform, is_valid, "
        "is_business, is_premium, confidence_score, validated_at) VALUES "
        "(:id, :contact, :platform, :yes, :no, :no, 0.97, :at)",
        {
            "id": validation_id,
            "contact": contact_id,
            "platform": platform,
            "yes": True,
            "no": False,
            "at": database.bind_timestamp(at),
        },
    )


def _without_whatsapp(database: Database, count: int) -> list[int]:
    """The first ``count`` contacts whose stored score has no WhatsApp points."""
    return database.read_frame(
        "SELECT contact_id FROM lead_scores WHERE whatsapp_score = 0 ORDER BY contact_id LIMIT :n",
        {"n": count},
    )["contact_id"].tolist()


def _bucket_of(database: Database, contact_id: int) -> int:
    return int(
        database.read_frame(
            f"SELECT {bucket_sql(database.dialect, 'id')} AS b FROM contacts WHERE id = :id",
            {"id": contact_id},
        )["b"][0]
    )


def test_a_full_rescoring_leaves_a_contact_with_a_row_due_later_queued(demo_database):
    """A WhatsApp row dated 03:05, a nightly rescoring at as_of 03:02: the row takes no part
    in it, and the contact stays queued, claimable at once (the row is due), so the next
    incremental run scores it with the row instead of the next night."""
    rescore_all(demo_database, AS_OF)
    [contact] = _without_whatsapp(demo_database, 1)
    _add_row_at(demo_database, contact, 10**8, NIGHT + pd.Timedelta(minutes=3))
    report = rescore_all(demo_database, NIGHT)
    assert report.rows_after_as_of == 1
    assert list(_queue(demo_database).index) == [contact]
    assert ScoringQueue(demo_database).depth().claimable == 1
    later = score_queued(demo_database, NIGHT + pd.Timedelta(minutes=10), owner="next")
    assert (later.scored, later.removed) == (1, 1)
    assert _scores(demo_database, [contact])["whatsapp_score"].iloc[0] > 0
    assert demo_database.count("scoring_queue") == 0


def test_a_full_rescoring_leaves_a_contact_waiting_for_a_row_still_ahead(demo_database):
    """A row dated an hour after the rescoring's as_of, which is now: the contact waits in
    the queue until the row is due, as the incremental settlement leaves it."""
    rescore_all(demo_database, AS_OF)
    [contact] = _without_whatsapp(demo_database, 1)
    now = pd.Timestamp.now(tz="UTC").floor("s")
    _add_row_at(demo_database, contact, 10**8, now + pd.Timedelta(hours=1))
    rescore_all(demo_database, now)
    assert list(_queue(demo_database).index) == [contact]
    depth = ScoringQueue(demo_database).depth()
    assert (depth.claimable, depth.leased) == (0, 1)
    waiting = demo_database.read_frame("SELECT leased_by, leased_until FROM scoring_queue")
    assert waiting["leased_by"].isna().all()
    assert pd.to_datetime(waiting["leased_until"], utc=True, format="ISO8601").tolist() == [
        now + pd.Timedelta(hours=1)
    ]


@pytest.mark.parametrize("by_range", [False, True], ids=["all-buckets", "bucket-range"])
def test_a_full_rescoring_at_an_earlier_as_of_keeps_newer_scores(demo_database, by_range):
    """An incremental run at 03:10 scores a contact's WhatsApp row of 03:05; a full rescoring
    at as_of 03:02 published afterwards (of every bucket, or of a range of buckets) keeps
    that score, its malformed rows and ``last_platform_validation``, counts it, and leaves
    the contact queued for its row dated after 03:02."""
    rescore_all(demo_database, AS_OF)
    whatsapp, future = _without_whatsapp(demo_database, 2)
    _add_row_at(demo_database, whatsapp, 10**8, NIGHT + pd.Timedelta(minutes=3))
    # malformed (validated_in_future) at 03:02, due later at 03:10
    _add_row_at(
        demo_database,
        future,
        10**8 + 1,
        NIGHT + pd.Timedelta(hours=24, minutes=5),
        platform="apple",
    )
    incremental_run = score_queued(
        demo_database, NIGHT + pd.Timedelta(minutes=8), owner="incremental"
    )
    assert incremental_run.scored == 2
    newer = _scores(demo_database, [whatsapp, future])
    assert newer["whatsapp_score"].iloc[0] > 0
    contacts_sql = (
        "SELECT id, last_platform_validation FROM contacts WHERE id IN (:a, :b) ORDER BY id"
    )
    ids = {"a": whatsapp, "b": future}
    last_validation = demo_database.read_frame(contacts_sql, ids)
    malformed_sql = (
        "SELECT validation_id, reason FROM malformed_validations "
        "WHERE contact_id IN (:a, :b) ORDER BY validation_id"
    )
    malformed = demo_database.read_frame(malformed_sql, ids)
    buckets = sorted({_bucket_of(demo_database, whatsapp), _bucket_of(demo_database, future)})

    report = rescore_all(
        demo_database, NIGHT, run_id="nightly", buckets=buckets if by_range else None
    )
    pd.testing.assert_frame_equal(newer, _scores(demo_database, [whatsapp, future]))
    assert report.kept_newer_scores == 2
    pd.testing.assert_frame_equal(last_validation, demo_database.read_frame(contacts_sql, ids))
    pd.testing.assert_frame_equal(malformed, demo_database.read_frame(malformed_sql, ids))
    nightly_history = demo_database.read_frame(
        "SELECT contact_id FROM lead_score_history WHERE run_id = 'nightly'"
    )
    assert not set(nightly_history["contact_id"]) & {whatsapp, future}
    stamps = demo_database.read_frame(
        f"SELECT contact_id, last_calculated_at, {bucket_sql(demo_database.dialect, 'contact_id')}"
        " AS bucket FROM lead_scores"
    )
    stamps = stamps[~stamps["contact_id"].isin([whatsapp, future]) & stamps["bucket"].isin(buckets)]
    assert (
        len(stamps)
        and (
            pd.to_datetime(stamps["last_calculated_at"], utc=True, format="ISO8601") == NIGHT
        ).all()
    )
    assert set(_queue(demo_database).index) == {whatsapp, future}
    assert ScoringQueue(demo_database).depth().claimable == 2
    after = score_queued(demo_database, NIGHT + pd.Timedelta(days=2), owner="after")
    assert (after.scored, after.removed) == (2, 2)
    assert _scores(demo_database, [future])["apple_score"].iloc[0] > 0
    assert demo_database.count("scoring_queue") == 0


def test_a_kept_newer_score_keeps_the_work_queued_for_it(demo_database):
    """A row dated before the rescoring's as_of arrives after an incremental run at a later
    as_of scored the contact: the rescoring keeps the newer score (which lacks the row), so
    it must not settle the contact's entry either; the next run scores the row."""
    rescore_all(demo_database, AS_OF)
    [contact] = _without_whatsapp(demo_database, 1)
    _add_row_at(demo_database, contact, 10**8, NIGHT - pd.Timedelta(hours=2), platform="apple")
    assert score_queued(demo_database, NIGHT + pd.Timedelta(minutes=8), owner="first").scored
    newer = _scores(demo_database, [contact])
    _add_row_at(demo_database, contact, 10**8 + 1, NIGHT - pd.Timedelta(hours=1))
    report = rescore_all(demo_database, NIGHT)
    pd.testing.assert_frame_equal(newer, _scores(demo_database, [contact]))
    assert report.kept_newer_scores == 1
    assert list(_queue(demo_database).index) == [contact]
    assert score_queued(demo_database, NIGHT + pd.Timedelta(minutes=20), owner="next").scored == 1
    assert _scores(demo_database, [contact])["whatsapp_score"].iloc[0] > 0


def _wait_for_a_row_due_later(database: Database, contact_id: int) -> None:
    """Score ``contact_id`` now while it has a row dated an hour ahead: its entry waits."""
    now = pd.Timestamp.now(tz="UTC")
    _add_row_at(database, contact_id, 10**8, now + pd.Timedelta(hours=1), platform="apple")
    early = score_queued(database, now, owner="early")
    assert (early.scored, early.removed, early.rows_after_as_of) == (1, 0, 1)
    assert ScoringQueue(database).depth().claimable == 0


@pytest.mark.parametrize("new_work", ["validation", "profile"])
def test_new_work_wakes_a_waiting_entry(demo_database, new_work):
    """A contact waiting for a row dated an hour ahead is claimable at once when a validation
    dated now arrives or its profile changes; the next run scores what is due and waits again
    only for the row still ahead."""
    rescore_all(demo_database, AS_OF)
    [contact] = _without_whatsapp(demo_database, 1)
    _wait_for_a_row_due_later(demo_database, contact)
    if new_work == "validation":
        _add_row_at(demo_database, contact, 10**8 + 1, pd.Timestamp.now(tz="UTC"))
    else:
        _execute(
            demo_database,
            "UPDATE contacts SET full_name = 'Nombre Nuevo' WHERE id = :id",
            {"id": contact},
        )
    assert ScoringQueue(demo_database).depth().claimable == 1
    woken = score_queued(demo_database, pd.Timestamp.now(tz="UTC"), owner="woken")
    assert (woken.claimed, woken.scored, woken.removed, woken.rows_after_as_of) == (1, 1, 0, 1)
    if new_work == "validation":
        assert _scores(demo_database, [contact])["whatsapp_score"].iloc[0] > 0
    depth = ScoringQueue(demo_database).depth()
    assert (depth.claimable, depth.leased) == (0, 1)


def test_new_work_keeps_a_running_runs_lease(demo_database):
    """An entry leased by a running run keeps its lease when new work arrives; the version
    bump makes that run leave it queued."""
    rescore_all(demo_database, AS_OF)
    _add_validation(demo_database, 5, 10**8)
    queue = ScoringQueue(demo_database)
    claimed = queue.claim("running", 10, lease_seconds=600)
    lease_sql = "SELECT leased_by, leased_until FROM scoring_queue WHERE contact_id = 5"
    lease = demo_database.read_frame(lease_sql)
    _add_validation(demo_database, 5, 10**8 + 1, platform="apple")
    _execute(demo_database, "UPDATE contacts SET full_name = 'Otro Nombre' WHERE id = 5")
    pd.testing.assert_frame_equal(lease, demo_database.read_frame(lease_sql))
    assert queue.depth().claimable == 0
    contacts, validations = queue.read_batch("running")
    result = incremental.score_chunk(
        contacts, validations, incremental.read_lada_reference(demo_database), LATER
    )
    settlement = queue.complete(
        "running", claimed, result.scores, result.malformed, pd.DataFrame(), LATER
    )
    assert (settlement.scored, settlement.removed) == (0, 0)
    assert queue.depth().claimable == 1


def _queue_size(database: Database) -> int:
    return int(
        database.read_frame("SELECT coalesce(sum(entries), 0) AS n FROM scoring_queue_size")["n"][0]
    )


def test_the_queue_size_is_counted_exactly_through_every_change(demo_database):
    """``scoring_queue_size`` follows enqueues (new and repeated), claims, settlements, dead
    letters and direct deletes; the depth read from it equals a full count."""
    queue = ScoringQueue(demo_database)

    def assert_exact() -> None:
        assert _queue_size(demo_database) == demo_database.count("scoring_queue")
        depth = queue.depth()
        assert depth.claimable + depth.leased == demo_database.count("scoring_queue")

    assert_exact()
    rescore_all(demo_database, AS_OF)
    assert_exact()
    assert queue.depth().claimable == 0
    for i in range(30):
        _add_validation(demo_database, 1 + i % 20, 10**8 + i)
    assert queue.depth().claimable == 20
    assert_exact()
    claimed = queue.claim("run-a", 5, lease_seconds=60)
    assert queue.depth().leased == 5 and queue.depth().claimable == 15
    contacts, validations = queue.read_batch("run-a")
    result = incremental.score_chunk(
        contacts, validations, incremental.read_lada_reference(demo_database), LATER
    )
    queue.complete("run-a", claimed, result.scores, result.malformed, pd.DataFrame(), LATER)
    assert queue.depth().claimable == 15
    assert_exact()
    _execute(
        demo_database,
        "UPDATE scoring_queue SET attempts = 3, leased_by = 'gone', "
        "leased_until = :past WHERE contact_id IN (6, 7)",
        {"past": demo_database.bind_timestamp(AS_OF)},
    )
    queue.claim("run-b", 1, lease_seconds=60)
    assert demo_database.count("scoring_dead_letters") == 2
    assert_exact()
    _execute(demo_database, "DELETE FROM scoring_queue WHERE contact_id > 15")
    assert_exact()
    if demo_database.dialect == "postgresql":
        _execute(demo_database, "TRUNCATE scoring_queue")
        assert_exact()
        _add_validation(demo_database, 3, 10**9)
        assert queue.depth().claimable == 1


def test_a_retry_takes_its_own_entries_first(database):
    _execute(
        database,
        "INSERT INTO contacts (id, phone_e164) VALUES (1, '+523300000001'), (2, '+523300000002')",
    )
    _execute(database, "DELETE FROM scoring_queue")
    _execute(
        database,
        "INSERT INTO scoring_queue (contact_id, priority, created_at, "
        "updated_at, leased_by, leased_until) VALUES "
        "(1, 10, :at, :at, NULL, NULL), (2, 1, :at, :at, 'run-r', :until)",
        {
            "at": database.bind_timestamp(AS_OF),
            "until": database.bind_timestamp(pd.Timestamp.now(tz="UTC") + pd.Timedelta(hours=1)),
        },
    )
    queue = ScoringQueue(database)
    assert queue.claim("run-r", 1, 60)["contact_id"].tolist() == [2]
    assert queue.claim("run-r", 5, 60)["contact_id"].tolist() == [2, 1]


def _plan(database: Database, sql: str, params: dict) -> str:
    with database.engine.begin() as connection:
        connection.execute(sa.text("SET LOCAL enable_seqscan = off"))
        connection.execute(sa.text("SET LOCAL enable_sort = off"))
        return "\n".join(connection.execute(sa.text(f"EXPLAIN {sql}"), params).scalars())


@pytest.mark.parametrize("database_url", ["postgresql"], indirect=True)
def test_claim_and_depth_are_served_by_indexes_without_sorting_the_queue(database):
    """Every step of the claim reads its group in claim order from an index; the depth counts
    only leased entries (the rest comes from scoring_queue_size)."""
    fresh, expired, own = (
        f"SELECT contact_id FROM scoring_queue WHERE {group.format(now='statement_timestamp()')}"
        f" ORDER BY {GROUP_ORDER} LIMIT 50000 FOR UPDATE SKIP LOCKED"
        for group in reversed(CLAIM_GROUPS)
    )
    plan = _plan(database, fresh, {"owner": "run"})
    assert "ix_scoring_queue_claim_order" in plan and "Sort" not in plan
    for sql, index in ((expired, "ix_scoring_queue_lease"), (own, "ix_scoring_queue_leased_by")):
        assert index in _plan(database, sql, {"owner": "run"})
    leased = (
        "SELECT count(*) FROM scoring_queue WHERE leased_until IS NOT NULL "
        "AND leased_until >= statement_timestamp()"
    )
    assert "ix_scoring_queue_lease" in _plan(database, leased, {})


@pytest.mark.parametrize("database_url", ["postgresql"], indirect=True)
def test_an_emptied_queue_gives_its_files_back(database):
    _execute(
        database,
        "INSERT INTO scoring_queue (contact_id, priority, created_at, "
        "updated_at) SELECT g, 5, now(), now() FROM generate_series(1, 100000) g",
    )
    queue = ScoringQueue(database)
    full = database.read_frame("SELECT pg_total_relation_size('scoring_queue') AS b")["b"][0]
    assert queue.reclaim(min_bytes=1) is None, "never while entries wait"
    _execute(database, "DELETE FROM scoring_queue")
    deleted = database.read_frame("SELECT pg_total_relation_size('scoring_queue') AS b")["b"][0]
    assert deleted == full
    assert queue.reclaim(min_bytes=deleted) is None, "not below the size worth it"
    reader = database.engine.connect()
    reader.begin()
    reader.execute(sa.text("SELECT count(*) FROM scoring_queue")).scalar_one()
    started = time.monotonic()
    assert queue.reclaim(min_bytes=1) is None, "a reader holds the queue: left for later"
    assert time.monotonic() - started < 5
    reader.rollback()
    reader.close()
    freed = queue.reclaim(min_bytes=1)
    after = database.read_frame("SELECT pg_total_relation_size('scoring_queue') AS b")["b"][0]
    assert freed == full - after and after < full / 20
    assert queue.depth().claimable == 0
    _add_validation(database, 7, 10**8)
    assert queue.depth().claimable == 1 == _queue_size(database)


def test_claiming_group_by_group_takes_exactly_the_claim_order(database):
    """Random entries of every kind (the run's own, expired, live, waiting, never leased):
    each claim takes the first entries of one query ordered by ``CLAIM_ORDER``."""
    rng = random.Random(7)
    now = pd.Timestamp.now(tz="UTC")
    rows = []
    for contact_id in range(1, 301):
        kind = rng.choice(["own", "expired", "live", "waiting", "fresh", "fresh", "fresh"])
        by = {"own": "run-a", "expired": "crashed", "live": "other"}.get(kind)
        until = {
            "own": now + pd.Timedelta(minutes=5),
            "expired": now - pd.Timedelta(minutes=5),
            "live": now + pd.Timedelta(minutes=5),
            "waiting": now + pd.Timedelta(hours=1),
        }.get(kind)
        at = database.bind_timestamp(AS_OF + pd.Timedelta(minutes=rng.randrange(20)))
        rows.append(
            {
                "id": contact_id,
                "priority": rng.randint(1, 10),
                "at": at,
                "by": by,
                "until": database.bind_timestamp(until),
            }
        )
    _execute(database, "DELETE FROM scoring_queue")
    with database.engine.begin() as connection:
        connection.execute(
            sa.text(
                "INSERT INTO scoring_queue (contact_id, priority, created_at, updated_at, "
                "leased_by, leased_until) VALUES (:id, :priority, :at, :at, :by, :until)"
            ),
            rows,
        )
    queue = ScoringQueue(database)
    for owner, size in (("run-a", 25), ("run-a", 70), ("run-b", 90)):
        expected = database.read_frame(
            "SELECT contact_id FROM scoring_queue WHERE leased_until IS NULL OR leased_until "
            f"< :now OR leased_by = :owner ORDER BY {CLAIM_ORDER} LIMIT :size",
            {
                "now": database.bind_timestamp(pd.Timestamp.now(tz="UTC")),
                "owner": owner,
                "size": size,
            },
        )["contact_id"].tolist()
        claimed = queue.claim(owner, size, 600)["contact_id"].tolist()
        assert sorted(claimed) == sorted(expected) and len(expected) == size


@pytest.mark.parametrize("database_url", ["postgresql"], indirect=True)
def test_the_settlements_lease_check_is_a_join_not_a_lookup_per_entry(demo_database):
    """The settlement keeps the batch's entries still leased to the run. Written with the
    volatile ``clock_timestamp()``, PostgreSQL ran its NOT EXISTS once per entry, each time
    reading every entry leased to the run: a 50,000-contact batch took 100 s to settle at 1M
    contacts. Each statement of the settlement is explained, in its transaction, before it
    runs."""
    rescore_all(demo_database, AS_OF)
    for i in range(40):
        _add_validation(demo_database, 100 + i, 10**8 + i)
    plans = {}

    @sa.event.listens_for(demo_database.engine, "before_cursor_execute")
    def explain(connection, cursor, statement, parameters, context, executemany):
        if statement.startswith(("DELETE FROM settled_batch", "DELETE FROM scoring_queue")):
            cursor.execute("EXPLAIN " + statement, parameters)
            plans[statement] = "\n".join(row[0] for row in cursor.fetchall())

    report = score_queued(demo_database, LATER, owner="explained")
    sa.event.remove(demo_database.engine, "before_cursor_execute", explain)
    assert report.removed == 40 and plans
    for statement, plan in plans.items():
        assert "SubPlan" not in plan, f"{statement}\n{plan}"


WHOLE_TABLE_SCAN = re.compile(r"Seq Scan on (contacts|platform_validations|lead_scores_p\d+) ")
"""The tables a batch meets that are larger than the batch here: not the queue (the batch is
the queue; its claim has its own test, above), nor ``malformed_validations`` (a few hundred
rows in a few pages, which the planner rightly reads whole whatever the statement)."""


@pytest.mark.parametrize("database_url", ["postgresql"], indirect=True)
def test_a_batch_costs_its_contacts_not_the_tables(demo_database, monkeypatch):
    """A run reads and settles its batch through the indexes, for the batch's ids: joined with
    the batch, the planner hashed whole tables (every partition of lead_scores, contacts,
    platform_validations) once a batch was a few percent of them, so a batch of 50,000 took
    7.7 s at 1M contacts and 47.2 s at 31.8M. Here the batch is half the contacts; every
    statement of the run is explained, in its transaction, before it runs."""
    rescore_all(demo_database, AS_OF)
    _execute(
        demo_database,
        "INSERT INTO platform_validations (id, contact_id, platform, is_valid, is_business, "
        "is_premium, confidence_score, validated_at) SELECT 100000000 + id, id, 'apple', true, "
        "false, false, 0.9, :at FROM contacts WHERE id % 2 = 0",
        {"at": LATER.to_pydatetime()},
    )
    for table in ("contacts", "platform_validations", "lead_scores", "scoring_queue"):
        _execute(demo_database, f"ANALYZE {table}")
    plans = {}

    @sa.event.listens_for(demo_database.engine, "before_cursor_execute")
    def explain(connection, cursor, statement, parameters, context, executemany):
        if statement.startswith(("SELECT", "INSERT", "UPDATE", "DELETE")) and not executemany:
            cursor.execute("EXPLAIN " + statement, parameters)
            plans[statement] = "\n".join(row[0] for row in cursor.fetchall())

    read_frame = demo_database.read_frame

    def explained_read(sql, params=None, connection=None):
        with demo_database.engine.connect() as own:
            plans[sql] = "\n".join(own.execute(sa.text("EXPLAIN " + sql), params or {}).scalars())
        return read_frame(sql, params, connection)

    monkeypatch.setattr(demo_database, "read_frame", explained_read)
    report = score_queued(demo_database, LATER, owner="explained")
    sa.event.remove(demo_database.engine, "before_cursor_execute", explain)
    assert report.scored == 1_500 and report.history_rows > 0
    assert any("FROM platform_validations" in statement for statement in plans)
    for statement, plan in plans.items():
        assert not WHOLE_TABLE_SCAN.search(plan), f"{statement}\n{plan}"
