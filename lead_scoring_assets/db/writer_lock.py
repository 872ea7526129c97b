"""A lease on writing a table, kept in the database so that every process sees it.

``lead_scores`` has two kinds of writers: a full rescoring holds the lock exclusively from its
first read to its publish (three Dagster steps, possibly three processes), incremental runs hold
it shared while they claim, score and settle. A lock row carries a lease: a holder that dies
(killed process, lost pod) blocks the others only until its lease ends. A holder that works for
long keeps a short lease renewed by a ``Heartbeat`` thread, so its death frees the lock soon. A
writer that finds the lock held can also ask ``is_holder_alive`` whether each holder still runs
(the Dagster layer asks its instance) and break the rows of one that does not. A holder checks
that it still holds its lease in the transaction that publishes its rows (fencing), so a run that
outlived its lease, or whose lock was broken, writes nothing.
"""

import logging
import threading
import time
from collections.abc import Callable, Iterator
from contextlib import contextmanager, suppress
from datetime import UTC, datetime, timedelta

import sqlalchemy as sa

from lead_scoring_assets.db.database import Database
from lead_scoring_assets.db.errors import DRIVER_ERRORS, TRANSIENT_ERRORS, describe_error

EXCLUSIVE = "exclusive"
SHARED = "shared"
LOCK_CHANGES_KEY = "lead_scoring:writer_locks"
"""PostgreSQL: the advisory lock under which lock rows are taken, broken or dropped."""

log = logging.getLogger(__name__)


class LockBusy(RuntimeError):
    """Another writer holds the lock."""


class LockLost(RuntimeError):
    """The holder's lease ended (or another run broke it): it must not publish."""


class WriterLock:
    """The lock rows of ``holder`` on ``resource`` (one name, or several taken and released
    together, e.g. the contact buckets of ``lead_scores``); leases last ``lease_seconds``.

    With ``is_holder_alive`` (a holder's name -> whether it still runs), taking the lock first
    breaks the rows other holders have on its resources if they no longer run; their names are
    kept in ``broken``."""

    def __init__(
        self,
        database: Database,
        resource: str | list[str],
        holder: str,
        lease_seconds: float,
        is_holder_alive: Callable[[str], bool] | None = None,
    ):
        self.db = database
        self.resources = [resource] if isinstance(resource, str) else list(resource)
        self.resource = (
            resource if isinstance(resource, str) else f"{self.resources[0]}..{self.resources[-1]}"
        )
        self.holder = holder
        self.lease_seconds = lease_seconds
        self.is_holder_alive = is_holder_alive
        self.broken: list[str] = []

    def _text(self, sql: str) -> sa.TextClause:
        return sa.text(sql).bindparams(sa.bindparam("resources", expanding=True))

    def _stamp(self, seconds: float = 0.0):
        return self.db.bind_timestamp(datetime.now(UTC) + timedelta(seconds=seconds))

    def _begin(self, connection: sa.Connection) -> None:
        """Serialise lock changes (PostgreSQL: a transaction-level advisory lock, which neither
        renewals nor fenced transactions take, so they never queue behind a waiting writer;
        SQLite: the first write takes the database's write lock), then drop the expired rows
        of the resources and the rows of holders that no longer run."""
        if self.db.dialect == "postgresql":
            connection.execute(
                sa.text("SELECT pg_advisory_xact_lock(hashtext(:key))"), {"key": LOCK_CHANGES_KEY}
            )
        connection.execute(
            self._text(
                "DELETE FROM writer_locks WHERE resource IN :resources AND expires_at < :now"
            ),
            {"resources": self.resources, "now": self._stamp()},
        )
        if self.is_holder_alive is not None:
            self._break_dead_holders(connection)

    def _break_dead_holders(self, connection: sa.Connection) -> None:
        """Delete the rows other holders have on the resources if ``is_holder_alive`` says they
        no longer run (a publish of theirs still in its transaction finishes first: its rows
        are locked)."""
        holders = (
            connection.execute(
                self._text(
                    "SELECT DISTINCT holder FROM writer_locks WHERE resource IN :resources "
                    "AND holder <> :holder"
                ),
                {"resources": self.resources, "holder": self.holder},
            )
            .scalars()
            .all()
        )
        dead = [holder for holder in holders if not self.is_holder_alive(holder)]
        if not dead:
            return
        connection.execute(
            self._text(
                "DELETE FROM writer_locks WHERE resource IN :resources AND holder IN :dead"
            ).bindparams(sa.bindparam("dead", expanding=True)),
            {"resources": self.resources, "dead": dead},
        )
        for holder in dead:
            log.warning("broke the lock rows of %s on %s: it no longer runs", holder, self.resource)
        self.broken.extend(dead)

    def _others(self, connection: sa.Connection, mode: str) -> int:
        return connection.execute(
            self._text(
                "SELECT count(*) FROM writer_locks WHERE resource IN :resources "
                "AND mode = :mode AND holder <> :holder"
            ),
            {"resources": self.resources, "mode": mode, "holder": self.holder},
        ).scalar_one()

    def _hold(self, connection: sa.Connection, mode: str) -> None:
        params = {
            "holder": self.holder,
            "mode": mode,
            "now": self._stamp(),
            "until": self._stamp(self.lease_seconds),
        }
        connection.execute(
            self._text(
                "DELETE FROM writer_locks WHERE resource IN :resources AND holder = :holder"
            ),
            {**params, "resources": self.resources},
        )
        connection.execute(
            sa.text(
                "INSERT INTO writer_locks (resource, holder, mode, acquired_at, expires_at) "
                "VALUES (:resource, :holder, :mode, :now, :until)"
            ),
            [{**params, "resource": resource} for resource in self.resources],
        )

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
                raise LockBusy(
                    f"incremental runs still write {self.resource} after {wait_seconds:.0f}s"
                )
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
                self._text(
                    "UPDATE writer_locks SET expires_at = :until WHERE resource IN "
                    ":resources AND holder = :holder AND expires_at >= :now"
                ),
                {
                    "until": self._stamp(seconds or self.lease_seconds),
                    "now": self._stamp(),
                    "resources": self.resources,
                    "holder": self.holder,
                },
            ).rowcount
        if renewed != len(self.resources):
            raise LockLost(f"the lease on {self.resource} ended before it was renewed")

    def hand_over(self, seconds: float) -> int:
        """Set the lease of the rows still held (unexpired) to ``seconds`` from now, for the
        holder's next step; rows released or expired stay so. Returns how many were set."""
        with self.db.engine.begin() as connection:
            return connection.execute(
                self._text(
                    "UPDATE writer_locks SET expires_at = :until WHERE resource IN "
                    ":resources AND holder = :holder AND expires_at >= :now"
                ),
                {
                    "until": self._stamp(seconds),
                    "now": self._stamp(),
                    "resources": self.resources,
                    "holder": self.holder,
                },
            ).rowcount

    @contextmanager
    def heartbeat(
        self, lease_seconds: float, every_seconds: float, handover_seconds: float
    ) -> Iterator["Heartbeat"]:
        """While the body works, a ``Heartbeat`` renews the rows to ``lease_seconds`` every
        ``every_seconds``. After the body: the heartbeat's failure is raised (``LockLost``, or
        its own error), else the lease is handed over (``hand_over(handover_seconds)``). If
        the body raises, the heartbeat stops and the rows keep the lease they have."""
        beat = Heartbeat(self, lease_seconds, every_seconds)
        beat.start()
        try:
            yield beat
        finally:
            beat.stop()
        beat.raise_failure()
        self.hand_over(handover_seconds)

    def holds(self, connection: sa.Connection) -> bool:
        """In the caller's transaction: whether the lease is still held; if so it stays held
        (row lock on PostgreSQL, the write lock on SQLite) until that transaction ends."""
        return connection.execute(
            self._text(
                "UPDATE writer_locks SET expires_at = expires_at WHERE resource IN "
                ":resources AND holder = :holder AND expires_at >= :now"
            ),
            {"resources": self.resources, "holder": self.holder, "now": self._stamp()},
        ).rowcount == len(self.resources)

    def verify(self, connection: sa.Connection) -> None:
        """``holds``, or ``LockLost``: for the transaction that publishes."""
        if not self.holds(connection):
            raise LockLost(f"the lease on {self.resource} ended: nothing is published")

    def release(self, connection: sa.Connection | None = None) -> None:
        """Remove the lock row (in ``connection``'s transaction if given)."""
        statement = self._text(
            "DELETE FROM writer_locks WHERE resource IN :resources AND holder = :holder"
        )
        params = {"resources": self.resources, "holder": self.holder}
        if connection is not None:
            connection.execute(statement, params)
            return
        with self.db.engine.begin() as own:
            own.execute(statement, params)


class Heartbeat:
    """A daemon thread renewing the rows of ``lock`` to ``lease_seconds`` every
    ``every_seconds``, on a database connection of its own.

    Each beat renews the rows that are unexpired and not locked by a transaction (on
    PostgreSQL a row its holder is publishing under, which that transaction keeps). A row found
    expired, or gone although not seen held for a whole lease (another writer may have taken it
    over), means the lease is lost: that is logged and kept in ``lost`` (a ``LockLost``), and
    the beats stop; an expired row is never renewed, so fencing still refuses. A row gone
    sooner was released by its holder (a published bucket) and is no longer renewed. A
    transient database error is logged and the next beat tries again; any other error ends the
    thread and is kept in ``error``.
    """

    def __init__(self, lock: WriterLock, lease_seconds: float, every_seconds: float):
        self.lock = lock
        self.lease_seconds = lease_seconds
        self.every_seconds = every_seconds
        self.beats = 0
        self.lost: LockLost | None = None
        self.error: BaseException | None = None
        self._seen: dict[str, float] = {}
        """Each row's last time (monotonic) found held."""
        self._stop = threading.Event()
        self._thread = threading.Thread(
            target=self._run, daemon=True, name=f"lease-heartbeat-{lock.holder}"
        )

    def start(self) -> None:
        self._thread.start()

    def stop(self) -> None:
        """End the beats and wait for the thread (a beat stuck on the network is left)."""
        self._stop.set()
        self._thread.join(timeout=self.every_seconds + 60)

    def raise_failure(self) -> None:
        if self.error is not None:
            raise self.error
        if self.lost is not None:
            raise self.lost

    def _run(self) -> None:
        connection = None
        try:
            while not self._stop.is_set():
                try:
                    if connection is None:
                        connection = self.lock.db.engine.connect()
                    self._beat(connection)
                except TRANSIENT_ERRORS as error:
                    log.warning(
                        "could not renew the lease of %s on %s: %s",
                        self.lock.holder,
                        self.lock.resource,
                        describe_error(error),
                    )
                    connection = _closed(connection)
                if self.lost is not None:
                    return
                self._stop.wait(self.every_seconds)
        except BaseException as error:  # noqa: BLE001 - kept, raised by the owner's thread
            self.error = error
        finally:
            _closed(connection)

    def _beat(self, connection: sa.Connection) -> None:
        lock = self.lock
        started = time.monotonic()
        params = {
            "holder": lock.holder,
            "resources": lock.resources,
            "now": lock._stamp(),
            "until": lock._stamp(self.lease_seconds),
        }
        with connection.begin():
            if self._stop.is_set():
                return
            if lock.db.dialect == "postgresql":
                connection.execute(
                    sa.text("SELECT set_config('lock_timeout', :timeout, true)"),
                    {"timeout": f"{max(1, int(self.every_seconds * 1000))}ms"},
                )
                usable = dict(
                    connection.execute(
                        lock._text(
                            "SELECT resource, expires_at < :now FROM writer_locks WHERE holder = :holder "
                            "AND resource IN :resources FOR UPDATE SKIP LOCKED"
                        ),
                        params,
                    ).all()
                )
                renewed = [r for r, expired in usable.items() if not expired]
                if renewed:
                    connection.execute(
                        lock._text(
                            "UPDATE writer_locks SET expires_at = :until WHERE holder = :holder "
                            "AND resource IN :resources"
                        ),
                        {**params, "resources": renewed},
                    )
            else:
                renewed = (
                    connection.execute(
                        lock._text(
                            "UPDATE writer_locks SET expires_at = :until WHERE holder = :holder AND "
                            "resource IN :resources AND expires_at >= :now RETURNING resource"
                        ),
                        params,
                    )
                    .scalars()
                    .all()
                )
            present = dict(
                connection.execute(
                    lock._text(
                        "SELECT resource, expires_at < :now FROM writer_locks WHERE holder = :holder "
                        "AND resource IN :resources"
                    ),
                    params,
                ).all()
            )
        if lock.db.dialect != "postgresql":
            usable = present
        self._judge(started, set(renewed), usable, present)

    def _judge(self, now: float, renewed: set[str], usable: dict, present: dict) -> None:
        for resource in renewed | (present.keys() - usable.keys()):
            self._seen[resource] = now
        expired = {resource for resource, flag in usable.items() if flag}
        gone = {resource for resource in self._seen if resource not in present}
        lapsed = {resource for resource in gone if now - self._seen[resource] > self.lease_seconds}
        for resource in gone - lapsed:
            del self._seen[resource]
        self.beats += 1
        if expired or lapsed:
            self.lost = LockLost(
                f"the lease of {self.lock.holder} on {', '.join(sorted(expired | lapsed))} ended"
            )
            log.warning("%s", self.lost)


def _closed(connection: sa.Connection | None) -> None:
    """Close ``connection`` if there is one, whatever state it is in; returns None."""
    if connection is not None:
        with suppress(*DRIVER_ERRORS):
            connection.close()
