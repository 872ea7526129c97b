"""PostgreSQL: a swap and its readers. A publish waits for a long reader (an export's
snapshot) without failing and without holding up the other readers meanwhile, the reader keeps
its snapshot, and every swapped table keeps its views, grants and comments.

Real connections and threads on a real server. ``LOCK_TIMEOUT`` is set to 1 s where a test
shows that a reader holding its snapshot longer than one lock request may wait no longer
fails the publish (it took 30 s before)."""

import threading
import time
import uuid

import pandas as pd
import pyarrow.parquet as pq
import pytest
import sqlalchemy as sa

from lead_scoring_assets.campaigns.segment_export import (
    SEGMENT_TABLES,
    Segment,
    export_segment,
    select_segment,
)
from lead_scoring_assets.db import staged_table
from lead_scoring_assets.db.database import Database
from lead_scoring_assets.db.score_swap import ScoreSwap
from lead_scoring_assets.db.staged_table import StagedTable, SwapWaitExceeded
from lead_scoring_assets.geography.ladas import build_lada_reference
from lead_scoring_assets.ml.conversion_scores import write_conversion_scores
from lead_scoring_assets.ml.feature_table import build_contact_features
from lead_scoring_assets.ml.predictions import write_ml_scores
from lead_scoring_assets.scoring.checks import staged_score_violations
from lead_scoring_assets.scoring.full_rescore import rescore_all, stage_rescore

from .conftest import AS_OF

LATER = AS_OF + pd.Timedelta(days=60)
HOLD_SECONDS = 3.0
"""How long a long reader keeps its snapshot once the publish is about to swap: longer than
the 1 s lock timeout the tests set."""
STALL_BOUND_SECONDS = 0.5


def publish_ladas(database: Database, as_of) -> None:
    with StagedTable(database, "ladas_reference") as staged:
        staged.append(build_lada_reference())


def publish_ml_scores(database: Database, as_of) -> None:
    """The rule-based fallback copies the published ``lead_scores``: rescore them first."""
    rescore_all(database, as_of)
    write_ml_scores(database, None)


PUBLISH = {
    "lead_scores": lambda database, as_of: rescore_all(database, as_of),
    "contact_features": lambda database, as_of: build_contact_features(database, as_of),
    "ml_lead_scores": publish_ml_scores,
    "conversion_scores": lambda database, as_of: write_conversion_scores(database, None, as_of),
    "ladas_reference": publish_ladas,
}
"""The real publish path of each swapped table."""
KEYS = {"ladas_reference": "lada"}
"""The column a row is picked by (``contact_id`` when not listed)."""


def checksum(connection: sa.Connection, table: str) -> tuple:
    return tuple(
        connection.execute(
            sa.text(f"SELECT count(*), sum(hashtextextended(CAST(t AS text), 0)) FROM {table} t")
        ).one()
    )


def wait_until_staged(
    database: Database, table: str, published: threading.Event | None = None, timeout: float = 120.0
) -> None:
    """Until ``table``'s staged rows are recorded (the publish comes next), from a connection
    of its own, or until ``published`` is set (a publish that did not wait)."""
    deadline = time.monotonic() + timeout
    with database.engine.connect() as connection:
        while time.monotonic() < deadline and not (published and published.is_set()):
            if connection.execute(
                sa.text(
                    "SELECT count(*) FROM staged_builds WHERE table_name = :table "
                    "OR table_name LIKE :partitions"
                ),
                {"table": table, "partitions": f"{table}_p%"},
            ).scalar_one():
                return
            connection.rollback()
            time.sleep(0.02)
    if not (published and published.is_set()):
        raise TimeoutError(f"{table} was never staged")


class LongReader(threading.Thread):
    """A ``REPEATABLE READ READ ONLY`` transaction (an export's) reading ``table`` from before
    the publish starts until ``hold`` seconds after the staged rows are recorded."""

    def __init__(self, database: Database, table: str, hold: float = HOLD_SECONDS):
        super().__init__(daemon=True)
        self.db, self.table, self.hold = database, table, hold
        self.reading = threading.Event()
        self.published = threading.Event()
        self.first = self.last = None
        self.ended: float | None = None
        self.error: BaseException | None = None

    def run(self) -> None:
        try:
            with self.db.snapshot() as connection:
                self.first = checksum(connection, self.table)
                self.reading.set()
                wait_until_staged(self.db, self.table, self.published)
                time.sleep(self.hold)
                self.last = checksum(connection, self.table)
            self.ended = time.monotonic()
        except BaseException as error:  # noqa: BLE001 - reported by the test
            self.error = error
            self.reading.set()


class ShortReads(threading.Thread):
    """API-like reads of ``table``, one autocommit statement each, timed, until stopped."""

    def __init__(self, database: Database, table: str):
        super().__init__(daemon=True)
        self.db, self.table = database, table
        self.stop = threading.Event()
        self.latencies: list[float] = []
        self.error: BaseException | None = None

    def run(self) -> None:
        key = "contact_id"
        try:
            with self.db.engine.connect() as connection:
                connection = connection.execution_options(isolation_level="AUTOCOMMIT")
                ids = (
                    connection.execute(
                        sa.text(f"SELECT {key} FROM {self.table} ORDER BY {key} LIMIT 200")
                    )
                    .scalars()
                    .all()
                )
                reads = [
                    (f"SELECT * FROM {self.table} WHERE {key} = :id", True),
                    (f"SELECT {key} FROM {self.table} ORDER BY {key} DESC LIMIT 50", False),
                ]
                turn = 0
                while not self.stop.is_set():
                    sql, by_id = reads[turn % 2]
                    started = time.monotonic()
                    connection.execute(
                        sa.text(sql), {"id": ids[turn % len(ids)]} if by_id else {}
                    ).all()
                    self.latencies.append(time.monotonic() - started)
                    turn += 1
                    time.sleep(0.01)
        except BaseException as error:  # noqa: BLE001 - reported by the test
            self.error = error


def _published(database: Database, table: str) -> tuple:
    with database.engine.connect() as connection:
        return checksum(connection, table)


@pytest.mark.parametrize(
    "table",
    ["lead_scores", "contact_features", "ml_lead_scores", "conversion_scores", "ladas_reference"],
)
def test_a_publish_outlasts_a_long_reader_which_keeps_its_snapshot(
    postgres_demo, table, monkeypatch
):
    """The reader holds its snapshot longer than one lock request may wait: the publish
    succeeds (after the reader ends, where it swaps partitions; at once where rows are
    replaced in place, ``ladas_reference``) and the reader reads the same rows throughout."""
    monkeypatch.setattr(staged_table, "LOCK_TIMEOUT", "1s")
    if table != "ladas_reference":
        PUBLISH[table](postgres_demo, AS_OF)
    before = _published(postgres_demo, table)
    reader = LongReader(postgres_demo, table)
    reader.start()
    assert reader.reading.wait(30)
    PUBLISH[table](postgres_demo, LATER)
    published = time.monotonic()
    reader.published.set()
    reader.join(60)
    assert reader.error is None, reader.error
    assert reader.first == reader.last == before
    if table == "ladas_reference":
        assert _published(postgres_demo, table) == before
        assert published < reader.ended
    else:
        assert _published(postgres_demo, table) != before
        assert published > reader.ended


def test_the_writer_lease_is_renewed_while_the_publish_waits(postgres_demo, monkeypatch):
    """A publish waiting longer than the run's lease keeps the lease through its renewals."""
    monkeypatch.setattr(staged_table, "LOCK_TIMEOUT", "1s")
    rescore_all(postgres_demo, AS_OF)
    reader = LongReader(postgres_demo, "lead_scores", hold=4 * HOLD_SECONDS)
    reader.start()
    assert reader.reading.wait(30)
    lease = 2 * HOLD_SECONDS
    stage_rescore(postgres_demo, LATER, run_id="short-lease", lease_seconds=lease)
    assert not staged_score_violations(postgres_demo, "short-lease").failed
    swap = ScoreSwap(postgres_demo, run_id="short-lease", lease_seconds=lease)
    started = time.monotonic()
    swap.publish()
    assert time.monotonic() - started > lease
    reader.join(60)
    assert reader.error is None, reader.error
    assert len(swap.published_buckets) == 16
    as_of = postgres_demo.read_frame("SELECT DISTINCT last_calculated_at FROM lead_scores")
    assert [pd.Timestamp(t) for t in as_of["last_calculated_at"]] == [LATER]


@pytest.mark.parametrize("table", ["lead_scores", "conversion_scores"])
def test_b_short_reads_are_not_held_up_while_the_publish_waits(postgres_demo, table):
    """While the publish waits for a long reader, reads of the table from another connection
    keep answering at once (today's swap queued them behind its lock request)."""
    PUBLISH[table](postgres_demo, AS_OF)
    before = _published(postgres_demo, table)
    reader = LongReader(postgres_demo, table)
    reads = ShortReads(postgres_demo, table)
    reader.start()
    assert reader.reading.wait(30)
    reads.start()
    try:
        PUBLISH[table](postgres_demo, LATER)
    finally:
        reader.published.set()
        reads.stop.set()
        reads.join(30)
        reader.join(60)
    assert reader.error is None and reads.error is None, (reader.error, reads.error)
    assert reader.first == reader.last == before != _published(postgres_demo, table)
    assert len(reads.latencies) > 50
    assert max(reads.latencies) < STALL_BOUND_SECONDS, sorted(reads.latencies)[-5:]


def test_the_wait_is_bounded_by_its_setting(postgres_demo, monkeypatch):
    """Past ``LEAD_SCORING_SWAP_WAIT_SECONDS`` the publish gives up and the previous rows
    stay; the reader is untouched."""
    build_contact_features(postgres_demo, AS_OF)
    before = _published(postgres_demo, "contact_features")
    monkeypatch.setenv("LEAD_SCORING_SWAP_WAIT_SECONDS", "1")
    reader = LongReader(postgres_demo, "contact_features")
    reader.start()
    assert reader.reading.wait(30)
    try:
        with pytest.raises(SwapWaitExceeded, match="contact_features"):
            build_contact_features(postgres_demo, LATER)
    finally:
        reader.published.set()
    reader.join(60)
    assert reader.error is None, reader.error
    assert reader.first == reader.last == before == _published(postgres_demo, "contact_features")


def test_a_campaign_export_and_the_nightly_publish_both_succeed(
    postgres_demo, tmp_path, monkeypatch
):
    """An export reading while ``lead_scores`` is rescored and published: the file is the
    segment as it was when the export started, and the publish lands after it."""
    monkeypatch.setattr(staged_table, "LOCK_TIMEOUT", "1s")
    rescore_all(postgres_demo, AS_OF)
    write_conversion_scores(postgres_demo, None, AS_OF)
    before = select_segment(postgres_demo, Segment(rank_by="conversion_probability"))
    exporting = threading.Event()
    outcome: dict = {}

    def after_batch(rows: int) -> None:
        if not exporting.is_set():
            exporting.set()
            wait_until_staged(postgres_demo, "lead_scores")
            time.sleep(HOLD_SECONDS)

    def export() -> None:
        try:
            outcome["report"] = export_segment(
                postgres_demo,
                Segment(rank_by="conversion_probability"),
                "all.parquet",
                "parquet",
                folder=tmp_path,
                batch_size=100,
                after_batch=after_batch,
            )
        except BaseException as error:  # noqa: BLE001 - reported by the test
            outcome["error"] = error
            exporting.set()

    exporter = threading.Thread(target=export, daemon=True)
    exporter.start()
    assert exporting.wait(30)
    rescore_all(postgres_demo, LATER)
    write_conversion_scores(postgres_demo, None, LATER)
    exporter.join(60)
    assert "error" not in outcome, outcome.get("error")
    exported = pq.read_table(outcome["report"].path).to_pandas()
    pd.testing.assert_frame_equal(exported, before)
    after = select_segment(postgres_demo, Segment(rank_by="conversion_probability"))
    assert not after.equals(before)


def test_an_export_snapshot_is_taken_once_its_tables_are_locked(postgres_demo):
    """A snapshot whose first statement reads ``contacts`` (an export filtered by state) and
    which reads ``lead_scores`` only later still sees the scores of its snapshot: a partition
    swap in between would otherwise show the new partitions' rows."""
    rescore_all(postgres_demo, AS_OF)
    publisher = threading.Thread(target=rescore_all, args=(postgres_demo, LATER), daemon=True)
    with postgres_demo.snapshot(SEGMENT_TABLES) as connection:
        connection.execute(sa.text("SELECT count(*) FROM contacts")).scalar_one()
        publisher.start()
        wait_until_staged(postgres_demo, "lead_scores")
        time.sleep(HOLD_SECONDS)
        seen = (
            connection.execute(sa.text("SELECT DISTINCT last_calculated_at FROM lead_scores"))
            .scalars()
            .all()
        )
    publisher.join(60)
    assert [pd.Timestamp(t) for t in seen] == [AS_OF]
    assert postgres_demo.read_frame("SELECT DISTINCT last_calculated_at FROM lead_scores")[
        "last_calculated_at"
    ].map(pd.Timestamp).tolist() == [LATER]


@pytest.mark.parametrize("table", list(PUBLISH))
def test_every_swapped_table_keeps_its_view_grant_and_comment(postgres_demo, table):
    """A view, a grant and a comment on the table survive two publishes, and the view reads
    the published rows (a row deleted from the live table before each publish is back)."""
    PUBLISH[table](postgres_demo, AS_OF)
    key = KEYS.get(table, "contact_id")
    role = f"lead_scoring_viewer_{uuid.uuid4().hex[:8]}"
    view = f"{table}_view"
    engine = postgres_demo.engine
    with engine.begin() as connection:
        rows = connection.execute(sa.text(f"SELECT count(*) FROM {table}")).scalar_one()
        connection.execute(sa.text(f"CREATE ROLE {role}"))
        connection.execute(sa.text(f"CREATE VIEW {view} AS SELECT * FROM {table}"))
        connection.execute(sa.text(f"GRANT SELECT ON {table} TO {role}"))
        connection.execute(sa.text(f"COMMENT ON TABLE {table} IS 'kept by the swap'"))
    assert rows > 0
    try:
        for days in (30, 60):
            with engine.begin() as connection:
                removed = (
                    connection.execute(
                        sa.text(
                            f"DELETE FROM {table} WHERE {key} = (SELECT min({key}) FROM {table}) "
                            f"RETURNING {key}"
                        )
                    )
                    .scalars()
                    .first()
                )
            PUBLISH[table](postgres_demo, AS_OF + pd.Timedelta(days=days))
            with engine.connect() as connection:
                assert connection.execute(
                    sa.text("SELECT has_table_privilege(:role, :table, 'SELECT')"),
                    {"role": role, "table": table},
                ).scalar_one()
                assert (
                    connection.execute(
                        sa.text("SELECT obj_description(CAST(:table AS regclass), 'pg_class')"),
                        {"table": table},
                    ).scalar_one()
                    == "kept by the swap"
                )
                assert (
                    connection.execute(sa.text(f"SELECT count(*) FROM {view}")).scalar_one() == rows
                )
                assert (
                    connection.execute(
                        sa.text(f"SELECT count(*) FROM {view} WHERE {key} = :key"), {"key": removed}
                    ).scalar_one()
                    >= 1
                )
    finally:
        with engine.begin() as connection:
            connection.execute(sa.text(f"DROP VIEW IF EXISTS {view}"))
            connection.execute(sa.text(f"DROP OWNED BY {role}"))
            connection.execute(sa.text(f"DROP ROLE {role}"))
