"""Build a table's next contents aside (``<table>_next``), then swap them in at once.

Readers see the previous rows until the swap commits; a failed or killed run leaves only the
staging table behind, which the next run drops.
"""

import re
from typing import Self

import pandas as pd
import sqlalchemy as sa

from lead_scoring_assets.db.database import Database


class StagedTable:
    """The next contents of ``table``, written to ``<table>_next`` and swapped in.

    As a context manager (``with StagedTable(db, "t") as staged: staged.append(frame)``):
    leaving normally swaps, an exception drops the staging table. On PostgreSQL an advisory
    lock is held for the whole build, so two runs never write the same staging table. Subclasses (``ScoreSwap``) stage more tables by extending ``create`` and ``drop``,
    the swap hooks and the locking.
    """

    def __init__(self, database: Database, table: str):
        self.db = database
        self.table = table
        self.staged = f"{table}_next"
        self._lock: sa.Connection | None = None
        self._adbc = None
        self._connection = None

    def __enter__(self) -> Self:
        try:
            self._take_lock()
            with self.db.engine.begin() as connection:
                self.drop(connection)
                self.create(connection)
            if self.db.dialect == "postgresql":
                self._adbc = self.db.adbc_connection()
                self._connection = self._adbc.__enter__()
        except BaseException:
            self._release_lock()
            raise
        return self

    def append(self, frame: pd.DataFrame) -> None:
        """Stage one chunk of rows (committed to the staging table, not yet visible)."""
        self.db.append_frame(self.staged, frame, self._connection)
        if self._connection is not None:
            self._connection.commit()

    def __exit__(self, exc_type, exc, tb) -> None:
        try:
            if self._adbc is not None:
                self._adbc.__exit__(None, None, None)
            if exc_type is None:
                self.swap()
            else:
                with self.db.engine.begin() as connection:
                    self.drop(connection)
        finally:
            self._release_lock()

    def _take_lock(self) -> None:
        if self.db.dialect != "postgresql":
            return
        self._lock = self.db.engine.connect()
        got = self._lock.execute(
            sa.text("SELECT pg_try_advisory_xact_lock(hashtext(:key))"),
            {"key": f"lead_scoring:{self.table}"},
        ).scalar()
        if not got:
            raise RuntimeError(f"another run is rebuilding {self.table} on this database")

    def _release_lock(self) -> None:
        if self._lock is not None:
            self._lock.rollback()
            self._lock.close()
            self._lock = None

    def create(self, connection: sa.Connection) -> None:
        """An empty staging table shaped as the live one (its indexes come at the swap)."""
        if self.db.dialect == "postgresql":
            ddl = f"CREATE TABLE {self.staged} (LIKE {self.table} INCLUDING DEFAULTS)"
        else:
            live = connection.execute(
                sa.text("SELECT sql FROM sqlite_master WHERE type = 'table' AND name = :name"),
                {"name": self.table},
            ).scalar_one()
            ddl = re.sub(rf"^CREATE TABLE \"?{self.table}\"?", f"CREATE TABLE {self.staged}", live)
        connection.execute(sa.text(ddl))

    def drop(self, connection: sa.Connection) -> None:
        connection.execute(sa.text(f"DROP TABLE IF EXISTS {self.staged}"))

    def before_swap(self, connection: sa.Connection) -> None:
        """Runs in the swap's transaction while both tables exist (a hook for subclasses)."""

    def after_swap(self, connection: sa.Connection) -> None:
        """Runs in the swap's transaction once the live table holds the new rows."""

    def swap(self) -> None:
        """Make the staged rows the live ones in one transaction."""
        if self.db.dialect == "postgresql":
            with self.db.engine.begin() as connection:
                renames = _copy_indexes(connection, self.table, self.staged)
                connection.execute(sa.text(f"ANALYZE {self.staged}"))
            with self.db.engine.begin() as connection:
                self.before_swap(connection)
                connection.execute(sa.text("SET LOCAL lock_timeout = '30s'"))
                connection.execute(sa.text(f"LOCK TABLE {self.table} IN ACCESS EXCLUSIVE MODE"))
                connection.execute(sa.text(f"DROP TABLE {self.table}"))
                connection.execute(sa.text(f"ALTER TABLE {self.staged} RENAME TO {self.table}"))
                for statement in renames:
                    connection.execute(sa.text(statement))
                self.after_swap(connection)
            return
        with self.db.engine.begin() as connection:
            self.before_swap(connection)
            connection.execute(sa.text(f"DELETE FROM {self.table}"))
            connection.execute(sa.text(f"INSERT INTO {self.table} SELECT * FROM {self.staged}"))
            connection.execute(sa.text(f"DROP TABLE {self.staged}"))
            self.after_swap(connection)


def _copy_indexes(connection, live: str, staged: str) -> list[str]:
    """Build ``live``'s indexes and constraints on ``staged`` under temporary names; return
    the statements that give them their live names once ``staged`` is renamed."""
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
    renames = []
    for index_name, index_def, constraint_name, constraint_def in rows:
        if constraint_name is not None:
            temporary = f"{constraint_name}_next"
            connection.execute(
                sa.text(f'ALTER TABLE {staged} ADD CONSTRAINT "{temporary}" {constraint_def}')
            )
            renames.append(
                f'ALTER TABLE {live} RENAME CONSTRAINT "{temporary}" TO "{constraint_name}"'
            )
            continue
        temporary = f"{index_name}_next"
        statement = index_def.replace(f"INDEX {index_name} ON", f'INDEX "{temporary}" ON', 1)
        statement = re.sub(rf" ON ((?:\S+\.)?){live} USING", rf" ON \g<1>{staged} USING", statement)
        connection.execute(sa.text(statement))
        renames.append(f'ALTER INDEX "{temporary}" RENAME TO "{index_name}"')
    return renames
