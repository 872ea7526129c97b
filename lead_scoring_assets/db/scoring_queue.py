"""The scoring queue: claim a batch of dirty contacts, then settle it in one transaction.

A claim is a lease: ``leased_by`` names the run, ``leased_until`` when the claim lapses, so
the entries of a crashed run become claimable again. An entry is removed only if its
``version`` is still the one claimed: a contact enqueued again meanwhile stays queued.
"""

from dataclasses import dataclass

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
from lead_scoring_assets.db.tables import (
    CONTACT_COLUMNS,
    SCORE_COLUMNS,
    SCORING_VALIDATION_COLUMNS,
)

MAX_ATTEMPTS = 3
SCORING_LOCK = 7_301_265_002
"""Advisory lock: incremental runs hold it shared, a full rescoring's swap exclusive."""


@dataclass(frozen=True)
class QueueDepth:
    claimable: int
    leased: int
    dead_letters: int


def _now(dialect: str) -> str:
    return "clock_timestamp()" if dialect == "postgresql" else "strftime('%Y-%m-%d %H:%M:%f', 'now')"


def _lease_end(dialect: str) -> str:
    if dialect == "postgresql":
        return "clock_timestamp() + make_interval(secs => :lease_seconds)"
    return "strftime('%Y-%m-%d %H:%M:%f', 'now', '+' || :lease_seconds || ' seconds')"


class ScoringQueue:
    """Claims, reads and settles batches of ``scoring_queue``."""

    def __init__(self, database: Database):
        self.db = database
        self.now = _now(database.dialect)

    def depth(self) -> QueueDepth:
        """Cheap counts for the sensor: claimable entries, leased entries, dead letters."""
        with self.db.engine.connect() as connection:
            row = connection.execute(sa.text(
                "SELECT "
                f"(SELECT count(*) FROM scoring_queue WHERE leased_until IS NULL "
                f"OR leased_until < {self.now}), "
                f"(SELECT count(*) FROM scoring_queue WHERE leased_until >= {self.now}), "
                "(SELECT count(*) FROM scoring_dead_letters)"
            )).one()
        return QueueDepth(*row)

    def claim(self, owner: str, batch_size: int, lease_seconds: int) -> pd.DataFrame:
        """Lease up to ``batch_size`` entries, highest priority and oldest first; returns their
        ``contact_id``, ``version`` and ``attempts``. Entries already leased by ``owner`` (a
        retry of the same run) are taken back first."""
        skip_locked = " FOR UPDATE SKIP LOCKED" if self.db.dialect == "postgresql" else ""
        with self.db.engine.begin() as connection:
            rows = connection.execute(
                sa.text(
                    f"UPDATE scoring_queue SET leased_by = :owner, "
                    f"leased_until = {_lease_end(self.db.dialect)}, last_attempt_at = {self.now} "
                    "WHERE contact_id IN (SELECT contact_id FROM scoring_queue "
                    f"WHERE leased_until IS NULL OR leased_until < {self.now} "
                    "OR leased_by = :owner "
                    "ORDER BY (leased_by = :owner) DESC, priority DESC, updated_at, contact_id "
                    f"LIMIT :batch_size{skip_locked}) "
                    "RETURNING contact_id, version, attempts"
                ),
                {"owner": owner, "batch_size": batch_size, "lease_seconds": lease_seconds},
            ).all()
        return pd.DataFrame(rows, columns=["contact_id", "version", "attempts"])

    def read_batch(self, owner: str) -> tuple[pd.DataFrame, pd.DataFrame]:
        """The claimed contacts and every validation row that names them."""
        contacts = self.db.read_frame(
            f"SELECT {', '.join('c.' + c for c in CONTACT_COLUMNS)} FROM contacts c "
            "JOIN scoring_queue q ON q.contact_id = c.id WHERE q.leased_by = :owner",
            {"owner": owner},
        )
        validations = self.db.read_frame(
            f"SELECT {', '.join('v.' + c for c in SCORING_VALIDATION_COLUMNS)} "
            "FROM platform_validations v JOIN scoring_queue q ON q.contact_id = v.contact_id "
            "WHERE q.leased_by = :owner",
            {"owner": owner},
        )
        return contacts, validations

    def complete(
        self,
        owner: str,
        claimed: pd.DataFrame,
        scores: pd.DataFrame,
        malformed: pd.DataFrame,
        last_validation: pd.DataFrame,
        detected_at: pd.Timestamp,
    ) -> tuple[int, int]:
        """In one transaction: record score history, upsert the scores, delete the scores of claimed contacts that no
        longer exist, replace their malformed rows, update ``last_platform_validation``, and
        remove the claimed entries still at their claimed version (the rest are released).
        Returns how many entries were removed and how many history rows were written."""
        history_rows = 0
        with self.db.engine.begin() as connection:
            self._fill_temporary(connection, "settled_batch",
                                 "contact_id BIGINT PRIMARY KEY, version BIGINT NOT NULL",
                                 claimed[["contact_id", "version"]])
            connection.execute(sa.text(
                "DELETE FROM lead_scores WHERE contact_id IN (SELECT s.contact_id FROM "
                "settled_batch s WHERE NOT EXISTS (SELECT 1 FROM contacts c "
                "WHERE c.id = s.contact_id))"))
            if not scores.empty:
                self._fill_temporary(connection, "settled_scores", None,
                                     scores[list(SCORE_COLUMNS)])
                history_rows = record_changes(connection, "settled_scores", owner,
                                              self.db.bind_timestamp(detected_at))
                updates = ", ".join(f"{c} = excluded.{c}" for c in SCORE_COLUMNS[1:])
                connection.execute(sa.text(
                    f"INSERT INTO lead_scores ({', '.join(SCORE_COLUMNS)}) SELECT "
                    f"{', '.join(SCORE_COLUMNS)} FROM settled_scores WHERE true "
                    f"ON CONFLICT (contact_id) DO UPDATE SET {updates}"))
            connection.execute(sa.text(
                "DELETE FROM malformed_validations WHERE contact_id IN "
                "(SELECT contact_id FROM settled_batch)"))
            if not malformed.empty:
                self._fill_temporary(
                    connection, "settled_malformed", malformed_ids_columns(self.db),
                    pd.DataFrame({"validation_id": malformed["id"], "reason": malformed["reason"],
                                  "detected_at": detected_at}))
                connection.execute(sa.text(
                    "DELETE FROM malformed_validations WHERE validation_id IN "
                    "(SELECT validation_id FROM settled_malformed)"))
                copy_malformed_rows(connection, "settled_malformed")
            if not last_validation.empty:
                self._fill_temporary(
                    connection, "settled_last_validation", last_validation_columns(self.db),
                    last_validation[["contact_id", "last_platform_validation"]])
                update_last_validation(connection, "settled_last_validation")
            removed = connection.execute(sa.text(
                "DELETE FROM scoring_queue WHERE leased_by = :owner AND EXISTS (SELECT 1 FROM "
                "settled_batch s WHERE s.contact_id = scoring_queue.contact_id "
                "AND s.version = scoring_queue.version)"), {"owner": owner}).rowcount
            connection.execute(sa.text(
                "UPDATE scoring_queue SET leased_by = NULL, leased_until = NULL "
                "WHERE leased_by = :owner"), {"owner": owner})
        return removed, history_rows

    def _fill_temporary(self, connection, table: str, columns: str | None,
                        frame: pd.DataFrame) -> None:
        """An empty temporary ``table`` (``columns`` DDL, or shaped as lead_scores), filled
        with ``frame``; it lives as long as the connection."""
        if columns is None:
            shape = ("(LIKE lead_scores)" if self.db.dialect == "postgresql"
                     else "AS SELECT * FROM lead_scores WHERE 0")
            connection.execute(sa.text(f"CREATE TEMPORARY TABLE IF NOT EXISTS {table} {shape}"))
        else:
            connection.execute(sa.text(f"CREATE TEMPORARY TABLE IF NOT EXISTS {table} ({columns})"))
        connection.execute(sa.text(f"DELETE FROM {table}"))
        self.db.insert_rows(connection, table, frame)
        if self.db.dialect == "postgresql":
            connection.execute(sa.text(f"ANALYZE {table}"))

    def fail(self, owner: str, errors: dict[int, str]) -> int:
        """Record failures: ``attempts`` + 1 and the error; an entry at ``MAX_ATTEMPTS`` moves
        to ``scoring_dead_letters``. Returns how many moved."""
        with self.db.engine.begin() as connection:
            for contact_id, error in errors.items():
                connection.execute(sa.text(
                    "UPDATE scoring_queue SET attempts = attempts + 1, last_error = :error, "
                    "leased_by = NULL, leased_until = NULL WHERE contact_id = :id "
                    "AND leased_by = :owner"),
                    {"error": error[:2000], "id": contact_id, "owner": owner})
            connection.execute(
                sa.text(
                    "INSERT INTO scoring_dead_letters (contact_id, attempts, last_error, "
                    f"first_enqueued_at, failed_at) SELECT contact_id, attempts, last_error, "
                    f"created_at, {self.now} FROM scoring_queue WHERE attempts >= :max "
                    "ON CONFLICT (contact_id) DO UPDATE SET attempts = excluded.attempts, "
                    "last_error = excluded.last_error, failed_at = excluded.failed_at"
                ),
                {"max": MAX_ATTEMPTS},
            )
            return connection.execute(
                sa.text("DELETE FROM scoring_queue WHERE attempts >= :max"), {"max": MAX_ATTEMPTS}
            ).rowcount
