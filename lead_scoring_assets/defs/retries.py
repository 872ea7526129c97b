"""Retry with backoff on transient database errors; every other error fails the run."""

from contextlib import contextmanager

import dagster as dg

from lead_scoring_assets.db.errors import (
    TRANSIENT_ERRORS,
    TransientDatabaseError,
    describe_error,
)

MAX_RETRIES = 3


@contextmanager
def retry_on_transient_database_errors(context: dg.OpExecutionContext | dg.AssetExecutionContext):
    """Turn a lost connection, a timeout or a server restart into a retry after 2, 4, 8 s.

    The warning and the retry event carry the error's description (class, SQLSTATE, short
    message), never its parameters or rows, and no chained original."""
    try:
        yield
    except (TransientDatabaseError, *TRANSIENT_ERRORS) as error:
        wait = 2 ** (context.retry_number + 1)
        described = (
            str(error) if isinstance(error, TransientDatabaseError) else describe_error(error)
        )
        context.log.warning(f"transient database error, retry in {wait}s: {described}")
        raise dg.RetryRequested(max_retries=MAX_RETRIES, seconds_to_wait=wait) from None
