"""Benchmark: the scoring queue at scale on PostgreSQL (depth, a 50k claim, space after
settling).

    python -m benchmarks.queue_scale --entries 5000000

Creates the database (default ``lead_scoring_bench_queue``), fills ``scoring_queue`` with
``--entries`` entries (100k of them leased by two runs in flight, as mid-operation), and
times, each against a baseline in the same run: the depth (``ScoringQueue.depth``) against
main's counting queries; a claim of 50k (``ScoringQueue.claim``) against main's claim SQL
(rolled back); settling every entry (one ``DELETE``, as the full rescoring's publish does)
with the counting trigger against without it (rolled back). It reports the queue's size
full, after the delete, after ``VACUUM`` and after ``ScoringQueue.reclaim``.
"""

import argparse
import statistics
import time

import sqlalchemy as sa

from benchmarks.full_rescore import drop_database, recreate_database
from lead_scoring_assets.db.database import Database, redact
from lead_scoring_assets.db.scoring_queue import ScoringQueue

BENCH_URL = "postgresql+psycopg://postgres@127.0.0.1:5432/lead_scoring_bench_queue"
BATCH = 50_000
LEASED = 100_000
MAIN_NOW = "clock_timestamp()"
MAIN_CLAIMABLE = f"(leased_until IS NULL OR leased_until < {MAIN_NOW} OR leased_by = :owner)"
MAIN_DEPTH = (
    f"SELECT (SELECT count(*) FROM scoring_queue WHERE leased_until IS NULL "
    f"OR leased_until < {MAIN_NOW}), "
    f"(SELECT count(*) FROM scoring_queue WHERE leased_until >= {MAIN_NOW}), "
    "(SELECT count(*) FROM scoring_dead_letters)"
)
MAIN_CLAIM = (
    f"UPDATE scoring_queue SET leased_by = :owner, attempts = attempts + 1, leased_until = "
    f"{MAIN_NOW} + make_interval(secs => 300), last_attempt_at = {MAIN_NOW} "
    "WHERE contact_id IN (SELECT contact_id FROM scoring_queue "
    f"WHERE {MAIN_CLAIMABLE} ORDER BY CASE WHEN leased_by = :owner THEN 0 WHEN leased_until "
    "IS NOT NULL THEN 1 ELSE 2 END, priority DESC, updated_at, contact_id "
    f"LIMIT {BATCH} FOR UPDATE SKIP LOCKED) RETURNING contact_id, version, attempts"
)
MAIN_WORN_OUT = (
    f"UPDATE scoring_queue SET last_error = 'x' WHERE attempts >= 3 AND {MAIN_CLAIMABLE}"
)
"""main's claim (cfcfa84): its dead-letter scan, then the claim ordered by the CASE."""


def _seconds(action) -> float:
    started = time.perf_counter()
    action()
    return time.perf_counter() - started


def _size(database: Database) -> int:
    with database.engine.connect() as connection:
        return connection.execute(
            sa.text("SELECT pg_total_relation_size('scoring_queue')")
        ).scalar_one()


def _committed(database: Database, statement: str) -> None:
    with database.engine.begin() as connection:
        connection.execute(sa.text(statement))


def _main_depth(database: Database) -> None:
    with database.engine.connect() as connection:
        connection.execute(sa.text(MAIN_DEPTH)).one()


def _rolled_back(database: Database, *statements: str, params: dict | None = None) -> float:
    """Seconds to run ``statements`` in one transaction, then rolled back."""
    with database.engine.connect() as connection:
        started = time.perf_counter()
        for statement in statements:
            connection.execute(sa.text(statement), params or {})
        seconds = time.perf_counter() - started
        connection.rollback()
    return seconds


def _fill(database: Database, entries: int) -> None:
    with database.engine.begin() as connection:
        connection.execute(
            sa.text(
                "INSERT INTO scoring_queue (contact_id, priority, created_at, updated_at) "
                "SELECT g, 3 + g % 8, now(), now() - (g * 7919 % 86400) * interval '1 second' "
                "FROM generate_series(1::bigint, :entries) g"
            ),
            {"entries": entries},
        )
        connection.execute(
            sa.text(
                "UPDATE scoring_queue SET leased_by = 'run-' || (contact_id / :every % 2), "
                "attempts = 1, leased_until = now() + interval '1 hour' "
                "WHERE contact_id % :every = 0"
            ),
            {"every": max(1, entries // LEASED)},
        )
    with database.engine.connect().execution_options(isolation_level="AUTOCOMMIT") as conn:
        conn.execute(sa.text("VACUUM ANALYZE scoring_queue"))


def _mib(size: int) -> str:
    return f"{size / 2**20:,.1f} MiB"


def run(url: str, entries: int, keep: bool) -> None:
    database = Database(url)
    recreate_database(database.url)
    database.upgrade()
    queue = ScoringQueue(database)
    print(f"{redact(url)}: filling scoring_queue with {entries:,} entries ...", flush=True)
    print(
        f"fill (INSERT ... SELECT, counting trigger included): "
        f"{_seconds(lambda: _fill(database, entries)):.1f} s",
        flush=True,
    )
    leased = queue.depth().leased
    print(f"{leased:,} entries leased by two runs in flight")

    main_depth = [_seconds(lambda: _main_depth(database)) for _ in range(5)]
    depth = [_seconds(queue.depth) for _ in range(5)]
    print(
        f"depth: {statistics.median(depth) * 1000:,.1f} ms (median of 5); baseline main's "
        f"counts {statistics.median(main_depth) * 1000:,.1f} ms "
        f"({statistics.median(main_depth) / statistics.median(depth):,.0f}x)",
        flush=True,
    )

    main_claim = _rolled_back(database, MAIN_WORN_OUT, MAIN_CLAIM, params={"owner": "bench"})
    claims = [_seconds(lambda i=i: queue.claim(f"bench-{i}", BATCH, 300)) for i in range(3)]
    print(
        f"claim of {BATCH:,}: {', '.join(f'{s:.2f}' for s in claims)} s (3 in a row); "
        f"baseline main's claim {main_claim:.2f} s "
        f"({main_claim / statistics.median(claims):,.1f}x)",
        flush=True,
    )

    full = _size(database)
    _committed(database, "ALTER TABLE scoring_queue DISABLE TRIGGER count_scoring_queue_delete")
    uncounted = _rolled_back(database, "DELETE FROM scoring_queue")
    _committed(database, "ALTER TABLE scoring_queue ENABLE TRIGGER count_scoring_queue_delete")
    counted = _seconds(lambda: _committed(database, "DELETE FROM scoring_queue"))
    print(
        f"settling every entry (one DELETE): {counted:.1f} s with the counting trigger, "
        f"{uncounted:.1f} s without it (rolled back)",
        flush=True,
    )
    deleted = _size(database)
    with database.engine.connect().execution_options(isolation_level="AUTOCOMMIT") as conn:
        vacuum = _seconds(lambda: conn.execute(sa.text("VACUUM scoring_queue")))
    vacuumed = _size(database)
    reclaim = _seconds(queue.reclaim)
    reclaimed = _size(database)
    print(
        f"queue size: full {_mib(full)}, emptied {_mib(deleted)}, after VACUUM "
        f"{_mib(vacuumed)} ({vacuum:.1f} s), after reclaim {_mib(reclaimed)} "
        f"({reclaim * 1000:,.0f} ms); depth now {queue.depth()}"
    )
    database.dispose()
    if not keep:
        drop_database(database.url)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--url", default=BENCH_URL)
    parser.add_argument("--entries", type=int, default=5_000_000)
    parser.add_argument("--keep", action="store_true", help="keep the database afterwards")
    args = parser.parse_args()
    run(args.url, args.entries, args.keep)


if __name__ == "__main__":
    main()
