"""The contact buckets as Dagster partitions of the full rescoring's assets.

A run covers a range of buckets; the named jobs cover all of them in one run by default
(``ALL_BUCKETS``, their tags). A backfill follows the assets' backfill policy: one run for every
bucket, unless ``LEAD_SCORING_BUCKETS_PER_RUN`` is set, then that many buckets per run, so a
``K8sRunLauncher`` deployment (``deploy/``) spreads the runs over pods while the pool
``lead_scoring_postgres`` caps how many write to PostgreSQL at once.
"""

import os

import dagster as dg

from lead_scoring_assets.db.buckets import BUCKET_KEYS

BUCKETS_PER_RUN_ENV = "LEAD_SCORING_BUCKETS_PER_RUN"
contact_buckets = dg.StaticPartitionsDefinition(BUCKET_KEYS)
ALL_BUCKETS = {
    "dagster/asset_partition_range_start": BUCKET_KEYS[0],
    "dagster/asset_partition_range_end": BUCKET_KEYS[-1],
}
"""Run tags selecting every bucket (a named job's default)."""


def bucket_range(first: str, last: str) -> dict[str, str]:
    """Run tags selecting the buckets ``first`` to ``last``."""
    return {"dagster/asset_partition_range_start": first, "dagster/asset_partition_range_end": last}


def bucket_backfill_policy() -> dg.BackfillPolicy:
    """One run for all buckets, or ``LEAD_SCORING_BUCKETS_PER_RUN`` buckets per run."""
    per_run = os.environ.get(BUCKETS_PER_RUN_ENV)
    if not per_run:
        return dg.BackfillPolicy.single_run()
    if not per_run.isdigit() or int(per_run) < 1:
        raise ValueError(
            f"{BUCKETS_PER_RUN_ENV} must be a whole number of buckets >= 1, not {per_run!r}"
        )
    return dg.BackfillPolicy.multi_run(max_partitions_per_run=int(per_run))
