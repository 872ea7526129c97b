"""Resources: the operational database (by SQLAlchemy URL) and MLflow (by tracking URI)."""

import os
from collections.abc import Iterator
from contextlib import contextmanager

import dagster as dg
from pydantic import Field

from lead_scoring_assets.db.database import DATABASE_URL_ENV, Database, default_database_url
from lead_scoring_assets.db.errors import database_errors_sanitized
from lead_scoring_assets.ml.tracking import TRACKING_URI_ENV, MlflowTarget, default_tracking_uri


class DatabaseResource(dg.ConfigurableResource):
    """The operational database (SQLite or PostgreSQL) named by a SQLAlchemy URL."""

    url: str

    @contextmanager
    def open(self) -> Iterator[Database]:
        """A ``Database`` on this URL, disposed on leaving; fails clearly if the schema is
        missing. Database errors leave as ``DatabaseError``: class, SQLSTATE and a short
        message, never the statement's parameters or the rows they failed on."""
        database = Database(self.url)
        try:
            with database_errors_sanitized():
                if database.current_revision() is None:
                    raise RuntimeError(
                        "the database has no lead-scoring schema: run "
                        "`lead-scoring db upgrade` first"
                    )
                yield database
        finally:
            database.dispose()


class MlflowResource(dg.ConfigurableResource):
    """The MLflow tracking store, which is also the model registry."""

    tracking_uri: str
    experiment_name: str = "lead_scoring"
    registered_model_name: str = "lead_scoring"
    artifact_location: str | None = None
    champion_load_attempts: int = Field(
        default=4,
        ge=1,
        description="Attempts to look up and load the champion before it "
        "counts as unavailable (transient errors only).",
    )
    champion_retry_seconds: float = Field(
        default=2.0, ge=0, description="Wait before the second attempt, doubled each time."
    )

    def target(self) -> MlflowTarget:
        return MlflowTarget(
            tracking_uri=self.tracking_uri,
            experiment_name=self.experiment_name,
            registered_model_name=self.registered_model_name,
            artifact_location=self.artifact_location,
            load_attempts=self.champion_load_attempts,
            retry_seconds=self.champion_retry_seconds,
        )


@dg.definitions
def resources() -> dg.Definitions:
    url = (
        dg.EnvVar(DATABASE_URL_ENV) if os.environ.get(DATABASE_URL_ENV) else default_database_url()
    )
    tracking_uri = (
        dg.EnvVar(TRACKING_URI_ENV) if os.environ.get(TRACKING_URI_ENV) else default_tracking_uri()
    )
    return dg.Definitions(
        resources={
            "database": DatabaseResource(url=url),
            "mlflow": MlflowResource(tracking_uri=tracking_uri),
        }
    )
