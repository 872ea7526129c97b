"""Retry with backoff on transient database errors; every other error fails the run."""

from contextlib import contextmanager

import adbc_driver_manager
import dagster as dg
import psycopg
import sqlalchemy.exc

TRANSIENT_DATABASE_ERRORS = (
    sqlalchemy.exc.OperationalError,
    psycopg.OperationalError,
    adbc_driver_manager.OperationalError,
)
MAX_RETRIES = 3


@contextmanager
def retry_on_transient_database_errors(context: dg.OpExecutionContext | dg.AssetExecutionContext):
    """Turn a lost connection, a timeout or a server restart into a retry after 2, 4, 8 s."""
    try:
        yield
    except TRANSIENT_DATABASE_ERRORS as error:
        wait = 2 ** (context.retry_number + 1)
        context.log.warning(f"transient database error, retry in {wait}s: {error}")
        raise dg.RetryRequested(max_retries=MAX_RETRIES, seconds_to_wait=wait) from error
