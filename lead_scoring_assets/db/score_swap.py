"""Stage a full rescoring aside, audit it, then swap it in at once.

Readers see the previous ``lead_scores`` until the swap commits; a failed, killed or refused
run leaves only staging tables behind, which the next run drops.
"""

import pandas as pd
import sqlalchemy as sa

from lead_scoring_assets.db.database import Database
from lead_scoring_assets.db.score_history import record_changes
from lead_scoring_assets.db.settle import (
    copy_malformed_rows,
    last_validation_columns,
    malformed_ids_columns,
    update_last_validation,
)
from lead_scoring_assets.db.staged_table import StagedTable
from lead_scoring_assets.db.writer_lock import WriterLock

SCORES = "lead_scores"
MALFORMED = "malformed_validations"
STAGED_SCORES = "lead_scores_next"
MALFORMED_IDS = "malformed_validation_ids_next"
LAST_VALIDATION = "contact_last_validation_next"
QUEUE_SNAPSHOT = "scoring_queue_snapshot_next"
FULL_RESCORE_LEASE_SECONDS = 900
"""How long a full rescoring's lock outlives its last sign of life (a staged chunk, the end of
staging): long enough for the audit and the publish step."""
INCREMENTAL_WAIT_SECONDS = 600
"""How long a full rescoring waits for running incremental runs to settle."""


def scoring_lock(database: Database, holder: str, lease_seconds: float) -> WriterLock:
    """The lock every writer of ``lead_scores`` takes: full rescorings exclusively,
    incremental runs shared."""
    return WriterLock(database, SCORES, holder, lease_seconds)


class ScoreSwap(StagedTable):
    """Stage scores, malformed rows and ``last_platform_validation`` changes; publish them
    together once audited.

    ``with swap.stage(): swap.add(...)`` builds the staged tables under the scoring lock held
    exclusively (incremental runs wait), and keeps the lock for the publish step; ``publish()``
    (possibly another process of the same run) checks that the run still holds its lease and
    swaps everything in one transaction; ``discard()`` drops the staged rows and releases the
    lock. Queue entries present at the start (at the version then) are covered by this run and
    removed at the swap.
    """

    def __init__(self, database: Database, run_id: str | None = None, as_of=None,
                 lease_seconds: float = FULL_RESCORE_LEASE_SECONDS,
                 wait_seconds: float = INCREMENTAL_WAIT_SECONDS):
        super().__init__(database, SCORES, run_id=run_id, as_of=as_of)
        self.lock = scoring_lock(database, self.run_id, lease_seconds)
        self.wait_seconds = wait_seconds
        self.history_rows = 0

    def _take_lock(self) -> None:
        self.lock.acquire_exclusive(wait_seconds=self.wait_seconds)

    def _release_lock(self, failed: bool) -> None:
        """A staged build keeps the lock (renewed) for its publish; a failed one released it
        when it was abandoned."""
        if not failed:
            self.lock.renew()

    def _abandon(self) -> None:
        """A build that failed half-way: drop its tables and release the lock, but only while
        this run still holds it (after a lost lease the tables may be another run's)."""
        with self.db.engine.begin() as connection:
            if self.lock.holds(connection):
                self.drop(connection)
                self.lock.release(connection)

    def create(self, connection) -> None:
        """The staged scores plus the tables of malformed rows, last validations and the
        queue snapshot."""
        super().create(connection)
        connection.execute(sa.text(
            f"CREATE TABLE {MALFORMED_IDS} ({malformed_ids_columns(self.db)})"))
        connection.execute(sa.text(
            f"CREATE TABLE {LAST_VALIDATION} ({last_validation_columns(self.db)})"))
        connection.execute(sa.text(
            f"CREATE TABLE {QUEUE_SNAPSHOT} (contact_id BIGINT PRIMARY KEY, "
            "version BIGINT NOT NULL)"
        ))
        connection.execute(sa.text(
            f"INSERT INTO {QUEUE_SNAPSHOT} SELECT contact_id, version FROM scoring_queue"
        ))

    def add(
        self,
        scores: pd.DataFrame,
        malformed: pd.DataFrame,
        last_validation_changes: pd.DataFrame,
        detected_at: pd.Timestamp,
    ) -> None:
        """Stage one chunk: its score rows, malformed rows and changed last validations; the
        lock's lease is renewed."""
        self.db.append_frame(STAGED_SCORES, scores, self._connection)
        kept = pd.DataFrame({"validation_id": malformed["id"], "reason": malformed["reason"],
                             "detected_at": detected_at})
        self.db.append_frame(MALFORMED_IDS, kept, self._connection)
        self.db.append_frame(LAST_VALIDATION, last_validation_changes, self._connection)
        if self._connection is not None:
            self._connection.commit()
        self.lock.renew()

    def drop(self, connection) -> None:
        for table in (STAGED_SCORES, MALFORMED_IDS, LAST_VALIDATION, QUEUE_SNAPSHOT):
            connection.execute(sa.text(f"DROP TABLE IF EXISTS {table}"))

    def discard(self) -> None:
        """Drop this run's staged rows (a failed audit or publish) and release the scoring
        lock; refused (``LockLost``) once the run no longer holds it."""
        with self.db.engine.begin() as connection:
            self.lock.verify(connection)
            self.staged_build(connection)
            self._drop_build(connection)
            self.lock.release(connection)

    def before_swap(self, connection) -> None:
        """Fencing first (this run still holds its lease), then history rows for every changed
        score, the malformed rows, the ``last_platform_validation`` changes and the queue
        settlement: all in the swap's transaction, before the exclusive lock on
        ``lead_scores``, so readers wait only for the swap itself."""
        self.lock.verify(connection)
        self.staged_build(connection)
        self.history_rows = record_changes(connection, STAGED_SCORES, self.run_id,
                                           self.db.bind_timestamp(self.as_of))
        connection.execute(sa.text(f"DELETE FROM {MALFORMED}"))
        copy_malformed_rows(connection, MALFORMED_IDS)
        update_last_validation(connection, LAST_VALIDATION)
        self._settle_queue(connection)

    def after_swap(self, connection) -> None:
        """The lock is released when the swap commits."""
        self.lock.release(connection)

    @staticmethod
    def _settle_queue(connection) -> None:
        """Remove the queue entries this run covered: present at its start, not changed since."""
        connection.execute(sa.text(
            f"DELETE FROM scoring_queue WHERE EXISTS (SELECT 1 FROM {QUEUE_SNAPSHOT} s "
            "WHERE s.contact_id = scoring_queue.contact_id AND s.version = scoring_queue.version)"
        ))
