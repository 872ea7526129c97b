"""Alembic environment: runs the project's migrations on the connection it is given."""

from alembic import context
from sqlalchemy import create_engine

from lead_scoring_assets.db.database import VERSION_TABLE


def _run(connection) -> None:
    context.configure(
        connection=connection,
        version_table=VERSION_TABLE,
        render_as_batch=connection.dialect.name == "sqlite",
    )
    with context.begin_transaction():
        context.run_migrations()


connection = context.config.attributes.get("connection")
if connection is not None:
    _run(connection)
else:
    with create_engine(
        context.config.get_main_option("sqlalchemy.url"), hide_parameters=True
    ).connect() as conn:
        _run(conn)
