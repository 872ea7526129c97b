"""Write a full rescoring aside, then swap it in at once.

Readers see the previous ``lead_scores`` until the swap commits; a failed or killed run
leaves only staging tables behind, which the next run drops.
"""

import pandas as pd
import sqlalchemy as sa

from lead_scoring_assets.db.database import Database
from lead_scoring_assets.db.score_history import record_changes
from lead_scoring_assets.db.scoring_queue import SCORING_LOCK
from lead_scoring_assets.db.settle import (
    copy_malformed_rows,
    last_validation_columns,
    malformed_ids_columns,
    update_last_validation,
)
from lead_scoring_assets.db.staged_table import StagedTable

SCORES = "lead_scores"
MALFORMED = "malformed_validations"
STAGED_SCORES = "lead_scores_next"
MALFORMED_IDS = "malformed_validation_ids_next"
LAST_VALIDATION = "contact_last_validation_next"
QUEUE_SNAPSHOT = "scoring_queue_snapshot_next"
_FULL_RESCORE_LOCK = 7_301_265_001


class ScoreSwap(StagedTable):
    """Stage scores, malformed rows and ``last_platform_validation`` changes; swap on success.

    Use as a context manager: leaving the block normally commits the swap; an exception
    drops the staging tables and leaves every live table as it was. On PostgreSQL the run
    holds the scoring lock exclusively from start to swap, so no incremental run writes
    scores the swap would overwrite; queue entries present at the start (at the version
    then) are covered by this run and removed at the swap.
    """

    def __init__(self, database: Database, run_id: str | None = None, as_of=None):
        super().__init__(database, SCORES)
        self.run_id = run_id
        self.as_of = as_of
        self.history_rows = 0

    def _take_lock(self) -> None:
        if self.db.dialect != "postgresql":
            return
        self._lock = self.db.engine.connect()
        got = self._lock.execute(
            sa.text("SELECT pg_try_advisory_xact_lock(:key)"), {"key": _FULL_RESCORE_LOCK}
        ).scalar()
        if not got:
            raise RuntimeError("another full rescoring is running on this database")
        self._lock.execute(sa.text("SET LOCAL lock_timeout = '10min'"))
        self._lock.execute(sa.text("SELECT pg_advisory_xact_lock(:key)"), {"key": SCORING_LOCK})

    def _release_lock(self) -> None:
        if self._lock is not None:
            self._lock.rollback()
            self._lock.close()
            self._lock = None

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
        """Stage one chunk: its score rows, malformed rows and changed last validations."""
        self.db.append_frame(STAGED_SCORES, scores, self._connection)
        kept = pd.DataFrame({"validation_id": malformed["id"], "reason": malformed["reason"],
                             "detected_at": detected_at})
        self.db.append_frame(MALFORMED_IDS, kept, self._connection)
        self.db.append_frame(LAST_VALIDATION, last_validation_changes, self._connection)
        if self._connection is not None:
            self._connection.commit()

    def drop(self, connection) -> None:
        for table in (STAGED_SCORES, MALFORMED_IDS, LAST_VALIDATION, QUEUE_SNAPSHOT):
            connection.execute(sa.text(f"DROP TABLE IF EXISTS {table}"))

    def after_swap(self, connection) -> None:
        """Everything else the run staged, in the swap's transaction."""
        connection.execute(sa.text(f"DELETE FROM {MALFORMED}"))
        copy_malformed_rows(connection, MALFORMED_IDS)
        update_last_validation(connection, LAST_VALIDATION)
        self._settle_queue(connection)
        self.drop(connection)

    def before_swap(self, connection) -> None:
        """History rows for every changed score, before the old scores go."""
        self.history_rows = record_changes(
            connection, STAGED_SCORES, self.run_id, self.db.bind_timestamp(self.as_of)
        )

    @staticmethod
    def _settle_queue(connection) -> None:
        """Remove the queue entries this run covered: present at its start, not changed since."""
        connection.execute(sa.text(
            f"DELETE FROM scoring_queue WHERE EXISTS (SELECT 1 FROM {QUEUE_SNAPSHOT} s "
            "WHERE s.contact_id = scoring_queue.contact_id AND s.version = scoring_queue.version)"
        ))
