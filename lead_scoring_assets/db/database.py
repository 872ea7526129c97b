"""One database, SQLite or PostgreSQL, chosen by a SQLAlchemy URL.

Frames go in and out through ``read_frame`` and ``append_frame``; on PostgreSQL they take
the Arrow fast path (ADBC: COPY in binary), on SQLite plain DB-API calls.
"""

import os
import re
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path

import adbc_driver_postgresql.dbapi as adbc
import pandas as pd
import pyarrow as pa
import sqlalchemy as sa
from alembic import command
from alembic.config import Config as AlembicConfig
from alembic.script import ScriptDirectory

DATABASE_URL_ENV = "LEAD_SCORING_DATABASE_URL"
DATA_DIR_ENV = "LEAD_SCORING_DATA_DIR"
MIGRATIONS = Path(__file__).parent / "migrations"
VERSION_TABLE = "lead_scoring_alembic_version"
"""Our own Alembic version table: the database may be shared with Dagster's storage."""
FIRST_ID = -(2**63)
"""Below every contact id: where a keyset walk over ids starts."""
SQLITE_TIMESTAMP = "%Y-%m-%d %H:%M:%S.%f"
_PARAM = re.compile(r"(?<!:):(\w+)")
_PG_ARROW_TYPES = {
    "bigint": pa.int64(),
    "integer": pa.int32(),
    "smallint": pa.int16(),
    "double precision": pa.float64(),
    "real": pa.float32(),
    "boolean": pa.bool_(),
    "text": pa.string(),
    "character varying": pa.string(),
    "json": pa.string(),
    "timestamp with time zone": pa.timestamp("us", "UTC"),
}


def data_dir() -> Path:
    """The git-ignored folder of the embedded default (``./data`` unless configured)."""
    return Path(os.environ.get(DATA_DIR_ENV, "data")).resolve()


def default_database_url() -> str:
    """``LEAD_SCORING_DATABASE_URL``, or the embedded SQLite file in the data folder."""
    return os.environ.get(DATABASE_URL_ENV) or f"sqlite:///{data_dir() / 'lead_scoring.db'}"


def _alembic_config() -> AlembicConfig:
    config = AlembicConfig()
    config.set_main_option("script_location", str(MIGRATIONS))
    return config


def head_revision() -> str:
    """The newest migration of the project."""
    return ScriptDirectory.from_config(_alembic_config()).get_current_head()


def redact(url: str) -> str:
    """The URL with its password hidden, for logs and metadata."""
    return sa.make_url(url).render_as_string(hide_password=True)


class Database:
    """The operational database behind the lead-scoring pipeline."""

    def __init__(self, url: str, **engine_options):
        """``engine_options`` go to ``sqlalchemy.create_engine`` (e.g. a server's pool size)."""
        self.url = sa.make_url(url)
        if self.dialect == "sqlite" and self.url.database not in (None, "", ":memory:"):
            Path(self.url.database).parent.mkdir(parents=True, exist_ok=True)
        self.engine = sa.create_engine(self.url, **{"hide_parameters": True, **engine_options})
        if self.dialect == "sqlite":
            sa.event.listen(self.engine, "connect", _sqlite_pragmas)

    @property
    def dialect(self) -> str:
        return self.url.get_backend_name()

    @property
    def timestamp_ddl(self) -> str:
        """The column type of a UTC timestamp in DDL this code writes itself."""
        return "TIMESTAMP WITH TIME ZONE" if self.dialect == "postgresql" else "DATETIME"

    def dispose(self) -> None:
        self.engine.dispose()

    # schema

    def upgrade(self, revision: str = "head") -> None:
        """Create or upgrade the schema with the project's Alembic migrations."""
        self._migrate(command.upgrade, revision)

    def downgrade(self, revision: str) -> None:
        """Undo migrations down to ``revision`` (``base``: an empty database)."""
        self._migrate(command.downgrade, revision)

    def _migrate(self, step, revision: str) -> None:
        config = _alembic_config()
        with self.engine.begin() as connection:
            config.attributes["connection"] = connection
            step(config, revision)

    def current_revision(self) -> str | None:
        with self.engine.connect() as connection:
            if not sa.inspect(connection).has_table(VERSION_TABLE):
                return None
            return connection.execute(sa.text(f"SELECT version_num FROM {VERSION_TABLE}")).scalar()

    # frames in and out

    @contextmanager
    def adbc_connection(self) -> Iterator[adbc.Connection]:
        """A raw ADBC connection to the PostgreSQL database (commit is the caller's)."""
        uri = self.url.set(drivername="postgresql").render_as_string(hide_password=False)
        connection = adbc.connect(uri)
        try:
            yield connection
        finally:
            connection.close()

    def read_frame(self, sql: str, params: dict | None = None, connection=None) -> pd.DataFrame:
        """Run a query with ``:name`` parameters and return its rows as a DataFrame.

        Integer columns stay integers when they hold NULLs (nullable ``Int64``, never float64,
        which cannot hold ids above 2**53 exactly). ``connection``: one from ``transaction``,
        to read within it."""
        if self.dialect == "postgresql":
            if connection is not None:
                with connection.cursor() as cursor:
                    cursor.execute(*_adbc_query(sql, params))
                    return arrow_frame(cursor.fetch_arrow_table())
            return arrow_frame(self.read_arrow(sql, params))
        if connection is not None:
            return _sqlite_frame(connection.execute(sa.text(sql), params or {}))
        with self.engine.connect() as own:
            return _sqlite_frame(own.execute(sa.text(sql), params or {}))

    @contextmanager
    def transaction(self) -> Iterator[object]:
        """One transaction for ``read_frame`` and ``append_frame`` (``connection=``): an ADBC
        connection on PostgreSQL, a SQLAlchemy one on SQLite; committed when the block ends
        without an exception, rolled back otherwise."""
        if self.dialect == "postgresql":
            with self.adbc_connection() as connection:
                yield connection
                connection.commit()
            return
        with self.engine.begin() as connection:
            yield connection

    def read_arrow(self, sql: str, params: dict | None = None) -> pa.Table:
        """PostgreSQL: the rows of a query with ``:name`` parameters as an Arrow table."""
        with self.adbc_connection() as connection, connection.cursor() as cursor:
            cursor.execute(*_adbc_query(sql, params))
            return cursor.fetch_arrow_table()

    def iter_arrow(self, sql: str, rows: int, params: dict | None = None) -> Iterator[pa.Table]:
        """PostgreSQL: the rows of a query streamed as Arrow tables of about ``rows`` rows."""
        with self.adbc_connection() as connection, connection.cursor() as cursor:
            cursor.execute(*_adbc_query(sql, params))
            pending: list[pa.RecordBatch] = []
            pending_rows = 0
            for batch in cursor.fetch_record_batch():
                pending.append(batch)
                pending_rows += batch.num_rows
                if pending_rows >= rows:
                    yield pa.Table.from_batches(pending)
                    pending, pending_rows = [], 0
            if pending_rows:
                yield pa.Table.from_batches(pending)

    def append_frame(self, table: str, frame: pd.DataFrame, connection=None) -> None:
        """Append the rows of ``frame`` (columns named as the table's; a column it lacks gets
        its default) to ``table``.

        ``connection`` is an open ADBC connection (PostgreSQL) or SQLAlchemy connection
        (SQLite) whose transaction the caller owns; without one, the rows are committed.
        """
        if frame.empty:
            return
        if self.dialect == "postgresql":
            if connection is None:
                with self.adbc_connection() as own:
                    self._adbc_append(own, table, frame)
                    own.commit()
            else:
                self._adbc_append(connection, table, frame)
            return
        columns = list(frame.columns)
        sql = (
            f"INSERT INTO {table} ({', '.join(columns)}) VALUES ({', '.join('?' for _ in columns)})"
        )
        rows = list(_python_rows(frame, "sqlite"))
        if connection is None:
            with self.engine.begin() as own:
                own.exec_driver_sql(sql, rows)
        else:
            connection.exec_driver_sql(sql, rows)

    def insert_rows(self, connection: sa.Connection, table: str, frame: pd.DataFrame) -> None:
        """Insert the rows of ``frame`` within the caller's SQLAlchemy transaction: COPY on
        PostgreSQL, one prepared statement on SQLite."""
        if frame.empty:
            return
        columns = ", ".join(frame.columns)
        rows = _python_rows(frame, self.dialect)
        if self.dialect == "postgresql":
            cursor = connection.connection.driver_connection.cursor()
            with cursor.copy(f"COPY {table} ({columns}) FROM STDIN") as copy:
                for row in rows:
                    copy.write_row(row)
            return
        marks = ", ".join("?" for _ in frame.columns)
        connection.exec_driver_sql(f"INSERT INTO {table} ({columns}) VALUES ({marks})", list(rows))

    def _adbc_append(self, connection: adbc.Connection, table: str, frame: pd.DataFrame) -> None:
        with connection.cursor() as cursor:
            cursor.execute(
                "SELECT column_name, data_type FROM information_schema.columns "
                "WHERE table_schema = current_schema() AND table_name = $1 "
                "ORDER BY ordinal_position",
                parameters=(table,),
            )
            types = {
                name: _PG_ARROW_TYPES[kind]
                for name, kind in cursor.fetchall()
                if name in frame.columns
            }
            arrow = pa.Table.from_pandas(frame[list(types)], preserve_index=False)
            arrow = arrow.cast(pa.schema([(name, types[name]) for name in types]))
            cursor.adbc_ingest(table, arrow, mode="append")

    def replace_rows(self, table: str, frame: pd.DataFrame) -> None:
        """Replace every row of a small ``table`` with ``frame`` in one transaction."""
        columns = list(frame.columns)
        with self.engine.begin() as connection:
            connection.execute(sa.text(f"DELETE FROM {table}"))
            connection.execute(
                sa.text(
                    f"INSERT INTO {table} ({', '.join(columns)}) "
                    f"VALUES ({', '.join(':' + c for c in columns)})"
                ),
                frame.astype(object).where(frame.notna(), None).to_dict("records"),
            )

    def bind_timestamp(self, value) -> object:
        """A timestamp as a bound parameter: UTC text as SQLAlchemy stores it on SQLite."""
        if value is None or pd.isna(value):
            return None
        stamp = pd.Timestamp(value)
        stamp = stamp.tz_localize("UTC") if stamp.tzinfo is None else stamp.tz_convert("UTC")
        if self.dialect == "sqlite":
            return stamp.tz_localize(None).strftime(SQLITE_TIMESTAMP)
        return stamp.to_pydatetime()

    @contextmanager
    def snapshot(self, tables: tuple[str, ...] = ()) -> Iterator[sa.Connection]:
        """A connection whose every query sees one consistent snapshot, rolled back on
        leaving: a ``REPEATABLE READ READ ONLY`` transaction on PostgreSQL, one read
        transaction on SQLite (WAL: writers commit meanwhile, this reader does not see them).

        PostgreSQL: ``tables`` (those that may be swapped) are locked as any read locks them
        before the snapshot is taken, so that a swap of one of them either committed before
        the snapshot or waits for its end. A partition swap committed between the snapshot
        and the first read of a table would show the new partitions, whose rows the snapshot
        may not see: contacts missing.
        """
        with self.engine.connect() as connection:
            if self.dialect == "postgresql":
                connection.execution_options(
                    isolation_level="REPEATABLE READ", postgresql_readonly=True
                )
                if tables:
                    connection.execute(
                        sa.text(f"LOCK TABLE {', '.join(tables)} IN ACCESS SHARE MODE")
                    )
            else:
                connection.exec_driver_sql("BEGIN")
            try:
                yield connection
            finally:
                connection.rollback()

    def count(self, table: str) -> int:
        with self.engine.connect() as connection:
            return connection.execute(sa.text(f"SELECT count(*) FROM {table}")).scalar_one()

    def estimated_count(self, table: str) -> int:
        """The rows of ``table``: on PostgreSQL from its statistics (``reltuples``, kept by
        autovacuum and ANALYZE), counted only if it was never analysed; counted on SQLite."""
        if self.dialect == "postgresql":
            with self.engine.connect() as connection:
                estimate = connection.execute(
                    sa.text("SELECT reltuples FROM pg_class WHERE oid = to_regclass(:table)"),
                    {"table": table},
                ).scalar()
            if estimate is not None and estimate >= 0:
                return int(estimate)
        return self.count(table)

    # the scoring inputs, chunk by chunk


def _adbc_query(sql: str, params: dict | None) -> tuple[str, tuple | None]:
    """A query with ``:name`` parameters as ADBC's ``$n`` ones, and their values."""
    names: list[str] = []

    def number(match: re.Match) -> str:
        names.append(match.group(1))
        return f"${len(names)}"

    adbc_sql = _PARAM.sub(number, sql)
    return adbc_sql, tuple((params or {})[n] for n in names) or None


def arrow_frame(table: pa.Table) -> pd.DataFrame:
    """An Arrow table as a DataFrame: booleans nullable, integer columns with NULLs ``Int64``."""
    frame = table.to_pandas(types_mapper={pa.bool_(): pd.BooleanDtype()}.get)
    for field in table.schema:
        if pa.types.is_integer(field.type) and table.column(field.name).null_count:
            frame[field.name] = pd.array(table.column(field.name).to_pylist(), dtype="Int64")
    return frame


def _sqlite_frame(result: sa.CursorResult) -> pd.DataFrame:
    """A SQLite result as a DataFrame, inferred as ``pd.read_sql`` does, except that a column
    of integers with NULLs is ``Int64`` instead of float64."""
    names = list(result.keys())
    rows = result.fetchall()
    if not rows:
        return pd.DataFrame({name: pd.Series(dtype=object) for name in names})
    frame = pd.DataFrame.from_records(rows, columns=names, coerce_float=True)
    for i, name in enumerate(names):
        if frame[name].dtype != "float64" or not frame[name].isna().any():
            continue
        values = [row[i] for row in rows]
        if all(type(v) is int for v in values if v is not None):
            frame[name] = pd.array(values, dtype="Int64")
    return frame


def _sqlite_pragmas(dbapi_connection, _record) -> None:
    """WAL lets the scorer read while it writes its staging tables; waits instead of failing."""
    cursor = dbapi_connection.cursor()
    cursor.execute("PRAGMA journal_mode=WAL")
    cursor.execute("PRAGMA busy_timeout=30000")
    cursor.close()


def _python_rows(frame: pd.DataFrame, dialect: str) -> Iterator[tuple]:
    """Rows as DB-API tuples of plain Python values, NULL for NA; timestamps in UTC, as text
    in SQLAlchemy's format on SQLite."""
    columns = []
    for name in frame.columns:
        column = frame[name]
        if isinstance(column.dtype, pd.DatetimeTZDtype) or pd.api.types.is_datetime64_dtype(
            column.dtype
        ):
            stamps = pd.to_datetime(column, utc=True)
            column = (
                stamps.dt.tz_localize(None).dt.strftime(SQLITE_TIMESTAMP)
                if dialect == "sqlite"
                else stamps
            )
        values = column.astype(object).where(column.notna(), None)
        columns.append([_plain(value) for value in values.tolist()])
    return zip(*columns)


def _plain(value):
    """numpy scalars and pandas timestamps as Python values for the DB-API."""
    if value is pd.NaT:
        return None
    if isinstance(value, pd.Timestamp):
        return value.to_pydatetime()
    return value.item() if hasattr(value, "item") else value
