"""Contact buckets: the per-contact tables are hash-partitioned by ``contact_id`` in
``BUCKET_COUNT`` buckets on PostgreSQL (migration ``0010``). A full rescoring reads, stages
and publishes bucket by bucket, and the buckets are the Dagster partitions of the scoring
assets (``BUCKET_KEYS``), so a backfill can spread them over several runs."""

BUCKET_COUNT = 16
BUCKET_KEYS = [f"{bucket:02d}" for bucket in range(BUCKET_COUNT)]


def bucket_sql(dialect: str, column: str) -> str:
    """SQL for the bucket of the contact id ``column`` (a NULL id is bucket 0): the hash
    partition's remainder on PostgreSQL (migration ``0012``), the id modulo the bucket count
    (never negative) on SQLite, which has no partitions."""
    if dialect == "postgresql":
        return f"lead_scoring_bucket({column})"
    return f"(((coalesce({column}, 0) % {BUCKET_COUNT}) + {BUCKET_COUNT}) % {BUCKET_COUNT})"


def partition_name(table: str, bucket: int) -> str:
    """The name of ``table``'s partition (PostgreSQL) or staged part of ``bucket``."""
    return f"{table}_p{bucket:02d}"


def buckets_of(keys: list[str] | None) -> list[int]:
    """The buckets of Dagster partition keys (every bucket when ``keys`` is None)."""
    if keys is None:
        return list(range(BUCKET_COUNT))
    buckets = sorted({int(key) for key in keys})
    unknown = [b for b in buckets if not 0 <= b < BUCKET_COUNT]
    if unknown:
        raise ValueError(f"no contact bucket {unknown}: buckets are 00 to {BUCKET_COUNT - 1}")
    return buckets
