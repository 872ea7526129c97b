"""Resources: the operational database, by SQLAlchemy URL."""

import os

import dagster as dg

from lead_scoring_assets.db.database import DATABASE_URL_ENV, Database, default_database_url


class DatabaseResource(dg.ConfigurableResource):
    """The operational database (SQLite or PostgreSQL) named by a SQLAlchemy URL."""

    url: str

    def open(self) -> Database:
        """A ``Database`` on this URL that fails clearly if the schema is missing."""
        database = Database(self.url)
        if database.current_revision() is None:
            database.dispose()
            raise RuntimeError(
                "the database has no lead-scoring schema: run `lead-scoring db upgrade` first"
            )
        return database


@dg.definitions
def resources() -> dg.Definitions:
    url = dg.EnvVar(DATABASE_URL_ENV) if os.environ.get(DATABASE_URL_ENV) else default_database_url()
    return dg.Definitions(resources={"database": DatabaseResource(url=url)})
