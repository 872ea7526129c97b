"""Stage a full rescoring bucket by bucket, audit it, then publish it bucket by bucket.

A run rescoring the contact buckets ``buckets`` (all by default) holds the scoring lock of
those buckets exclusively (incremental runs, which take every bucket's lock shared, wait), and
stages each bucket in five tables: its scores (``lead_scores_pBB_next``), its malformed rows,
its new ``last_platform_validation`` values, a snapshot of its queue entries and its contacts
with rows due later (dated after ``as_of``, not malformed). The audit reads the staged
buckets. The publish then takes one bucket per transaction: fencing (the run still holds that
bucket's lease); the newer scores kept (a stored score computed at a later ``as_of`` than the
run's stays, with its malformed rows and ``last_platform_validation``); its history rows,
malformed rows, ``last_platform_validation`` values and queue settlement (contacts with rows
due later stay queued); then its partition swapped under ``lead_scores`` (PostgreSQL: detach,
drop, rename, attach; SQLite: its rows replaced), the bucket's lock released. The exclusive
lock on ``lead_scores`` is held only for the swap of one partition, and asked for through
``ExclusiveSwap``: a long reader is waited for, not failed on, and other readers are not held
up meanwhile.

Readers see a bucket's previous scores until its transaction commits. A publish that stops
half-way (killed, a lost connection) leaves the other buckets staged and audited, and its
retry publishes them; a failed, killed or refused run leaves only staging tables behind,
which the next run of the bucket drops. Two runs of different buckets stage and publish side
by side (a backfill over several runs).
"""

import time
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from datetime import UTC, datetime

import pandas as pd
import sqlalchemy as sa

from lead_scoring_assets.db.buckets import BUCKET_COUNT, bucket_sql, partition_name
from lead_scoring_assets.db.database import Database
from lead_scoring_assets.db.score_history import record_changes
from lead_scoring_assets.db.scoring_queue import settle_full_rescore
from lead_scoring_assets.db.settle import (
    copy_malformed_rows,
    last_validation_columns,
    malformed_ids_columns,
    update_last_validation,
)
from lead_scoring_assets.db.staged_table import (
    BOUND,
    NEXT,
    ExclusiveSwap,
    StagedBuildMissing,
    copy_indexes,
    index_renames,
    replace_partition,
    sqlite_ddl_like,
)
from lead_scoring_assets.db.tables import SCORE_COLUMNS
from lead_scoring_assets.db.writer_lock import Heartbeat, WriterLock

SCORES = "lead_scores"
MALFORMED = "malformed_validations"
FULL_RESCORE_LEASE_SECONDS = 40
"""The lease of a full rescoring's lock while one of its steps works (staging, the audit, the
publish): renewed every ``HEARTBEAT_SECONDS`` by a heartbeat thread and on progress (a staged
chunk, a published bucket), so the lock of a killed step ends within this."""
HEARTBEAT_SECONDS = 5
"""How often the heartbeat renews the lease (at most a quarter of a shorter lease)."""
HANDOVER_LEASE_SECONDS = 180
"""The lease a step leaves for the run's next step (audit, publish, a retry), which may start
in another process or pod: the time it may take to start."""
INCREMENTAL_WAIT_SECONDS = 600
"""How long a full rescoring waits for running incremental runs to settle."""


def scoring_lock(
    database: Database,
    holder: str,
    lease_seconds: float,
    buckets: list[int] | None = None,
    is_holder_alive: Callable[[str], bool] | None = None,
) -> WriterLock:
    """The lock every writer of ``lead_scores`` takes, one row per contact bucket: full
    rescorings exclusively on the buckets they rescore, incremental runs shared on all. With
    ``is_holder_alive``, the rows of holders that no longer run are broken when it is taken."""
    chosen = range(BUCKET_COUNT) if buckets is None else buckets
    return WriterLock(
        database, [f"{SCORES}/{b:02d}" for b in chosen], holder, lease_seconds, is_holder_alive
    )


def staged_scores(bucket: int) -> str:
    return f"{partition_name(SCORES, bucket)}{NEXT}"


def malformed_ids(bucket: int) -> str:
    return f"malformed_validation_ids_p{bucket:02d}{NEXT}"


def last_validations(bucket: int) -> str:
    return f"contact_last_validation_p{bucket:02d}{NEXT}"


def queue_snapshot(bucket: int) -> str:
    return f"scoring_queue_snapshot_p{bucket:02d}{NEXT}"


def due_later(bucket: int) -> str:
    return f"scoring_queue_due_p{bucket:02d}{NEXT}"


def _side_tables(bucket: int) -> tuple[str, ...]:
    """The staged tables of ``bucket`` besides its scores."""
    return (
        malformed_ids(bucket),
        last_validations(bucket),
        queue_snapshot(bucket),
        due_later(bucket),
    )


def _build_name(bucket: int) -> str:
    """The ``staged_builds`` name of a staged bucket."""
    return partition_name(SCORES, bucket)


class ScoreSwap:
    """The staged buckets of one full rescoring (run ``run_id``).

    ``with swap.stage(): swap.add(bucket, ...)`` builds them under the buckets' lock, kept
    (handed over) for the audit and the publish; ``publish()`` (possibly another process of the
    same run) swaps in every bucket the run staged, one transaction each; ``discard()`` drops
    them and releases the lock. Steps run inside ``keep_alive()`` (``stage()`` does it itself).
    ``is_holder_alive`` is passed to the lock (see ``scoring_lock``).
    """

    def __init__(
        self,
        database: Database,
        run_id: str | None = None,
        as_of=None,
        buckets: list[int] | None = None,
        lease_seconds: float = FULL_RESCORE_LEASE_SECONDS,
        wait_seconds: float = INCREMENTAL_WAIT_SECONDS,
        handover_seconds: float = HANDOVER_LEASE_SECONDS,
        is_holder_alive: Callable[[str], bool] | None = None,
    ):
        self.db = database
        self.run_id = run_id or f"adhoc-{datetime.now(UTC):%Y%m%dT%H%M%S.%f}"
        self.as_of = as_of
        self.buckets = list(range(BUCKET_COUNT)) if buckets is None else list(buckets)
        self.lease_seconds = lease_seconds
        self.wait_seconds = wait_seconds
        self.handover_seconds = handover_seconds
        self.lock = scoring_lock(
            database, self.run_id, lease_seconds, self.buckets, is_holder_alive
        )
        self.history_rows = 0
        self.kept_newer_scores = 0
        """Stored scores computed at a later ``as_of`` than this run's, kept by the publish."""
        self.queued_due_later = 0
        """Contacts left (or put) in the queue by the publish for their rows due later."""
        self.published_buckets: list[int] = []
        self.seconds = 0.0
        self.seconds_locked = 0.0
        """The longest time one bucket's swap held ``lead_scores`` exclusively (PostgreSQL)."""
        self._writer = None
        self._locked_at: float | None = None
        self._exclusive = ExclusiveSwap(
            database,
            SCORES,
            keep_alive=self._renew_unpublished,
            keep_alive_seconds=lease_seconds / 3,
        )
        self._staged: list[int] = []

    @contextmanager
    def keep_alive(self) -> Iterator[Heartbeat]:
        """Around one step of the run: a heartbeat thread renews the run's lease to
        ``lease_seconds`` while the step works, so a killed step blocks the other writers for
        at most that; a step that ends leaves the hand-over lease to the next (see
        ``WriterLock.heartbeat``)."""
        every = min(HEARTBEAT_SECONDS, self.lease_seconds / 4)
        with self.lock.heartbeat(self.lease_seconds, every, self.handover_seconds) as beat:
            yield beat

    # staging

    @contextmanager
    def stage(self) -> Iterator["ScoreSwap"]:
        """Create the staged tables of the run's buckets (dropping any left there), yield for
        ``add``, then index them and record the build, under ``keep_alive``; on an exception
        drop them and release the lock."""
        self.lock.acquire_exclusive(wait_seconds=self.wait_seconds)
        guard = None
        try:
            with self.keep_alive():
                guard = self._guard()
                with self.db.engine.begin() as connection:
                    for bucket in self.buckets:
                        self._drop(connection, bucket)
                        self._create(connection, bucket)
                with self._writing():
                    yield self
                self._index_and_record()
        except BaseException:
            self._abandon()
            raise
        finally:
            if guard is not None:
                guard.rollback()
                guard.close()
        self.lock.renew(self.handover_seconds)

    def _guard(self) -> sa.Connection | None:
        """PostgreSQL: advisory locks, held while staging, on the staged tables of the run's
        buckets, so that a run still writing after its lease ended and the run that took the
        lock over never write the same tables."""
        if self.db.dialect != "postgresql":
            return None
        guard = self.db.engine.connect()
        for bucket in self.buckets:
            if not guard.execute(
                sa.text("SELECT pg_try_advisory_xact_lock(hashtext(:key))"),
                {"key": f"lead_scoring:{staged_scores(bucket)}"},
            ).scalar():
                guard.rollback()
                guard.close()
                raise RuntimeError(
                    f"another run is still staging bucket {bucket:02d} of {SCORES} on this database"
                )
        return guard

    @contextmanager
    def _writing(self):
        if self.db.dialect != "postgresql":
            yield
            return
        with self.db.adbc_connection() as writer:
            self._writer = writer
            try:
                yield
            finally:
                self._writer = None

    def _create(self, connection: sa.Connection, bucket: int) -> None:
        staged = staged_scores(bucket)
        if self.db.dialect == "postgresql":
            connection.execute(sa.text(f"CREATE TABLE {staged} (LIKE {SCORES} INCLUDING DEFAULTS)"))
            bound = connection.execute(
                sa.text("SELECT pg_get_partition_constraintdef(CAST(:name AS regclass))"),
                {"name": partition_name(SCORES, bucket)},
            ).scalar_one()
            connection.execute(
                sa.text(f"ALTER TABLE {staged} ADD CONSTRAINT {BOUND} CHECK ({bound})")
            )
        else:
            connection.execute(sa.text(sqlite_ddl_like(connection, SCORES, staged)))
        connection.execute(
            sa.text(f"CREATE TABLE {malformed_ids(bucket)} ({malformed_ids_columns(self.db)})")
        )
        connection.execute(
            sa.text(f"CREATE TABLE {last_validations(bucket)} ({last_validation_columns(self.db)})")
        )
        connection.execute(
            sa.text(
                f"CREATE TABLE {queue_snapshot(bucket)} (contact_id BIGINT PRIMARY KEY, "
                "version BIGINT NOT NULL)"
            )
        )
        connection.execute(
            sa.text(
                f"INSERT INTO {queue_snapshot(bucket)} SELECT contact_id, version FROM "
                f"scoring_queue WHERE {bucket_sql(self.db.dialect, 'contact_id')} = :bucket"
            ),
            {"bucket": bucket},
        )
        connection.execute(
            sa.text(
                f"CREATE TABLE {due_later(bucket)} (contact_id BIGINT PRIMARY KEY, "
                f"not_before {self.db.timestamp_ddl} NOT NULL)"
            )
        )

    @staticmethod
    def _drop(connection: sa.Connection, bucket: int) -> None:
        for table in (staged_scores(bucket), *_side_tables(bucket)):
            connection.execute(sa.text(f"DROP TABLE IF EXISTS {table}"))

    def add(
        self,
        bucket: int,
        scores: pd.DataFrame,
        malformed: pd.DataFrame,
        last_validation_changes: pd.DataFrame,
        detected_at: pd.Timestamp,
        rows_due_later: pd.DataFrame,
    ) -> None:
        """Stage one chunk of ``bucket``: its score rows, malformed rows, changed last
        validations and contacts with rows due later (``contact_id``, ``not_before``); the
        lock's lease is renewed."""
        self.db.append_frame(staged_scores(bucket), scores, self._writer)
        kept = pd.DataFrame(
            {
                "validation_id": malformed["id"],
                "reason": malformed["reason"],
                "detected_at": detected_at,
            }
        )
        self.db.append_frame(malformed_ids(bucket), kept, self._writer)
        self.db.append_frame(last_validations(bucket), last_validation_changes, self._writer)
        self.db.append_frame(due_later(bucket), rows_due_later, self._writer)
        if self._writer is not None:
            self._writer.commit()
        self.lock.renew()

    def _index_and_record(self) -> None:
        """PostgreSQL: each staged bucket gets its live partition's indexes (under ``_next``
        names) and statistics, so the audit reads it by index and the swap only renames.
        Then the run's builds are recorded in ``staged_builds``, one row per bucket."""
        for bucket in self.buckets:
            if self.db.dialect == "postgresql":
                with self.db.engine.begin() as connection:
                    copy_indexes(connection, partition_name(SCORES, bucket), staged_scores(bucket))
                    connection.execute(sa.text(f"ANALYZE {staged_scores(bucket)}"))
            self.lock.renew()
        now = self.db.bind_timestamp(datetime.now(UTC))
        with self.db.engine.begin() as connection:
            names = [_build_name(b) for b in self.buckets]
            connection.execute(
                sa.text("DELETE FROM staged_builds WHERE table_name IN :names").bindparams(
                    sa.bindparam("names", expanding=True)
                ),
                {"names": names},
            )
            connection.execute(
                sa.text(
                    "INSERT INTO staged_builds (table_name, run_id, as_of, staged_at) "
                    "VALUES (:table, :run_id, :as_of, :now)"
                ),
                [
                    {
                        "table": name,
                        "run_id": self.run_id,
                        "as_of": self.db.bind_timestamp(self.as_of),
                        "now": now,
                    }
                    for name in names
                ],
            )

    def _abandon(self) -> None:
        """A build that failed half-way: drop its tables and release the lock, but only while
        this run still holds it (after a lost lease the tables may be another run's)."""
        with self.db.engine.begin() as connection:
            if self.lock.holds(connection):
                for bucket in self.buckets:
                    self._drop(connection, bucket)
                self.lock.release(connection)

    # the run's staged buckets

    def staged_buckets(self, connection: sa.Connection) -> list[int]:
        """The buckets this run staged and has not published yet (their ``as_of`` becomes
        this swap's); raises ``StagedBuildMissing`` when there are none."""
        rows = connection.execute(
            sa.text(
                "SELECT table_name, run_id, as_of FROM staged_builds WHERE table_name LIKE :like"
            ),
            {"like": f"{SCORES}_p%"},
        ).all()
        mine = sorted(
            int(r.table_name.removeprefix(f"{SCORES}_p")) for r in rows if r.run_id == self.run_id
        )
        if not mine:
            owners = sorted({r.run_id for r in rows})
            raise StagedBuildMissing(
                f"no staged {SCORES} of run {self.run_id} wait to be published "
                f"({'staged by ' + ', '.join(owners) if owners else 'none staged'})"
            )
        as_of = next(r.as_of for r in rows if r.run_id == self.run_id)
        if as_of is not None:
            stamp = pd.Timestamp(as_of)
            self.as_of = stamp.tz_localize("UTC") if stamp.tzinfo is None else stamp
        return mine

    # publishing

    def publish(self) -> None:
        """Publish every bucket the run staged, one transaction per bucket, each fenced by the
        run's lease on that bucket (``LockLost`` otherwise, with nothing of that bucket
        written). Each transaction runs through ``ExclusiveSwap``: while long readers hold
        ``lead_scores`` it waits (renewing the lease of the buckets not yet published), and a
        transaction that does not get the exclusive lock at once is rolled back and run
        again."""
        started = time.perf_counter()
        with self.db.engine.connect() as connection:
            self._staged = self.staged_buckets(connection)
        for bucket in self._staged:
            self._exclusive.run(self._attempt_bucket, bucket, self.history_rows)
            self.published_buckets.append(bucket)
            self._renew_unpublished()
        self.seconds = time.perf_counter() - started

    @property
    def seconds_waited(self) -> float:
        """How long the publish waited for long readers of ``lead_scores`` (PostgreSQL)."""
        return self._exclusive.seconds_waited

    def _renew_unpublished(self) -> None:
        remaining = [b for b in self._staged if b not in self.published_buckets]
        if remaining:
            scoring_lock(self.db, self.run_id, self.lease_seconds, remaining).renew()

    def _attempt_bucket(self, bucket: int, history_rows: int) -> None:
        """One transaction publishing ``bucket``; the counters start again from before it,
        since a transaction rolled back for want of the exclusive lock counted nothing."""
        self.history_rows = history_rows
        self._publish_bucket(bucket)

    def _publish_bucket(self, bucket: int) -> None:
        lock = scoring_lock(self.db, self.run_id, self.lease_seconds, [bucket])
        with self.db.engine.begin() as connection:
            lock.verify(connection)
            if bucket not in self.staged_buckets(connection):
                raise StagedBuildMissing(f"bucket {bucket:02d} of run {self.run_id} is gone")
            live = partition_name(SCORES, bucket) if self._partitioned(connection) else SCORES
            in_bucket = f"{bucket_sql(self.db.dialect, 'contact_id')} = {bucket}"
            newer, kept = self._keep_newer_scores(connection, bucket, live, in_bucket)
            self.history_rows += record_changes(
                connection,
                staged_scores(bucket),
                self.run_id,
                self.db.bind_timestamp(self.as_of),
                live=live,
            )
            not_kept = (
                ""
                if newer is None
                else f" AND NOT EXISTS (SELECT 1 FROM ({newer}) k "
                f"WHERE k.contact_id = {MALFORMED}.contact_id)"
            )
            connection.execute(
                sa.text(f"DELETE FROM {MALFORMED} WHERE {in_bucket}{not_kept}"), self._as_of_param()
            )
            copy_malformed_rows(connection, malformed_ids(bucket))
            update_last_validation(connection, last_validations(bucket))
            settle_full_rescore(
                connection,
                queue_snapshot(bucket),
                due_later(bucket),
                kept=newer,
                params=self._as_of_param(),
            )
            queued = connection.execute(
                sa.text(f"SELECT count(*) FROM {due_later(bucket)}")
            ).scalar_one()
            if live != SCORES:
                self._swap_partition(connection, bucket)
            else:
                connection.execute(sa.text(f"DELETE FROM {SCORES} WHERE {in_bucket}"))
                connection.execute(
                    sa.text(f"INSERT INTO {SCORES} SELECT * FROM {staged_scores(bucket)}")
                )
                connection.execute(sa.text(f"DROP TABLE {staged_scores(bucket)}"))
            for table in _side_tables(bucket):
                connection.execute(sa.text(f"DROP TABLE {table}"))
            connection.execute(
                sa.text("DELETE FROM staged_builds WHERE table_name = :name"),
                {"name": _build_name(bucket)},
            )
            lock.release(connection)
        self.kept_newer_scores += kept
        self.queued_due_later += queued
        if self._locked_at is not None:
            self.seconds_locked = max(self.seconds_locked, time.perf_counter() - self._locked_at)
            self._locked_at = None

    def _as_of_param(self) -> dict:
        return {"as_of": self.db.bind_timestamp(self.as_of)}

    def _keep_newer_scores(
        self, connection: sa.Connection, bucket: int, live: str, in_bucket: str
    ) -> tuple[str | None, int]:
        """Where the live bucket holds scores computed at a later ``as_of`` than this run's
        (an incremental run, or a later full rescoring, stored them meanwhile), the staged
        bucket takes those rows instead of its own, and its staged malformed rows and
        ``last_platform_validation`` values of those contacts are dropped: the publish keeps
        them as they are. Returns the query of those contacts (taking ``:as_of``; None when
        there are none, the common case, which costs one scan of the live bucket) and their
        number."""
        newer = f"SELECT contact_id FROM {live} WHERE last_calculated_at > :as_of" + (
            "" if live != SCORES else f" AND {in_bucket}"
        )
        kept = connection.execute(
            sa.text(f"SELECT count(*) FROM ({newer}) n"), self._as_of_param()
        ).scalar_one()
        if not kept:
            return None, 0
        columns = ", ".join(SCORE_COLUMNS)
        for statement in (
            f"DELETE FROM {staged_scores(bucket)} WHERE contact_id IN ({newer})",
            (
                f"INSERT INTO {staged_scores(bucket)} ({columns}) SELECT {columns} FROM {live} "
                f"WHERE contact_id IN ({newer})"
            ),
            f"DELETE FROM {last_validations(bucket)} WHERE contact_id IN ({newer})",
            (
                f"DELETE FROM {malformed_ids(bucket)} WHERE validation_id IN (SELECT v.id FROM "
                f"platform_validations v WHERE v.contact_id IN ({newer}))"
            ),
        ):
            connection.execute(sa.text(statement), self._as_of_param())
        return newer, kept

    def _partitioned(self, connection: sa.Connection) -> bool:
        return self.db.dialect == "postgresql" and bool(
            connection.execute(
                sa.text("SELECT to_regclass(:name) IS NOT NULL"),
                {"name": partition_name(SCORES, 0)},
            ).scalar_one()
        )

    def _swap_partition(self, connection: sa.Connection, bucket: int) -> None:
        """The staged bucket in place of the live partition, under the parent: it carries a
        check of its bound, so attaching it reads no row."""
        live, staged = partition_name(SCORES, bucket), staged_scores(bucket)
        renames = index_renames(connection, live, staged)
        bound = connection.execute(
            sa.text(
                "SELECT pg_get_expr(relpartbound, oid) FROM pg_class WHERE oid = "
                "CAST(:name AS regclass)"
            ),
            {"name": live},
        ).scalar_one()
        self._exclusive.lock(connection)
        self._locked_at = time.perf_counter()
        replace_partition(connection, SCORES, live, staged, bound, renames)

    def discard(self) -> None:
        """Drop this run's staged buckets (a failed audit or publish) and release their lock;
        refused (``LockLost``) once the run no longer holds it."""
        with self.db.engine.begin() as connection:
            try:
                buckets = self.staged_buckets(connection)
            except StagedBuildMissing:
                self.lock.verify(connection)
                raise
            lock = scoring_lock(self.db, self.run_id, self.lease_seconds, buckets)
            lock.verify(connection)
            for bucket in buckets:
                self._drop(connection, bucket)
            connection.execute(
                sa.text("DELETE FROM staged_builds WHERE table_name IN :names").bindparams(
                    sa.bindparam("names", expanding=True)
                ),
                {"names": [_build_name(b) for b in buckets]},
            )
            lock.release(connection)
