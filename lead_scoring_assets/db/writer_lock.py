"""A lease on writing a table, kept in the database so that every process sees it.

``lead_scores`` has two kinds of writers: a full rescoring holds the lock exclusively from its
first read to its publish (two Dagster steps, possibly two processes), incremental runs hold it
shared while they claim, score and settle. A lock row carries a lease: a holder that dies
(killed process, lost pod) blocks the others only until its lease ends. A holder checks that it
still holds its lease in the transaction that publishes its rows (fencing), so a run that
outlived its lease writes nothing.
"""

import time
from datetime import UTC, datetime, timedelta

import sqlalchemy as sa

from lead_scoring_assets.db.database import Database

EXCLUSIVE = "exclusive"
SHARED = "shared"


class LockBusy(RuntimeError):
    """Another writer holds the lock."""


class LockLost(RuntimeError):
    """The holder's lease ended (or another run broke it): it must not publish."""


class WriterLock:
    """The lock rows of ``holder`` on ``resource`` (one name, or several taken and released
    together, e.g. the contact buckets of ``lead_scores``); leases last ``lease_seconds``."""

    def __init__(self, database: Database, resource: str | list[str], holder: str,
                 lease_seconds: float):
        self.db = database
        self.resources = [resource] if isinstance(resource, str) else list(resource)
        self.resource = (resource if isinstance(resource, str)
                         else f"{self.resources[0]}..{self.resources[-1]}")
        self.holder = holder
        self.lease_seconds = lease_seconds

    def _text(self, sql: str) -> sa.TextClause:
        return sa.text(sql).bindparams(sa.bindparam("resources", expanding=True))

    def _stamp(self, seconds: float = 0.0):
        return self.db.bind_timestamp(datetime.now(UTC) + timedelta(seconds=seconds))

    def _begin(self, connection: sa.Connection) -> None:
        """Serialise lock changes: PostgreSQL table lock; SQLite's first write takes its own."""
        if self.db.dialect == "postgresql":
            connection.execute(sa.text("LOCK TABLE writer_locks IN SHARE ROW EXCLUSIVE MODE"))
        connection.execute(
            self._text("DELETE FROM writer_locks WHERE resource IN :resources "
                       "AND expires_at < :now"),
            {"resources": self.resources, "now": self._stamp()},
        )

    def _others(self, connection: sa.Connection, mode: str) -> int:
        return connection.execute(
            self._text("SELECT count(*) FROM writer_locks WHERE resource IN :resources "
                       "AND mode = :mode AND holder <> :holder"),
            {"resources": self.resources, "mode": mode, "holder": self.holder},
        ).scalar_one()

    def _hold(self, connection: sa.Connection, mode: str) -> None:
        params = {"holder": self.holder, "mode": mode, "now": self._stamp(),
                  "until": self._stamp(self.lease_seconds)}
        connection.execute(self._text(
            "DELETE FROM writer_locks WHERE resource IN :resources AND holder = :holder"),
            {**params, "resources": self.resources})
        connection.execute(sa.text(
            "INSERT INTO writer_locks (resource, holder, mode, acquired_at, expires_at) "
            "VALUES (:resource, :holder, :mode, :now, :until)"),
            [{**params, "resource": resource} for resource in self.resources])

    def acquire_exclusive(self, wait_seconds: float = 600.0, poll_seconds: float = 0.5) -> None:
        """Take the lock exclusively: refused at once while another exclusive holder lives;
        shared holders are waited for (up to ``wait_seconds``) while no new one may start."""
        with self.db.engine.begin() as connection:
            self._begin(connection)
            if self._others(connection, EXCLUSIVE):
                raise LockBusy(f"another run holds {self.resource} exclusively")
            self._hold(connection, EXCLUSIVE)
        deadline = datetime.now(UTC) + timedelta(seconds=wait_seconds)
        while True:
            with self.db.engine.begin() as connection:
                self._begin(connection)
                if not self._others(connection, SHARED):
                    return
            if datetime.now(UTC) >= deadline:
                self.release()
                raise LockBusy(f"incremental runs still write {self.resource} after "
                               f"{wait_seconds:.0f}s")
            self.renew()
            time.sleep(poll_seconds)

    def acquire_shared(self) -> bool:
        """Take the lock shared; False while an exclusive holder lives (or waits)."""
        with self.db.engine.begin() as connection:
            self._begin(connection)
            if self._others(connection, EXCLUSIVE):
                return False
            self._hold(connection, SHARED)
            return True

    def renew(self, seconds: float | None = None) -> None:
        """Extend the lease by ``seconds`` (default ``lease_seconds``) from now."""
        with self.db.engine.begin() as connection:
            renewed = connection.execute(
                self._text("UPDATE writer_locks SET expires_at = :until WHERE resource IN "
                           ":resources AND holder = :holder AND expires_at >= :now"),
                {"until": self._stamp(seconds or self.lease_seconds), "now": self._stamp(),
                 "resources": self.resources, "holder": self.holder},
            ).rowcount
        if renewed != len(self.resources):
            raise LockLost(f"the lease on {self.resource} ended before it was renewed")

    def holds(self, connection: sa.Connection) -> bool:
        """In the caller's transaction: whether the lease is still held; if so it stays held
        (row lock on PostgreSQL, the write lock on SQLite) until that transaction ends."""
        return connection.execute(
            self._text("UPDATE writer_locks SET expires_at = expires_at WHERE resource IN "
                       ":resources AND holder = :holder AND expires_at >= :now"),
            {"resources": self.resources, "holder": self.holder, "now": self._stamp()},
        ).rowcount == len(self.resources)

    def verify(self, connection: sa.Connection) -> None:
        """``holds``, or ``LockLost``: for the transaction that publishes."""
        if not self.holds(connection):
            raise LockLost(f"the lease on {self.resource} ended: nothing is published")

    def release(self, connection: sa.Connection | None = None) -> None:
        """Remove the lock row (in ``connection``'s transaction if given)."""
        statement = self._text("DELETE FROM writer_locks WHERE resource IN :resources "
                               "AND holder = :holder")
        params = {"resources": self.resources, "holder": self.holder}
        if connection is not None:
            connection.execute(statement, params)
            return
        with self.db.engine.begin() as own:
            own.execute(statement, params)
