"""Shared fixtures: a SQLite file per test and a fresh PostgreSQL database per test.

``database`` and ``demo_database`` start as copies of templates built once per test process
(the upgraded schema with the LADA reference, and that plus the 3,000 demo contacts): a file
copy on SQLite, ``CREATE DATABASE … TEMPLATE`` on PostgreSQL, instead of migrating and loading
again for every test.

PostgreSQL comes from ``LEAD_SCORING_TEST_POSTGRES_URL`` (default: the local server, user
postgres). Without a server those tests are skipped with the reason, unless
``LEAD_SCORING_REQUIRE_POSTGRES=1`` (as in CI), where a missing server is an error.
"""

import os
import re
import shutil
import sqlite3
import uuid
import zipfile
from pathlib import Path

import dagster as dg
import pandas as pd
import psycopg
import pytest
import sqlalchemy as sa

from lead_scoring_assets.db.database import Database
from lead_scoring_assets.definitions import defs
from lead_scoring_assets.demo.loader import load_demo_data
from lead_scoring_assets.geography.ladas import build_lada_reference

POSTGRES_URL = os.environ.get(
    "LEAD_SCORING_TEST_POSTGRES_URL", "postgresql+psycopg://postgres@127.0.0.1:5432/postgres"
)
REQUIRE_POSTGRES = os.environ.get("LEAD_SCORING_REQUIRE_POSTGRES") == "1"
AS_OF = pd.Timestamp("2026-11-24T00:00:00Z")
CHROMIUM = Path("/usr/bin/chromium")
CHROMIUM_ARGS = [
    "--no-sandbox",
    "--headless",
    "--disable-gpu",
    "--disable-background-networking",
    "--disable-component-update",
    "--disable-sync",
]


def _admin_dsn() -> str:
    return (
        sa.make_url(POSTGRES_URL).set(drivername="postgresql").render_as_string(hide_password=False)
    )


@pytest.fixture(scope="session")
def postgres_server() -> str:
    try:
        with psycopg.connect(_admin_dsn(), connect_timeout=5) as connection:
            connection.execute("SELECT 1")
    except psycopg.OperationalError as error:
        message = f"PostgreSQL not reachable at {POSTGRES_URL}: {error}"
        if REQUIRE_POSTGRES:
            pytest.fail(message + " (LEAD_SCORING_REQUIRE_POSTGRES=1)")
        pytest.skip(message)
    return POSTGRES_URL


@pytest.fixture
def postgres_url(postgres_server: str) -> str:
    """URL of a new, empty database, dropped after the test."""
    name = f"lead_scoring_test_{uuid.uuid4().hex[:12]}"
    with psycopg.connect(_admin_dsn(), autocommit=True) as connection:
        connection.execute(f'CREATE DATABASE "{name}"')
    yield sa.make_url(postgres_server).set(database=name).render_as_string(hide_password=False)
    with psycopg.connect(_admin_dsn(), autocommit=True) as connection:
        connection.execute(f'DROP DATABASE IF EXISTS "{name}" WITH (FORCE)')


@pytest.fixture
def sqlite_url(tmp_path) -> str:
    return f"sqlite:///{tmp_path / 'lead_scoring.db'}"


@pytest.fixture(params=["sqlite", "postgresql"])
def database_url(request) -> str:
    """Each test using this runs once on SQLite and once on PostgreSQL."""
    return request.getfixturevalue("sqlite_url" if request.param == "sqlite" else "postgres_url")


class Templates:
    """The test process's template databases. ``upgraded`` (schema and LADA reference) and
    ``demo`` (that plus 3,000 demo contacts, seed 11) are built on first use; ``cached`` keeps
    what a fixture builds on top (a rescoring, say) for the next test that asks for it."""

    def __init__(self, folder: Path):
        self.folder = folder
        self.prefix = f"lead_scoring_template_{uuid.uuid4().hex[:12]}"
        self.built: dict[tuple[str, str], str] = {}

    @staticmethod
    def _fill(database: Database, kind: str) -> None:
        database.upgrade()
        database.replace_rows("ladas_reference", build_lada_reference())
        if kind == "demo":
            load_demo_data(database, 3_000, seed=11, as_of=AS_OF, batch_size=1_000)

    def restore(self, url: str, kind: str) -> None:
        """Make the database at ``url`` a copy of template ``kind`` (built first if new)."""
        dialect = _dialect(url)
        if (dialect, kind) not in self.built:
            self.built[dialect, kind] = self._build(dialect, kind)
        self._copy(self.built[dialect, kind], url)

    def cached(self, database: Database, key: str, build) -> Database:
        """``build(database)`` the first time ``key`` is asked for on this dialect, then a copy
        of what it left; ``build`` must depend on nothing but the database it is given."""
        url = database.url.render_as_string(hide_password=False)
        database.engine.dispose()
        if (_dialect(url), key) in self.built:
            self._copy(self.built[_dialect(url), key], url)
        else:
            build(database)
            database.engine.dispose()
            self.built[_dialect(url), key] = self._snapshot(url)
        return database

    def _build(self, dialect: str, kind: str) -> str:
        if dialect == "sqlite":
            template = str(self.folder / f"{kind}.db")
            url = f"sqlite:///{template}"
        else:
            template = f"{self.prefix}_{kind}"
            with psycopg.connect(_admin_dsn(), autocommit=True) as connection:
                connection.execute(f'CREATE DATABASE "{template}"')
            url = sa.make_url(POSTGRES_URL).set(database=template).render_as_string(False)
        database = Database(url)
        self._fill(database, kind)
        database.dispose()
        return template

    def _snapshot(self, url: str) -> str:
        """A template copy of the database at ``url``: a file on SQLite, a database name on
        PostgreSQL."""
        if _dialect(url) == "sqlite":
            path = self.folder / f"{uuid.uuid4().hex}.db"
            _sqlite_copy(sa.make_url(url).database, str(path))
            return str(path)
        name = f"{self.prefix}_{len(self.built)}"
        _pg_copy(sa.make_url(url).database, name)
        return name

    @staticmethod
    def _copy(template: str, url: str) -> None:
        if _dialect(url) == "sqlite":
            _sqlite_copy(template, sa.make_url(url).database)
        else:
            _pg_copy(template, sa.make_url(url).database)

    def drop(self) -> None:
        with psycopg.connect(_admin_dsn(), autocommit=True) as connection:
            names = connection.execute(
                "SELECT datname FROM pg_database WHERE datname LIKE %s", (self.prefix + "%",)
            ).fetchall()
            for (name,) in names:
                connection.execute(f'DROP DATABASE IF EXISTS "{name}" WITH (FORCE)')


def _dialect(url: str) -> str:
    return "sqlite" if url.startswith("sqlite") else "postgresql"


def _sqlite_copy(source: str, target: str) -> None:
    origin, copy = sqlite3.connect(source), sqlite3.connect(target)
    origin.backup(copy)
    origin.close()
    copy.close()


def _pg_copy(source: str, target: str) -> None:
    """``target`` becomes a copy of ``source`` (whose leftover sessions are ended first)."""
    with psycopg.connect(_admin_dsn(), autocommit=True) as connection:
        connection.execute(
            "SELECT pg_terminate_backend(pid) FROM pg_stat_activity "
            "WHERE datname = %s AND pid <> pg_backend_pid()",
            (source,),
        )
        connection.execute(f'DROP DATABASE IF EXISTS "{target}" WITH (FORCE)')
        connection.execute(f'CREATE DATABASE "{target}" TEMPLATE "{source}"')


@pytest.fixture(scope="session")
def templates(tmp_path_factory) -> Templates:
    built = Templates(tmp_path_factory.mktemp("templates"))
    yield built
    if any(dialect == "postgresql" for dialect, _ in built.built):
        built.drop()


@pytest.fixture
def database(database_url: str, templates: Templates, request) -> Database:
    """An upgraded, empty database with the LADA reference loaded (with the demo contacts
    when the test also asks for ``demo_database``)."""
    kind = "demo" if "demo_database" in request.fixturenames else "upgraded"
    templates.restore(database_url, kind)
    db = Database(database_url)
    yield db
    db.dispose()


@pytest.fixture
def demo_database(database: Database) -> Database:
    """The upgraded database with 3,000 demo contacts (seed 11)."""
    return database


@pytest.fixture
def postgres_demo(postgres_url: str) -> Database:
    """An upgraded PostgreSQL database with 2,000 demo contacts (seed 5), for the tests of
    PostgreSQL-only mechanisms (partitions, locks)."""
    database = Database(postgres_url)
    database.upgrade()
    database.replace_rows("ladas_reference", build_lada_reference())
    load_demo_data(database, 2_000, seed=5, as_of=AS_OF, batch_size=1_000)
    yield database
    database.dispose()


@pytest.fixture
def definitions() -> dg.Definitions:
    """The code location's definitions, loaded with a live instance as Dagster's tools do
    (loading reads the instance's definitions state; without a live one it can hit an
    instance a previous test closed)."""
    with dg.instance_for_test():
        yield defs()


PHONE_DIGITS = re.compile(rb"\d{10,}")


def digit_runs(folder: Path) -> set[bytes]:
    """Every run of 10+ digits in the files under ``folder``, zip members (skops) opened."""
    runs: set[bytes] = set()
    for path in folder.rglob("*"):
        if not path.is_file():
            continue
        runs |= set(PHONE_DIGITS.findall(path.read_bytes()))
        if zipfile.is_zipfile(path):
            with zipfile.ZipFile(path) as archive:
                for member in archive.namelist():
                    runs |= set(PHONE_DIGITS.findall(archive.read(member)))
    return runs


@pytest.fixture
def chromium() -> Path:
    """Debian's Chromium for the browser tests: skipped without it, failed instead when
    ``LEAD_SCORING_REQUIRE_BROWSER=1`` (CI)."""
    if not CHROMIUM.exists():
        message = f"no Chromium at {CHROMIUM} (apt-get install chromium)"
        if os.environ.get("LEAD_SCORING_REQUIRE_BROWSER") == "1":
            pytest.fail(message + " and LEAD_SCORING_REQUIRE_BROWSER=1")
        pytest.skip(message)
    return CHROMIUM


@pytest.fixture
def wrk() -> str:
    """Debian's ``wrk`` for the API benchmark's test: skipped without it, failed instead when
    ``LEAD_SCORING_REQUIRE_WRK=1`` (CI)."""
    found = shutil.which("wrk")
    if found is None:
        message = "no wrk on the PATH (apt-get install wrk)"
        if os.environ.get("LEAD_SCORING_REQUIRE_WRK") == "1":
            pytest.fail(message + " and LEAD_SCORING_REQUIRE_WRK=1")
        pytest.skip(message)
    return found
