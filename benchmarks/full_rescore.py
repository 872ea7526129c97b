"""Benchmark: demo data load and full rescoring of N contacts on PostgreSQL.

    python -m benchmarks.full_rescore --contacts 1000000

Creates (or recreates) a scratch database, loads N demo contacts, then times in the same run:
the baseline (raw COPY of the scoring inputs out and of the score rows back in) and the full
rescoring end to end in a fresh process (contacts/s, peak RSS, read / score / write split, the
audit of the staged scores, the publish).
"""

import argparse
import statistics
import tempfile
import time
from pathlib import Path

import psycopg
import sqlalchemy as sa

from benchmarks.fresh_process import run_in_fresh_process
from lead_scoring_assets.db.database import Database, redact
from lead_scoring_assets.db.tables import CONTACT_COLUMNS, VALIDATION_COLUMNS
from lead_scoring_assets.demo.loader import load_demo_data
from lead_scoring_assets.geography.ladas import build_lada_reference

AS_OF = "2026-11-24T00:00:00Z"


def drop_database(url: sa.URL, create_again: bool = False) -> None:
    """Drop the benchmark database (and create it empty again if ``create_again``). On SQLite
    the database file and its WAL files are removed (an absent file is an empty database)."""
    if url.get_backend_name() == "sqlite":
        for suffix in ("", "-wal", "-shm", "-journal"):
            Path(f"{url.database}{suffix}").unlink(missing_ok=True)
        return
    admin = url.set(drivername="postgresql", database="postgres")
    with psycopg.connect(admin.render_as_string(hide_password=False), autocommit=True) as conn:
        conn.execute(f'DROP DATABASE IF EXISTS "{url.database}" WITH (FORCE)')
        if create_again:
            conn.execute(f'CREATE DATABASE "{url.database}"')


def database_exists(url: str) -> bool:
    """Whether the benchmark database at ``url`` exists (on SQLite: its file)."""
    parsed = sa.make_url(url)
    if parsed.get_backend_name() == "sqlite":
        return Path(parsed.database).exists()
    admin = parsed.set(drivername="postgresql", database="postgres")
    with psycopg.connect(admin.render_as_string(hide_password=False)) as conn:
        return (
            conn.execute(
                "SELECT 1 FROM pg_database WHERE datname = %s", (parsed.database,)
            ).fetchone()
            is not None
        )


def recreate_database(url: sa.URL) -> None:
    drop_database(url, create_again=True)


SCORING_INPUTS = (
    f"COPY contacts ({', '.join(CONTACT_COLUMNS)}) TO STDOUT",
    f"COPY platform_validations ({', '.join(VALIDATION_COLUMNS)}) TO STDOUT",
)


def load_fresh_database(url: sa.URL, contacts: int) -> None:
    """Drop and recreate the database (PostgreSQL or a SQLite file), migrate it and load
    ``contacts`` demo contacts."""
    recreate_database(url)
    database = Database(url.render_as_string(hide_password=False))
    database.upgrade()
    database.replace_rows("ladas_reference", build_lada_reference())
    started = time.perf_counter()
    loaded = load_demo_data(database, contacts, seed=1, as_of=AS_OF)
    seconds = time.perf_counter() - started
    database.dispose()
    print(
        f"demo data: {loaded.contacts:,} contacts + {loaded.validations:,} validations "
        f"in {seconds:.1f} s ({loaded.contacts / seconds:,.0f} contacts/s)"
    )


def scored_database(url: sa.URL, contacts: int, reuse: bool) -> Database:
    """The benchmark database with ``contacts`` demo contacts (loaded afresh unless ``reuse``),
    migrated, with ``lead_scores`` computed for ``AS_OF`` if it is empty."""
    if not reuse:
        load_fresh_database(url, contacts)
    database = Database(url.render_as_string(hide_password=False))
    database.upgrade()
    if database.count("lead_scores") == 0:
        from lead_scoring_assets.scoring.full_rescore import rescore_all

        started = time.perf_counter()
        rescore_all(database, AS_OF)
        print(f"lead_scores in {time.perf_counter() - started:.1f} s")
    return database


def copy_baseline(
    url: sa.URL, table: str = "lead_scores", sources: tuple[str, ...] = SCORING_INPUTS
) -> dict[str, float]:
    """Seconds to COPY the inputs out (``sources``) and ``table``'s rows back in, nothing else
    (the rows in between spill to a temporary file past 256 MB: memory stays bounded)."""
    dsn = url.set(drivername="postgresql").render_as_string(hide_password=False)
    with psycopg.connect(dsn) as conn:
        started = time.perf_counter()
        for sql in sources:
            with conn.cursor().copy(sql) as copy:
                for _ in copy:
                    pass
        read = time.perf_counter() - started
        with tempfile.SpooledTemporaryFile(max_size=256 * 2**20) as buffer:
            with conn.cursor().copy(f"COPY (SELECT * FROM {table}) TO STDOUT") as copy:
                for block in copy:
                    buffer.write(block)
            buffer.seek(0)
            conn.execute(f"CREATE TEMP TABLE copy_in (LIKE {table})")
            started = time.perf_counter()
            with conn.cursor().copy("COPY copy_in FROM STDIN") as copy:
                while block := buffer.read(2**20):
                    copy.write(block)
            conn.commit()
            write = time.perf_counter() - started
    return {"read": read, "write": write, "total": read + write}


def timed_rescore(url: str, chunk_size: int, buckets: list[int] | None = None) -> dict:
    """One full rescoring of the database (of ``buckets`` only, if given), with its
    timings."""
    from lead_scoring_assets.scoring.full_rescore import rescore_all

    database = Database(url)
    report = rescore_all(database, AS_OF, chunk_size=chunk_size, buckets=buckets)
    database.dispose()
    return {
        "contacts": report.contacts_scored,
        "read": report.seconds_read,
        "score": report.seconds_score,
        "write": report.seconds_write,
        "audit": report.seconds_audit,
        "swap": report.seconds_swap,
        "locked": report.seconds_locked,
        "total": report.seconds_total,
        "malformed": sum(report.malformed_by_reason.values()),
    }


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--contacts", type=int, default=1_000_000)
    parser.add_argument(
        "--url", default="postgresql+psycopg://postgres@127.0.0.1:5432/lead_scoring_bench"
    )
    parser.add_argument("--chunk-size", type=int, default=100_000)
    parser.add_argument("--repeat", type=int, default=3)
    parser.add_argument("--reuse", action="store_true", help="keep the loaded data of a past run")
    args = parser.parse_args()
    url = sa.make_url(args.url)
    print(f"database {redact(args.url)}, {args.contacts:,} contacts, chunk {args.chunk_size:,}")

    if not args.reuse:
        load_fresh_database(url, args.contacts)

    runs = []
    for attempt in range(1, args.repeat + 1):
        run = run_in_fresh_process(timed_rescore, args.url, args.chunk_size)
        runs.append(run)
        print(
            f"rescore #{attempt}: {run['total']:.2f} s ({run['contacts'] / run['total']:,.0f} "
            f"contacts/s); stages (overlapping) read {run['read']:.2f} / score "
            f"{run['score']:.2f} / write {run['write']:.2f} s, then audit "
            f"{run['audit']:.2f} s, publish {run['swap']:.2f} s (lead_scores locked "
            f"{run['locked']:.2f} s); peak RSS {run['peak_rss_mb']:,.0f} MB, "
            f"{run['malformed']:,} malformed rows"
        )
    baseline = copy_baseline(url)
    median = statistics.median(run["total"] for run in runs)
    print(
        f"baseline raw COPY: out {baseline['read']:.2f} s + in {baseline['write']:.2f} s = "
        f"{baseline['total']:.2f} s"
    )
    print(
        f"full rescoring median {median:.2f} s = {median / baseline['total']:.2f}x the raw "
        f"COPY baseline; {runs[0]['contacts'] / median:,.0f} contacts/s; peak RSS "
        f"{max(r['peak_rss_mb'] for r in runs):,.0f} MB"
    )


if __name__ == "__main__":
    main()
