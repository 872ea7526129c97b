"""Benchmark: ``forget`` (the ARCO cancellation of one number) on N contacts on PostgreSQL.

    python -m benchmarks.forget --contacts 1000000

Creates the scratch database ``lead_scoring_bench_forget``, loads N demo contacts, rescores
them (scores and their history) and builds their contact features; every contact becomes the
recipient of one campaign with its feature log, one contact in 100 gets its number stored in
an old national form (``044 …``, which forget finds by scanning), one in 10 an SMS reply, and
an export file holds every number. Then it forgets ``--samples`` numbers, one after another,
timing the database part (lock, deletions, suppression, commit) and the export folder's scan
apart; a forget that is the first to touch a platform campaign also counts its recipients
once (see docs/arco.md), and is reported apart. The database is dropped at the end unless ``--keep``.
"""

import argparse
import statistics
import tempfile
import time
from pathlib import Path

import sqlalchemy as sa

from benchmarks.fresh_process import run_in_fresh_process
from benchmarks.full_rescore import (
    AS_OF,
    drop_database,
    load_fresh_database,
    timed_rescore,
)
from lead_scoring_assets.consent.forget import files_holding, forget
from lead_scoring_assets.contacts.phones import normalize_phone
from lead_scoring_assets.db.database import Database, redact
from lead_scoring_assets.ml.feature_table import build_contact_features

DEFAULT_URL = "postgresql+psycopg://postgres@127.0.0.1:5432/lead_scoring_bench_forget"
TARGET_SECONDS = 1.0


def plant(database: Database) -> None:
    """The rows forget has to find besides the pipeline's: a campaign of everyone with its
    feature log, old-form numbers, replies; then ``VACUUM ANALYZE``, as autovacuum leaves a
    database in use."""
    at = database.bind_timestamp(AS_OF)
    with database.engine.begin() as connection:
        for sql in (
            "INSERT INTO campaigns (id, name, sent_at) VALUES (1000, 'bench', :at)",
            (
                "INSERT INTO campaign_recipients (campaign_id, contact_id, arm, rank) "
                "SELECT 1000, id, 'target', id FROM contacts"
            ),
            (
                "INSERT INTO campaign_recipient_features (campaign_id, contact_id, feature_set, "
                "state) SELECT 1000, id, 'conversion_v1', state_name FROM contacts"
            ),
            (
                "UPDATE contacts SET phone_e164 = '044 ' || substr(phone_e164, 4, 3) || ' ' || "
                "substr(phone_e164, 7, 3) || ' ' || substr(phone_e164, 10) WHERE id % 100 = 0"
            ),
            (
                "INSERT INTO sms_replies (id, phone_e164, body, received_at) "
                "SELECT id, phone_e164, 'BAJA', :at FROM contacts WHERE id % 10 = 1"
            ),
        ):
            connection.execute(sa.text(sql), {"at": at})
    with database.engine.connect() as connection:
        connection.execution_options(isolation_level="AUTOCOMMIT").execute(
            sa.text("VACUUM ANALYZE")
        )


def write_export(database: Database, folder: Path) -> Path:
    """An export file holding every number (CSV, as a campaign export writes it)."""
    path = folder / "everyone.csv"
    database.read_frame("SELECT phone_e164, full_name FROM contacts").to_csv(path, index=False)
    return path


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--contacts", type=int, default=1_000_000)
    parser.add_argument("--samples", type=int, default=5, help="numbers forgotten")
    parser.add_argument("--url", default=DEFAULT_URL)
    parser.add_argument("--keep", action="store_true", help="do not drop the database")
    args = parser.parse_args()
    url = sa.make_url(args.url)
    print(f"database {redact(args.url)}, {args.contacts:,} contacts")
    try:
        load_fresh_database(url, args.contacts)
        rescored = run_in_fresh_process(timed_rescore, args.url, 100_000)
        print(f"rescored {rescored['contacts']:,} contacts in {rescored['total']:.1f} s")
        database = Database(args.url)
        build_contact_features(database, AS_OF)
        plant(database)
        step = max(1, args.contacts // args.samples)
        ids = [1 + i * step for i in range(args.samples)]
        ids[-1] = 100 * max(1, ids[-1] // 100)  # the last one stored in the old form
        phones = database.read_frame(
            "SELECT id, phone_e164 FROM contacts WHERE id IN ("
            + ", ".join(map(str, ids))
            + ") ORDER BY id"
        )["phone_e164"].tolist()
        with tempfile.TemporaryDirectory() as exports, tempfile.TemporaryDirectory() as empty:
            export = write_export(database, Path(exports))
            print(f"export file: {export.stat().st_size / 1e6:,.1f} MB")
            timings = []
            for phone in phones:
                started = time.perf_counter()
                report = forget(database, phone, Path(empty))
                seconds = time.perf_counter() - started
                started = time.perf_counter()
                files = files_holding(Path(exports), normalize_phone(phone))
                scan = time.perf_counter() - started
                timings.append((seconds, scan, bool(report.campaigns_counted)))
                print(
                    f"forget {report.masked_phone}: {report.contacts} contact(s), "
                    f"{sum(report.deleted.values())} rows in "
                    f"{sum(1 for rows in report.deleted.values() if rows)} tables, "
                    f"{len(report.campaigns_counted)} campaign(s) counted, database "
                    f"{seconds:.3f} s, export scan {scan:.3f} s ({len(files)} file)"
                )
        database.dispose()
        for counting, label in (
            (True, "forgets that filled campaign counts"),
            (False, "forgets of counted campaigns only"),
        ):
            chosen = [seconds for seconds, _, counted in timings if counted == counting]
            if chosen:
                print(
                    f"{label} ({len(chosen)}): database median "
                    f"{statistics.median(chosen):.3f} s, max {max(chosen):.3f} s (target < "
                    f"{TARGET_SECONDS:.0f} s: "
                    f"{'met' if max(chosen) < TARGET_SECONDS else 'NOT met'})"
                )
        print(f"export scan: median {statistics.median(t[1] for t in timings):.3f} s")
    finally:
        if not args.keep:
            drop_database(url)


if __name__ == "__main__":
    main()
