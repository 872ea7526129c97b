"""Benchmark: the campaign export of N contacts on PostgreSQL, time and peak RSS.

    python -m benchmarks.export --contacts 1000000
    python -m benchmarks.export --contacts 4000000 --reuse --limit 1000000

Creates the scratch database ``lead_scoring_bench_export``, loads N demo contacts and
rescores them, then exports growing segments (a quarter, half and all of the contacts as CSV,
all as Parquet; ``--limit``: the best LIMIT as CSV only), each in a fresh process so its peak
RSS is its own, against the baseline measured in the same run: PostgreSQL writing the
one-pass ranking of the segment (every contact ranked within its number, then the limit) as
CSV itself (``COPY … TO STDOUT``, read and discarded); a limited export reads down the
scores instead (``SegmentReader._walk_down``). The database is dropped at
the end unless ``--keep``; ``--reuse`` takes the database of a past run if there is one, and
keeps it.
"""

import argparse
import re
import tempfile
import time
from datetime import UTC, datetime
from pathlib import Path

import psycopg
import sqlalchemy as sa

from benchmarks.fresh_process import run_in_fresh_process
from benchmarks.full_rescore import (
    database_exists,
    drop_database,
    load_fresh_database,
    timed_rescore,
)
from lead_scoring_assets.db.database import Database, redact

DEFAULT_URL = "postgresql+psycopg://postgres@127.0.0.1:5432/lead_scoring_bench_export"


def timed_export(url: str, folder: str, name: str, file_format: str, limit: int | None) -> dict:
    """One export of the best ``limit`` contacts (all if None), with its timing."""
    from lead_scoring_assets.campaigns.segment_export import Segment, export_segment

    database = Database(url)
    started = time.perf_counter()
    report = export_segment(database, Segment(limit=limit), name, file_format, folder=Path(folder))
    seconds = time.perf_counter() - started
    database.dispose()
    return {
        "rows": report.rows,
        "seconds": seconds,
        "bytes": report.bytes,
        "duplicates": report.duplicates_dropped,
    }


def copy_baseline(url: sa.URL, limit: int | None = None) -> float:
    """Seconds for PostgreSQL to run the one-pass query of the best ``limit`` contacts (all if
    None) and send it as CSV (discarded)."""
    from lead_scoring_assets.campaigns.segment_export import Segment, _segment_query
    from lead_scoring_assets.consent.in_force import InForce

    dsn = url.set(drivername="postgresql").render_as_string(hide_password=False)
    database = Database(url.render_as_string(hide_password=False))
    queries = _segment_query(
        database, Segment(limit=limit), None, InForce(at=datetime.now(UTC), snapshot=None), {}
    )
    database.dispose()
    params = queries.params
    sql = re.sub(r"(?<!:):(\w+)", r"%(\1)s", queries.rows.text)
    with psycopg.connect(dsn) as connection:
        started = time.perf_counter()
        with connection.cursor().copy(f"COPY ({sql}) TO STDOUT WITH (FORMAT csv)", params) as copy:
            for _ in copy:
                pass
        return time.perf_counter() - started


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--contacts", type=int, default=1_000_000)
    parser.add_argument("--url", default=DEFAULT_URL)
    parser.add_argument("--keep", action="store_true", help="do not drop the database")
    parser.add_argument(
        "--reuse",
        action="store_true",
        help="reuse the loaded database if there is one, and keep it",
    )
    parser.add_argument("--limit", type=int, help="export only the best LIMIT contacts, as CSV")
    args = parser.parse_args()
    url = sa.make_url(args.url)
    print(f"database {redact(args.url)}, {args.contacts:,} contacts")
    exports = (
        [(args.limit, "csv")]
        if args.limit
        else [
            (args.contacts // f, file_format)
            for f, file_format in ((4, "csv"), (2, "csv"), (1, "csv"), (1, "parquet"))
        ]
    )
    try:
        if not (args.reuse and database_exists(args.url)):
            load_fresh_database(url, args.contacts)
            rescored = run_in_fresh_process(timed_rescore, args.url, 100_000)
            print(f"rescored {rescored['contacts']:,} contacts in {rescored['total']:.1f} s")
        with tempfile.TemporaryDirectory() as folder:
            for limit, file_format in exports:
                run = run_in_fresh_process(
                    timed_export, args.url, folder, f"top_{limit}.{file_format}", file_format, limit
                )
                print(
                    f"export {file_format:<7} {run['rows']:>9,} rows: {run['seconds']:6.2f} s "
                    f"({run['rows'] / run['seconds']:,.0f} rows/s, "
                    f"{run['seconds'] / run['rows'] * 1e6:.2f} µs/row), "
                    f"{run['bytes'] / 1e6:,.0f} MB, peak RSS {run['peak_rss_mb']:,.0f} MB, "
                    f"{run['duplicates']:,} duplicate phones dropped"
                )
        baseline = copy_baseline(url, args.limit)
        print(
            "baseline: the one-pass ranking (every contact ranked within its number) as CSV "
            f"by PostgreSQL (COPY TO STDOUT) {baseline:.2f} s; the last export / baseline "
            f"{run['seconds'] / baseline:.2f}"
        )
    finally:
        if not (args.keep or args.reuse):
            drop_database(url)


if __name__ == "__main__":
    main()
