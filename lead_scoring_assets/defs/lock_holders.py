"""Whether the holder of a scoring lock still runs, asked of the Dagster instance.

Writers of ``lead_scores`` hold the lock under their Dagster run id. A run that has ended
(success, failure, cancellation) or that the instance no longer knows (deleted) holds nothing
any more: its lock rows are broken at once instead of at the end of their lease. Holders whose
name is not a Dagster run id (scripts, benchmarks) are left to their lease. Every writer of one
database must use the same Dagster instance (a run id unknown to it counts as gone).
"""

import uuid
from collections.abc import Callable
from logging import Logger

import dagster as dg


def _is_run_id(holder: str) -> bool:
    try:
        return str(uuid.UUID(holder)) == holder
    except ValueError:
        return False


def dagster_run_liveness(
    instance: dg.DagsterInstance, log: Logger | dg.DagsterLogManager
) -> Callable[[str], bool]:
    """``is_holder_alive`` for the scoring library: False for a run that has ended or is gone,
    which is logged with its run id; True otherwise."""

    def is_holder_alive(holder: str) -> bool:
        if not _is_run_id(holder):
            return True
        run = instance.get_run_by_id(holder)
        if run is not None and not run.is_finished:
            return True
        state = f"its run ended ({run.status.value})" if run else "its run is gone"
        log.warning(f"the scoring lock of run {holder} is broken: {state}")
        return False

    return is_holder_alive
