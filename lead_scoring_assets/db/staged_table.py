"""Build a table's next contents aside (``<table>_next``), audit them, then publish at once.

Write, audit, publish: ``stage()`` builds the staged rows and records which run built them in
``staged_builds``; the audit reads the staged table; ``publish(run_id)`` swaps it in only for
the run that built it. Readers see the previous rows until the swap commits; a failed, killed
or refused run leaves only the staging table behind, which the next run drops.

The live table always stays, with its OID, grants, comments, views and row-level security. A
partitioned table (PostgreSQL) is staged as a partitioned table with the same bounds, and
published partition by partition in one transaction: each staged partition is detached from
the staged parent, the live one detached, dropped, and the staged one attached in its place,
under the parent's exclusive lock, which ``ExclusiveSwap`` takes without failing for a long
reader and without holding other readers up. A table that is not partitioned has its rows
replaced in place (``DELETE``, ``INSERT … SELECT``), which readers do not wait for.
"""

import os
import re
import time
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from datetime import UTC, datetime
from typing import Self, TypeVar

import pandas as pd
import sqlalchemy as sa

from lead_scoring_assets.db.audit import AuditFailed
from lead_scoring_assets.db.database import Database
from lead_scoring_assets.db.errors import lock_not_available

NEXT = "_next"
"""Suffix of the staged table and of its indexes until the publish."""
BOUND = "partition_bound"
"""The check a staged partition carries of its partition's bound until it is attached."""


class StagedBuildMissing(RuntimeError):
    """No staged rows of this run wait to be published."""


class StagedTable:
    """The next contents of ``table``, written to ``<table>_next`` by run ``run_id``.

    Two steps: ``with staged.stage(): staged.append(frame)``, then ``staged.publish()``.
    As a context manager it does both at once, with ``audit`` in between (leaving normally
    audits and publishes, an exception drops the staging table). While staging on PostgreSQL
    an advisory lock keeps two runs from writing the same staging table. ``keep_alive`` is
    called while a swap waits for long readers (see ``ExclusiveSwap``). Subclasses stage more
    tables by extending ``create`` and ``drop``, the swap hooks and the locking.
    """

    def __init__(
        self,
        database: Database,
        table: str,
        run_id: str | None = None,
        as_of=None,
        audit=None,
        keep_alive: Callable[[], None] | None = None,
    ):
        self.db = database
        self.table = table
        self.staged = f"{table}{NEXT}"
        self.run_id = run_id or f"adhoc-{datetime.now(UTC):%Y%m%dT%H%M%S.%f}"
        self.as_of = as_of
        self.audit = audit
        self.violations = None
        self.seconds = 0.0
        self.seconds_locked = 0.0
        """How long the publish held the live table's exclusive lock (PostgreSQL, a
        partitioned table; a replacement in place takes none)."""
        self._locked_at: float | None = None
        self._exclusive = ExclusiveSwap(database, table, keep_alive=keep_alive)
        self._lock: sa.Connection | None = None
        self._adbc = None
        self._connection = None

    @contextmanager
    def stage(self) -> Iterator[Self]:
        """Create the staging tables; on success record the build, on an exception drop them."""
        self._take_lock()
        try:
            with self.db.engine.begin() as connection:
                self.drop(connection)
                self.create(connection)
            if self.db.dialect == "postgresql":
                self._adbc = self.db.adbc_connection()
                self._connection = self._adbc.__enter__()
            try:
                yield self
            finally:
                if self._adbc is not None:
                    self._adbc.__exit__(None, None, None)
                    self._adbc = self._connection = None
            self._index_staged()
            self._record_build()
        except BaseException:
            self._abandon()
            self._release_lock(failed=True)
            raise
        self._release_lock(failed=False)

    def __enter__(self) -> Self:
        self._staging = self.stage()
        return self._staging.__enter__()

    def __exit__(self, exc_type, exc, tb) -> None:
        self._staging.__exit__(exc_type, exc, tb)
        if exc_type is None:
            self.audit_then_publish()

    def audit_then_publish(self) -> None:
        """Run ``audit(database, staged_table)`` (rule counts with ``failed`` and
        ``describe``) on the staged rows; publish them only if every rule holds, else discard
        them and raise ``AuditFailed``."""
        if self.audit is not None:
            self.violations = self.audit(self.db, self.staged)
            if self.violations.failed:
                self.discard()
                raise AuditFailed(self.violations, self.table)
        self.publish()

    def append(self, frame: pd.DataFrame) -> None:
        """Stage one chunk of rows (committed to the staging table, not yet visible)."""
        self.db.append_frame(self.staged, frame, self._connection)
        if self._connection is not None:
            self._connection.commit()

    def _index_staged(self) -> None:
        """PostgreSQL: build the live table's indexes on the staged one (under temporary
        names) and analyse it, so the audit reads it by index and the publish only renames."""
        if self.db.dialect != "postgresql":
            return
        with self.db.engine.begin() as connection:
            copy_indexes(connection, self.table, self.staged)
            for name, _, constraint in _partitions(connection, self.table):
                connection.execute(
                    sa.text(f"ALTER TABLE {name}{NEXT} ADD CONSTRAINT {BOUND} CHECK ({constraint})")
                )
            connection.execute(sa.text(f"ANALYZE {self.staged}"))

    def _record_build(self) -> None:
        with self.db.engine.begin() as connection:
            connection.execute(
                sa.text("DELETE FROM staged_builds WHERE table_name = :table"),
                {"table": self.table},
            )
            connection.execute(
                sa.text(
                    "INSERT INTO staged_builds (table_name, run_id, as_of, staged_at) "
                    "VALUES (:table, :run_id, :as_of, :now)"
                ),
                {
                    "table": self.table,
                    "run_id": self.run_id,
                    "as_of": self.db.bind_timestamp(self.as_of),
                    "now": self.db.bind_timestamp(datetime.now(UTC)),
                },
            )

    def staged_build(self, connection: sa.Connection) -> sa.Row:
        """The ``staged_builds`` row of this run's staged rows; raises if there is none."""
        row = connection.execute(
            sa.text("SELECT run_id, as_of FROM staged_builds WHERE table_name = :table"),
            {"table": self.table},
        ).one_or_none()
        if row is None or row.run_id != self.run_id:
            owner = "no run" if row is None else f"run {row.run_id}"
            raise StagedBuildMissing(
                f"{self.staged} holds the rows of {owner}, not of run {self.run_id}: "
                "nothing to publish"
            )
        if row.as_of is not None:
            stamp = pd.Timestamp(row.as_of)
            self.as_of = stamp.tz_localize("UTC") if stamp.tzinfo is None else stamp
        return row

    def _take_lock(self) -> None:
        if self.db.dialect != "postgresql":
            return
        self._lock = self.db.engine.connect()
        got = self._lock.execute(
            sa.text("SELECT pg_try_advisory_xact_lock(hashtext(:key))"),
            {"key": f"lead_scoring:{self.table}"},
        ).scalar()
        if not got:
            self._release_lock(failed=True)
            raise RuntimeError(f"another run is rebuilding {self.table} on this database")

    def _release_lock(self, failed: bool) -> None:
        """Release the staging lock; ``failed``: the staged rows were discarded."""
        if self._lock is not None:
            self._lock.rollback()
            self._lock.close()
            self._lock = None

    def create(self, connection: sa.Connection) -> None:
        """An empty staging table shaped as the live one, partitioned as it is (its indexes
        come after the rows)."""
        if self.db.dialect == "postgresql":
            ddl = f"CREATE TABLE {self.staged} (LIKE {self.table} INCLUDING DEFAULTS)"
            partitions = _partitions(connection, self.table)
            if partitions:
                key = connection.execute(
                    sa.text("SELECT pg_get_partkeydef(CAST(:table AS regclass))"),
                    {"table": self.table},
                ).scalar_one()
                connection.execute(sa.text(f"{ddl} PARTITION BY {key}"))
                for name, bound, _ in partitions:
                    connection.execute(
                        sa.text(f"CREATE TABLE {name}{NEXT} PARTITION OF {self.staged} {bound}")
                    )
                return
        else:
            ddl = sqlite_ddl_like(connection, self.table, self.staged)
        connection.execute(sa.text(ddl))

    def drop(self, connection: sa.Connection) -> None:
        connection.execute(sa.text(f"DROP TABLE IF EXISTS {self.staged}"))

    def _abandon(self) -> None:
        """A build that failed half-way, under this run's staging lock: drop its tables."""
        with self.db.engine.begin() as connection:
            self.drop(connection)

    def discard(self) -> None:
        """Drop this run's staged rows and their build record (a failed audit or publish);
        the live table stays as it is. Rows staged by another run are never touched."""
        with self.db.engine.begin() as connection:
            self.staged_build(connection)
            self._drop_build(connection)

    def _drop_build(self, connection: sa.Connection) -> None:
        self.drop(connection)
        connection.execute(
            sa.text("DELETE FROM staged_builds WHERE table_name = :table"), {"table": self.table}
        )

    def before_swap(self, connection: sa.Connection) -> None:
        """Runs in the swap's transaction while both tables exist, before the live table's
        exclusive lock is taken (a hook for subclasses: put long work here); again if that
        transaction is rolled back for want of the lock."""

    def after_swap(self, connection: sa.Connection) -> None:
        """Runs in the swap's transaction once the live table holds the new rows."""

    def publish(self) -> None:
        """Make this run's staged rows the live ones in one transaction."""
        started = time.perf_counter()
        self._swap()
        ended = time.perf_counter()
        self.seconds = ended - started
        if self._locked_at is not None:
            self.seconds_locked = ended - self._locked_at

    def _swap(self) -> None:
        """PostgreSQL, a partitioned table: its partitions swapped under the parent, in a
        transaction run by ``ExclusiveSwap``. A table that is not partitioned (and SQLite):
        its rows replaced in place."""
        if self.db.dialect == "postgresql":
            with self.db.engine.connect() as connection:
                partitioned = bool(_partitions(connection, self.table))
            if partitioned:
                self._exclusive.run(self._swap_partitions)
                return
        self._replace_rows()

    def _replace_rows(self) -> None:
        """The live rows replaced by the staged ones in one transaction (``DELETE``, ``INSERT …
        SELECT``): the table stays, with its views, grants and comments, and readers keep
        reading the previous rows until the commit (MVCC) without waiting for it. For small
        tables (``ladas_reference``): a large one is partitioned and swapped instead."""
        with self.db.engine.begin() as connection:
            self.staged_build(connection)
            self.before_swap(connection)
            connection.execute(sa.text(f"DELETE FROM {self.table}"))
            connection.execute(sa.text(f"INSERT INTO {self.table} SELECT * FROM {self.staged}"))
            self._published(connection)

    def _swap_partitions(self) -> None:
        """Each staged partition in place of the live one, under the parent, in one
        transaction; the staged partitions carry a check of their bound, so attaching them
        reads no row."""
        with self.db.engine.begin() as connection:
            self.staged_build(connection)
            partitions = _partitions(connection, self.table)
            self.before_swap(connection)
            self._exclusive.lock(connection)
            self._locked_at = time.perf_counter()
            for name, bound, _ in partitions:
                connection.execute(
                    sa.text(f"ALTER TABLE {self.staged} DETACH PARTITION {name}{NEXT}")
                )
                replace_partition(connection, self.table, name, f"{name}{NEXT}", bound)
            connection.execute(sa.text(f"DROP TABLE {self.staged}"))
            self._published(connection)

    def _published(self, connection: sa.Connection) -> None:
        self.after_swap(connection)
        self._drop_build(connection)


SWAP_WAIT_ENV = "LEAD_SCORING_SWAP_WAIT_SECONDS"
SWAP_WAIT_SECONDS = 3600.0
"""How long a swap waits in all, by default, for the readers of its table to let go: longer
than a campaign export of the whole table."""
LOCK_TIMEOUT = "50ms"
"""How long one request for a swapped table's exclusive lock may wait before it is given up;
readers arriving meanwhile queue behind it, so this bounds how long a swap holds them up."""
PAUSES = (0.1, 1.0)
"""The first and the longest pause (s) between two looks at a swapped table's readers."""
KEEP_ALIVE_SECONDS = 60.0
"""How often, by default, a waiting swap calls its ``keep_alive``."""
_HOLDERS = sa.text(
    "SELECT DISTINCT l.virtualtransaction FROM pg_locks l WHERE l.locktype = 'relation' "
    "AND l.granted AND l.pid <> pg_backend_pid() "
    "AND l.database = (SELECT oid FROM pg_database WHERE datname = current_database()) "
    "AND l.relation IN (SELECT relid FROM pg_partition_tree(CAST(:table AS regclass)))"
)
"""The transactions holding a lock on a table or on one of its partitions."""

T = TypeVar("T")


class SwapWaitExceeded(RuntimeError):
    """Readers held a table longer than its swap may wait; nothing of that swap was written."""


def swap_wait_seconds() -> float:
    """``LEAD_SCORING_SWAP_WAIT_SECONDS``, or ``SWAP_WAIT_SECONDS`` when unset."""
    value = os.environ.get(SWAP_WAIT_ENV, "").strip()
    if not value:
        return SWAP_WAIT_SECONDS
    try:
        seconds = float(value)
    except ValueError:
        seconds = -1.0
    if not seconds > 0:
        raise ValueError(f"{SWAP_WAIT_ENV} must be a positive number of seconds, not {value!r}")
    return seconds


class ExclusiveSwap:
    """How every swap (``StagedTable``, ``ScoreSwap``) gets ``table``'s ACCESS EXCLUSIVE lock
    on PostgreSQL: without failing because a reader holds the table for long (a campaign
    export's snapshot), and without holding the table's other readers up meanwhile.

    A lock request that waits queues every later reader of the table behind it, so no request
    here waits longer than ``LOCK_TIMEOUT``. ``run(publish)`` first waits until the table
    looks free: it lists the transactions holding a lock on the table or its partitions; one
    already there at the previous look is a long reader, and the wait goes on without asking
    for the lock; otherwise it asks for it, in a transaction of its own rolled back at once.
    Then ``publish()`` runs its transaction, which does its work and calls ``lock`` just
    before the swap; a lock not granted within ``LOCK_TIMEOUT`` (there or later in that
    transaction) rolls the whole transaction back, its row locks with it, and the wait starts
    again. While waiting, ``keep_alive`` (a writer lease's renewal) is called every
    ``keep_alive_seconds``. After ``wait_seconds`` in all (``LEAD_SCORING_SWAP_WAIT_SECONDS``
    by default), ``SwapWaitExceeded``. SQLite: ``publish()`` runs once, ``lock`` does nothing.
    """

    def __init__(
        self,
        database: Database,
        table: str,
        wait_seconds: float | None = None,
        keep_alive: Callable[[], None] | None = None,
        keep_alive_seconds: float = KEEP_ALIVE_SECONDS,
    ):
        self.db = database
        self.table = table
        self.wait_seconds = swap_wait_seconds() if wait_seconds is None else wait_seconds
        self.keep_alive = keep_alive
        self.keep_alive_seconds = keep_alive_seconds
        self.attempts = 0
        """Transactions ``run`` started, the rolled-back ones included."""
        self.seconds_waited = 0.0
        """Time ``run`` spent before the transaction that got the lock: looks, pauses and
        transactions rolled back for want of it."""

    def lock(self, connection: sa.Connection) -> None:
        """In the caller's transaction: the table's exclusive lock (its partitions' too),
        waited for at most ``LOCK_TIMEOUT``, which stays the transaction's lock timeout so that
        it never waits longer for another lock while it holds this one."""
        if self.db.dialect != "postgresql":
            return
        connection.execute(
            sa.text("SELECT set_config('lock_timeout', :timeout, true)"), {"timeout": LOCK_TIMEOUT}
        )
        connection.execute(sa.text(f"LOCK TABLE {self.table} IN ACCESS EXCLUSIVE MODE"))

    def run(self, publish: Callable[..., T], *args) -> T:
        """``publish(*args)``, whose transaction calls ``lock``, once it got the lock."""
        if self.db.dialect != "postgresql":
            return publish(*args)
        started = time.monotonic()
        deadline = started + self.wait_seconds
        kept_alive = started
        pause = PAUSES[0]
        seen: set[str] = set()
        while True:
            free, seen = self._free(seen)
            if free:
                self.attempts += 1
                attempt = time.monotonic()
                try:
                    result = publish(*args)
                except sa.exc.OperationalError as error:
                    if not lock_not_available(error):
                        raise
                else:
                    self.seconds_waited += attempt - started
                    return result
            now = time.monotonic()
            if now >= deadline:
                self.seconds_waited += now - started
                raise SwapWaitExceeded(
                    f"readers held {self.table} for {now - started:.0f} s, longer than a swap "
                    f"may wait ({SWAP_WAIT_ENV}); nothing of this swap was written"
                )
            if self.keep_alive is not None and now - kept_alive >= self.keep_alive_seconds:
                self.keep_alive()
                kept_alive = time.monotonic()
            time.sleep(min(pause, deadline - now))
            pause = min(2 * pause, PAUSES[1])

    def _free(self, seen: set[str]) -> tuple[bool, set[str]]:
        """Whether the table's exclusive lock was granted within ``LOCK_TIMEOUT`` (and let go
        at once); not asked for while a transaction seen at the last look still holds a lock
        on it. Also the transactions holding one now."""
        with self.db.engine.connect() as connection:
            holders = set(connection.execute(_HOLDERS, {"table": self.table}).scalars())
            if holders & seen:
                connection.rollback()
                return False, holders
            try:
                self.lock(connection)
            except sa.exc.OperationalError as error:
                if not lock_not_available(error):
                    raise
                return False, holders
            finally:
                connection.rollback()
        return True, holders


def replace_partition(
    connection: sa.Connection,
    parent: str,
    name: str,
    staged: str,
    bound: str,
    renames: list[str] = (),
) -> None:
    """The table ``staged`` in place of ``parent``'s partition ``name`` (detached and
    dropped): renamed to ``name``, ``renames`` run (its indexes' names), attached with
    ``bound``. ``staged`` carries a check of that bound, so attaching reads no row."""
    connection.execute(sa.text(f"ALTER TABLE {parent} DETACH PARTITION {name}"))
    connection.execute(sa.text(f"DROP TABLE {name}"))
    connection.execute(sa.text(f"ALTER TABLE {staged} RENAME TO {name}"))
    for statement in renames:
        connection.execute(sa.text(statement))
    connection.execute(sa.text(f"ALTER TABLE {parent} ATTACH PARTITION {name} {bound}"))
    connection.execute(sa.text(f"ALTER TABLE {name} DROP CONSTRAINT {BOUND}"))


def sqlite_ddl_like(connection: sa.Connection, live: str, new: str) -> str:
    """SQLite: the ``CREATE TABLE`` statement of ``live``, naming ``new`` instead."""
    ddl = connection.execute(
        sa.text("SELECT sql FROM sqlite_master WHERE type = 'table' AND name = :name"),
        {"name": live},
    ).scalar_one()
    return re.sub(rf"^CREATE TABLE \"?{live}\"?", f"CREATE TABLE {new}", ddl)


def _partitions(connection, table: str) -> list[sa.Row]:
    """(name, bound, partition constraint) of each partition of ``table``, by name; none when
    it is not partitioned."""
    return connection.execute(
        sa.text(
            "SELECT c.relname, pg_get_expr(c.relpartbound, c.oid), "
            "pg_get_partition_constraintdef(c.oid) FROM pg_inherits i "
            "JOIN pg_class c ON c.oid = i.inhrelid WHERE i.inhparent = CAST(:table AS regclass) "
            "ORDER BY c.relname"
        ),
        {"table": table},
    ).all()


def copy_indexes(connection, live: str, staged: str) -> None:
    """Build ``live``'s indexes and constraints on ``staged`` under their names + ``_next``."""
    rows = connection.execute(
        sa.text(
            "SELECT ic.relname, pg_get_indexdef(ic.oid), con.conname, "
            "pg_get_constraintdef(con.oid) "
            "FROM pg_index x JOIN pg_class ic ON ic.oid = x.indexrelid "
            "LEFT JOIN pg_constraint con ON con.conindid = x.indexrelid "
            "AND con.conrelid = x.indrelid "
            "WHERE x.indrelid = CAST(:table AS regclass)"
        ),
        {"table": live},
    ).all()
    for index_name, index_def, constraint_name, constraint_def in rows:
        if constraint_name is not None:
            connection.execute(
                sa.text(
                    f'ALTER TABLE {staged} ADD CONSTRAINT "{constraint_name}{NEXT}" {constraint_def}'
                )
            )
            continue
        statement = index_def.replace(f"INDEX {index_name} ON", f'INDEX "{index_name}{NEXT}" ON', 1)
        statement = re.sub(
            rf" ON (?:ONLY )?((?:\S+\.)?){live} USING", rf" ON \g<1>{staged} USING", statement
        )
        connection.execute(sa.text(statement))


def index_renames(connection, live: str, staged: str) -> list[str]:
    """The statements that give ``staged``'s ``_next`` indexes and constraints their live
    names once ``staged`` is renamed to ``live``."""
    rows = connection.execute(
        sa.text(
            "SELECT ic.relname, con.conname FROM pg_index x "
            "JOIN pg_class ic ON ic.oid = x.indexrelid "
            "LEFT JOIN pg_constraint con ON con.conindid = x.indexrelid "
            "AND con.conrelid = x.indrelid WHERE x.indrelid = CAST(:table AS regclass)"
        ),
        {"table": staged},
    ).all()
    renames = []
    for index_name, constraint_name in rows:
        if constraint_name is not None:
            renames.append(
                f'ALTER TABLE {live} RENAME CONSTRAINT "{constraint_name}" TO '
                f'"{constraint_name.removesuffix(NEXT)}"'
            )
        else:
            renames.append(
                f'ALTER INDEX "{index_name}" RENAME TO "{index_name.removesuffix(NEXT)}"'
            )
    return renames
