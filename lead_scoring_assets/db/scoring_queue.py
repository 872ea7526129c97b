"""The scoring queue: claim a batch of dirty contacts, then settle it in one transaction.

A claim is a lease: ``leased_by`` names the run, ``leased_until`` when the claim lapses, so
the entries of a crashed run become claimable again. Every claim counts an attempt, so a batch
that kills its worker is dead-lettered after ``MAX_ATTEMPTS`` claims. Settling is fenced: a
run writes only the contacts whose entries it still holds (its lease unexpired, at the version
it claimed) and never replaces a score computed at a later ``as_of``. Claims and counts are
served by indexes (migration ``0011``), so they cost the batch, not the queue: each group of
the claim order has its own, and the number of entries is kept by triggers in
``scoring_queue_size``.
"""

from dataclasses import dataclass

import pandas as pd
import sqlalchemy as sa

from lead_scoring_assets.db.database import Database
from lead_scoring_assets.db.errors import lock_not_available
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
CLAIM_ORDER = (
    "CASE WHEN leased_by = :owner THEN 0 WHEN leased_until IS NOT NULL THEN 1 ELSE 2 END, "
    "priority DESC, updated_at, contact_id"
)
"""The one claim order, the same on both dialects: a retry's own entries, then entries whose
lease expired, then by priority (highest first), then oldest first. ``claim`` takes it group
by group (``CLAIM_GROUPS``), each in ``GROUP_ORDER``, so an index serves every step."""
GROUP_ORDER = "priority DESC, updated_at, contact_id"
CLAIM_GROUPS = (
    "leased_by = :owner",
    "leased_until < {now} AND (leased_by IS NULL OR leased_by <> :owner)",
    "leased_until IS NULL AND (leased_by IS NULL OR leased_by <> :owner)",
)
"""The groups of ``CLAIM_ORDER``: disjoint, together exactly the claimable entries. The last
is read in ``GROUP_ORDER`` from ``ix_scoring_queue_claim_order``; the first two are the few
leased entries (``ix_scoring_queue_leased_by``, ``ix_scoring_queue_lease``)."""
RECLAIM_MIN_BYTES = 64 * 2**20
"""``reclaim`` gives an empty queue's files back only above this size."""
RECLAIM_LOCK_TIMEOUT = "500ms"
"""How long ``reclaim`` waits for its lock (queue writers wait behind it meanwhile)."""
LOST_WORKER_ERROR = f"claimed {MAX_ATTEMPTS} times without settling (the run's worker died)"
DUE_LATER_PRIORITY = 5
"""A contact queued again for its rows due later waits as a validation change does."""


@dataclass(frozen=True)
class QueueDepth:
    claimable: int
    leased: int
    dead_letters: int


@dataclass(frozen=True)
class Settlement:
    """What settling a batch did: scores written, entries removed, history rows written, and
    contacts left alone because the run no longer held their entry or a later score was
    stored."""

    scored: int
    removed: int
    history_rows: int
    skipped_lost_lease: int
    skipped_newer_score: int


def _now(dialect: str) -> str:
    return (
        "clock_timestamp()" if dialect == "postgresql" else "strftime('%Y-%m-%d %H:%M:%f', 'now')"
    )


def _statement_now(dialect: str) -> str:
    """The time as of the statement's start: an index condition may compare with it (PostgreSQL
    cannot with the volatile ``clock_timestamp()``)."""
    return "statement_timestamp()" if dialect == "postgresql" else _now(dialect)


def _lease_end(dialect: str) -> str:
    if dialect == "postgresql":
        return "clock_timestamp() + make_interval(secs => :lease_seconds)"
    return "strftime('%Y-%m-%d %H:%M:%f', 'now', '+' || :lease_seconds || ' seconds')"


def settle_full_rescore(
    connection: sa.Connection,
    snapshot: str,
    due_later: str,
    kept: str | None = None,
    params: dict | None = None,
) -> None:
    """Settle the queue entries of the contacts one bucket of a full rescoring published, in
    the publish's transaction; set-based.

    ``snapshot`` (``contact_id``, ``version``) is the queue as the rescoring found it before
    reading; ``due_later`` (``contact_id``, ``not_before``) the contacts with rows dated after
    its ``as_of`` but not malformed for it; ``kept`` a query (with its ``params``) of the
    contacts whose newer stored score the publish kept. An entry the rescoring covered (the
    version of the snapshot) is removed, unless its contact has rows due later or a kept
    score (that score may lack the entry's work). Every contact with rows due later is
    queued, also one without an entry: waiting until ``not_before`` while that is ahead (as
    the incremental settlement leaves it), else claimable at once; an entry enqueued again
    since the snapshot, or of a kept score, stays as it is."""
    now = _now(connection.dialect.name)
    covered = (
        f"EXISTS (SELECT 1 FROM {snapshot} s WHERE s.contact_id = "
        "scoring_queue.contact_id AND s.version = scoring_queue.version)"
    )
    not_kept = "" if kept is None else f" AND scoring_queue.contact_id NOT IN ({kept})"
    params = params or {}
    connection.execute(
        sa.text(
            f"DELETE FROM scoring_queue WHERE {covered} AND NOT EXISTS (SELECT 1 FROM {due_later} d "
            f"WHERE d.contact_id = scoring_queue.contact_id){not_kept}"
        ),
        params,
    )
    connection.execute(
        sa.text(
            "INSERT INTO scoring_queue (contact_id, priority, created_at, updated_at, "
            f"leased_until) SELECT contact_id, :priority, {now}, {now}, CASE WHEN not_before > "
            f"{now} THEN not_before END FROM {due_later} WHERE true ON CONFLICT (contact_id) DO "
            "UPDATE SET leased_until = excluded.leased_until, leased_by = NULL, attempts = 0 "
            f"WHERE {covered}{not_kept}"
        ),
        {**params, "priority": DUE_LATER_PRIORITY},
    )


def join_by_index(connection: sa.Connection, enabled: bool) -> None:
    """PostgreSQL, for the rest of the transaction: with ``enabled``, joins run as nested
    loops, from the batch's temporary tables into the indexes of the tables they meet
    (``lead_scores`` partition by partition, pruned at run time, ``platform_validations``,
    the queue); otherwise the planner may hash a whole table or every partition for a batch
    of 50,000, a cost that grows with the table instead of the batch. Not for statements
    that fire triggers joining transition tables (no index there): ``enabled=False`` turns
    hash and merge joins back on."""
    if connection.dialect.name == "postgresql":
        value = "off" if enabled else "on"
        connection.execute(sa.text(f"SET LOCAL enable_hashjoin = {value}"))
        connection.execute(sa.text(f"SET LOCAL enable_mergejoin = {value}"))


class ScoringQueue:
    """Claims, reads and settles batches of ``scoring_queue``."""

    def __init__(self, database: Database):
        self.db = database
        self.now = _now(database.dialect)
        self.statement_now = _statement_now(database.dialect)

    def depth(self) -> QueueDepth:
        """Exact counts, cheap at any depth: claimable entries (all entries, from
        ``scoring_queue_size``, less the leased ones), leased entries (leases not yet run out
        and entries waiting for their ``not_before``, from ``ix_scoring_queue_lease``), dead
        letters. On PostgreSQL the counts appended since the last call are folded into one
        row first."""
        with self.db.engine.begin() as connection:
            if self.db.dialect == "postgresql":
                connection.execute(
                    sa.text(
                        "WITH folded AS (DELETE FROM scoring_queue_size RETURNING entries) "
                        "INSERT INTO scoring_queue_size (entries) "
                        "SELECT coalesce(sum(entries), 0) FROM folded"
                    )
                )
            entries, leased, dead = connection.execute(
                sa.text(
                    "SELECT (SELECT coalesce(sum(entries), 0) FROM scoring_queue_size), "
                    "(SELECT count(*) FROM scoring_queue WHERE leased_until IS NOT NULL "
                    f"AND leased_until >= {self.statement_now}), "
                    "(SELECT count(*) FROM scoring_dead_letters)"
                )
            ).one()
        return QueueDepth(int(entries) - leased, leased, dead)

    def claim(self, owner: str, batch_size: int, lease_seconds: int) -> pd.DataFrame:
        """Lease up to ``batch_size`` entries in ``CLAIM_ORDER``, counting an attempt each;
        returns their ``contact_id``, ``version`` and ``attempts``. Claimable entries already
        claimed ``MAX_ATTEMPTS`` times move to ``scoring_dead_letters`` first: those are
        leased ones (a released entry has its attempts reset, or is dead-lettered by
        ``fail``)."""
        postgresql = self.db.dialect == "postgresql"
        params = {"owner": owner, "lease_seconds": lease_seconds}
        groups = [group.format(now=self.statement_now) for group in CLAIM_GROUPS]
        claimed = []
        with self.db.engine.begin() as connection:
            for group in groups[:2]:
                worn_out = f"attempts >= :max AND {group}"
                connection.execute(
                    sa.text(f"UPDATE scoring_queue SET last_error = :error WHERE {worn_out}"),
                    {"error": LOST_WORKER_ERROR, "max": MAX_ATTEMPTS, "owner": owner},
                )
                self._dead_letter(connection, worn_out, {"owner": owner})
            for group in groups:
                wanted = batch_size - len(claimed)
                if wanted <= 0:
                    break
                picked = (
                    f"SELECT contact_id FROM scoring_queue WHERE {group} "
                    f"ORDER BY {GROUP_ORDER} LIMIT :wanted"
                )
                # PostgreSQL: the picked ids as one array, looked up by primary key (joined
                # with IN, the planner reads the whole queue to hash it)
                picked = (
                    f"= ANY(ARRAY({picked} FOR UPDATE SKIP LOCKED))"
                    if postgresql
                    else f"IN ({picked})"
                )
                claimed += connection.execute(
                    sa.text(
                        f"UPDATE scoring_queue SET leased_by = :owner, attempts = attempts + 1, "
                        f"leased_until = {_lease_end(self.db.dialect)}, last_attempt_at = {self.now} "
                        f"WHERE contact_id {picked} RETURNING contact_id, version, attempts"
                    ),
                    {**params, "wanted": wanted},
                ).all()
        return pd.DataFrame(claimed, columns=["contact_id", "version", "attempts"])

    def reclaim(self, min_bytes: int = RECLAIM_MIN_BYTES) -> int | None:
        """Give back the files of an emptied queue (PostgreSQL): a queue that held millions of
        entries keeps its table and index pages after they are deleted. If it is empty and
        its files take more than ``min_bytes``, it is truncated under an exclusive lock (taken
        within ``RECLAIM_LOCK_TIMEOUT``, else left for the next time); returns the bytes
        given back, None if nothing was done.

        ``TRUNCATE`` is not MVCC-safe: a repeatable-read transaction that began before it and
        reads the queue only afterwards sees it empty (none of this project's does)."""
        if self.db.dialect != "postgresql":
            return None
        size = "SELECT pg_total_relation_size('scoring_queue')"
        empty = "SELECT coalesce(sum(entries), 0) = 0 FROM scoring_queue_size"
        with self.db.engine.connect() as connection, connection.begin() as transaction:
            before = connection.execute(sa.text(size)).scalar_one()
            if before <= min_bytes or not connection.execute(sa.text(empty)).scalar_one():
                return None
            connection.execute(sa.text(f"SET LOCAL lock_timeout = '{RECLAIM_LOCK_TIMEOUT}'"))
            try:
                connection.execute(sa.text("LOCK TABLE scoring_queue IN ACCESS EXCLUSIVE MODE"))
            except sa.exc.OperationalError as error:
                if not lock_not_available(error):
                    raise
                transaction.rollback()
                return None
            if not connection.execute(sa.text(empty)).scalar_one():
                return None
            connection.execute(sa.text("TRUNCATE scoring_queue"))
            return before - connection.execute(sa.text(size)).scalar_one()

    def read_batch(self, owner: str) -> tuple[pd.DataFrame, pd.DataFrame]:
        """The claimed contacts and every validation row that names them, looked up by the
        claimed ids in the indexes of ``contacts`` and ``platform_validations``."""
        claimed = self._among("SELECT contact_id FROM scoring_queue WHERE leased_by = :owner")
        contacts = self.db.read_frame(
            f"SELECT {', '.join(CONTACT_COLUMNS)} FROM contacts WHERE id {claimed}",
            {"owner": owner},
        )
        validations = self.db.read_frame(
            f"SELECT {', '.join(SCORING_VALIDATION_COLUMNS)} FROM platform_validations "
            f"WHERE contact_id {claimed}",
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
        lock=None,
        waiting: pd.DataFrame | None = None,
    ) -> Settlement:
        """Settle a batch in one transaction, fenced.

        First ``lock`` (the run's ``WriterLock``) is verified and the claimed entries are
        locked; a contact is settled only if ``owner`` still holds its entry (lease unexpired,
        version as claimed) and no score computed at a later ``as_of`` is stored. For those:
        score history, the upserted scores, removal of the scores of contacts that no longer
        exist, their malformed rows, ``last_platform_validation``, and their queue entries.
        The others stay queued (released, attempts reset) for a later run; an emptied queue's
        files are given back (``reclaim``). A contact in
        ``waiting`` (``contact_id``, ``not_before``: rows dated after this run's ``as_of``) is
        settled but stays queued, claimable from ``not_before`` on, so its score catches up
        once those rows are due."""
        with self.db.engine.begin() as connection:
            if lock is not None:
                lock.verify(connection)
            join_by_index(connection, True)
            self._fill_temporary(
                connection,
                "settled_batch",
                "contact_id BIGINT PRIMARY KEY, version BIGINT NOT NULL",
                claimed[["contact_id", "version"]],
            )
            if self.db.dialect == "postgresql":
                connection.execute(
                    sa.text(
                        "SELECT 1 FROM scoring_queue WHERE contact_id IN "
                        "(SELECT contact_id FROM settled_batch) FOR UPDATE"
                    )
                ).all()
            lost = connection.execute(
                sa.text(
                    "DELETE FROM settled_batch WHERE NOT EXISTS (SELECT 1 FROM scoring_queue q "
                    "WHERE q.contact_id = settled_batch.contact_id AND q.version = "
                    "settled_batch.version AND q.leased_by = :owner "
                    f"AND q.leased_until >= {self.statement_now})"
                ),
                {"owner": owner},
            ).rowcount
            newer = history_rows = written = 0
            if not scores.empty:
                self._fill_temporary(
                    connection, "settled_scores", None, scores[list(SCORE_COLUMNS)]
                )
                newer = connection.execute(
                    sa.text(
                        "DELETE FROM settled_batch WHERE contact_id IN (SELECT s.contact_id FROM "
                        "settled_scores s JOIN lead_scores o ON o.contact_id = s.contact_id "
                        "WHERE o.last_calculated_at > s.last_calculated_at)"
                    )
                ).rowcount
                connection.execute(
                    sa.text(
                        "DELETE FROM settled_scores WHERE contact_id NOT IN "
                        "(SELECT contact_id FROM settled_batch)"
                    )
                )
                written = connection.execute(
                    sa.text("SELECT count(*) FROM settled_scores")
                ).scalar_one()
                history_rows = record_changes(
                    connection, "settled_scores", owner, self.db.bind_timestamp(detected_at)
                )
                updates = ", ".join(f"{c} = excluded.{c}" for c in SCORE_COLUMNS[1:])
                connection.execute(
                    sa.text(
                        f"INSERT INTO lead_scores ({', '.join(SCORE_COLUMNS)}) SELECT "
                        f"{', '.join(SCORE_COLUMNS)} FROM settled_scores WHERE true "
                        f"ON CONFLICT (contact_id) DO UPDATE SET {updates} "
                        "WHERE lead_scores.last_calculated_at <= excluded.last_calculated_at"
                    )
                )
            connection.execute(
                sa.text(
                    "DELETE FROM lead_scores WHERE contact_id IN (SELECT s.contact_id FROM "
                    "settled_batch s WHERE NOT EXISTS (SELECT 1 FROM contacts c "
                    "WHERE c.id = s.contact_id))"
                )
            )
            connection.execute(
                sa.text(
                    "DELETE FROM malformed_validations WHERE contact_id "
                    + self._among("SELECT contact_id FROM settled_batch")
                )
            )
            if not malformed.empty:
                self._fill_temporary(
                    connection,
                    "settled_malformed",
                    malformed_ids_columns(self.db),
                    pd.DataFrame(
                        {
                            "validation_id": malformed["id"],
                            "reason": malformed["reason"],
                            "detected_at": detected_at,
                        }
                    ),
                )
                connection.execute(
                    sa.text(
                        "DELETE FROM settled_malformed WHERE NOT EXISTS (SELECT 1 FROM "
                        "platform_validations v JOIN settled_batch s ON s.contact_id = v.contact_id "
                        "WHERE v.id = settled_malformed.validation_id)"
                    )
                )
                connection.execute(
                    sa.text(
                        "DELETE FROM malformed_validations WHERE validation_id IN "
                        "(SELECT validation_id FROM settled_malformed)"
                    )
                )
                copy_malformed_rows(connection, "settled_malformed")
            if waiting is not None and not waiting.empty:
                self._fill_temporary(
                    connection,
                    "settled_waiting",
                    f"contact_id BIGINT PRIMARY KEY, not_before {self.db.timestamp_ddl}",
                    waiting[["contact_id", "not_before"]],
                )
                connection.execute(
                    sa.text(
                        "UPDATE scoring_queue SET leased_by = NULL, attempts = 0, leased_until = "
                        "(SELECT w.not_before FROM settled_waiting w "
                        "WHERE w.contact_id = scoring_queue.contact_id) "
                        "WHERE leased_by = :owner AND contact_id IN (SELECT s.contact_id FROM "
                        "settled_batch s JOIN settled_waiting w ON w.contact_id = s.contact_id)"
                    ),
                    {"owner": owner},
                )
            removed = connection.execute(
                sa.text(
                    "DELETE FROM scoring_queue WHERE leased_by = :owner AND EXISTS (SELECT 1 FROM "
                    "settled_batch s WHERE s.contact_id = scoring_queue.contact_id "
                    "AND s.version = scoring_queue.version)"
                ),
                {"owner": owner},
            ).rowcount
            connection.execute(
                sa.text(
                    "UPDATE scoring_queue SET leased_by = NULL, leased_until = NULL, attempts = 0 "
                    "WHERE leased_by = :owner"
                ),
                {"owner": owner},
            )
            if not last_validation.empty:
                self._fill_temporary(
                    connection,
                    "settled_last_validation",
                    last_validation_columns(self.db),
                    last_validation[["contact_id", "last_platform_validation"]],
                )
                connection.execute(
                    sa.text(
                        "DELETE FROM settled_last_validation WHERE contact_id NOT IN "
                        "(SELECT contact_id FROM settled_batch)"
                    )
                )
                # the contacts' triggers join their transition tables: hash joins again
                join_by_index(connection, False)
                update_last_validation(connection, "settled_last_validation", by_id=True)
        if removed:
            self.reclaim()
        return Settlement(written, removed, history_rows, lost, newer)

    def _among(self, ids: str) -> str:
        """A condition on a column: among the ids of the query ``ids``. On PostgreSQL as one
        array, looked up in the column's index: joined, the planner may read the whole table
        (to hash it, or because it is smaller than the batch)."""
        return f"= ANY(ARRAY({ids}))" if self.db.dialect == "postgresql" else f"IN ({ids})"

    def _fill_temporary(
        self, connection, table: str, columns: str | None, frame: pd.DataFrame
    ) -> None:
        """An empty temporary ``table`` (``columns`` DDL, or shaped as lead_scores), filled
        with ``frame``; it lives as long as the connection."""
        if columns is None:
            shape = (
                "(LIKE lead_scores)"
                if self.db.dialect == "postgresql"
                else "AS SELECT * FROM lead_scores WHERE 0"
            )
            connection.execute(sa.text(f"CREATE TEMPORARY TABLE IF NOT EXISTS {table} {shape}"))
        else:
            connection.execute(sa.text(f"CREATE TEMPORARY TABLE IF NOT EXISTS {table} ({columns})"))
        connection.execute(sa.text(f"DELETE FROM {table}"))
        self.db.insert_rows(connection, table, frame)
        if self.db.dialect == "postgresql":
            connection.execute(sa.text(f"ANALYZE {table}"))

    def fail(self, owner: str, errors: dict[int, str]) -> int:
        """Record failures of entries ``owner`` still holds: the error, lease released; an
        entry claimed ``MAX_ATTEMPTS`` times moves to ``scoring_dead_letters``. Returns how
        many moved."""
        with self.db.engine.begin() as connection:
            held = []
            for contact_id, error in errors.items():
                held += (
                    connection.execute(
                        sa.text(
                            "UPDATE scoring_queue SET last_error = :error, leased_by = NULL, "
                            "leased_until = NULL WHERE contact_id = :id AND leased_by = :owner "
                            "RETURNING contact_id"
                        ),
                        {"error": error[:2000], "id": contact_id, "owner": owner},
                    )
                    .scalars()
                    .all()
                )
            if not held:
                return 0
            failed = ", ".join(str(int(i)) for i in held)
            return self._dead_letter(connection, f"attempts >= :max AND contact_id IN ({failed})")

    def _dead_letter(self, connection, condition: str, params: dict | None = None) -> int:
        """Move the entries matching ``condition`` to ``scoring_dead_letters``."""
        params = {"max": MAX_ATTEMPTS, **(params or {})}
        connection.execute(
            sa.text(
                "INSERT INTO scoring_dead_letters (contact_id, attempts, last_error, "
                f"first_enqueued_at, failed_at) SELECT contact_id, attempts, "
                f"coalesce(last_error, ''), created_at, {self.now} FROM scoring_queue "
                f"WHERE {condition} ON CONFLICT (contact_id) DO UPDATE SET "
                "attempts = excluded.attempts, last_error = excluded.last_error, "
                "failed_at = excluded.failed_at"
            ),
            params,
        )
        return connection.execute(
            sa.text(f"DELETE FROM scoring_queue WHERE {condition}"), params
        ).rowcount
