"""Benchmark: the campaign export with N suppressions against the same export without any.

    python -m benchmarks.suppressed_export --contacts 1000000

Creates the scratch database ``lead_scoring_bench_suppressed``, loads and rescores N demo
contacts, records N suppressions (``--matching-share`` of them, half by default, the numbers
of every other contact, spread over the five reasons; the rest numbers of no contact) and ``--replies`` unprocessed opt-out
replies, then exports every contact as CSV ``--pairs`` times each way, alternating (with, then
without: the suppressions and replies are renamed away and back between runs, each export in a
fresh process), after one export of each not counted. It prints every pair's times and ratio,
and the median ratio. The database is dropped at the end unless ``--keep``.
"""

import argparse
import statistics
import tempfile
import time
from pathlib import Path

import sqlalchemy as sa

from benchmarks.fresh_process import run_in_fresh_process
from benchmarks.full_rescore import drop_database, scored_database
from lead_scoring_assets.consent.suppressions import REASONS
from lead_scoring_assets.db.database import Database, redact

DEFAULT_URL = "postgresql+psycopg://postgres@127.0.0.1:5432/lead_scoring_bench_suppressed"
CONSENT = ("suppressions", "sms_replies")


def record_suppressions(database: Database, count: int, replies: int, matching: int) -> dict:
    """``count`` suppressions, ``matching`` of them numbers of contacts (every other one), and
    ``replies`` unprocessed BAJA replies from numbers of no contact (as the platform writes
    them: ``044`` and the 10 digits); the numbers suppressed and contacts matched."""
    reasons = ", ".join(f"'{r}'" for r in REASONS)
    with database.engine.begin() as connection:
        matching = connection.execute(
            sa.text(
                "INSERT INTO suppressions (phone_e164, reason, source, recorded_at) "
                f"SELECT phone_e164, (ARRAY[{reasons}])[1 + id % {len(REASONS)}], 'benchmark', "
                "now() FROM (SELECT DISTINCT ON (phone_e164) phone_e164, id FROM contacts "
                "WHERE id % 2 = 0 ORDER BY phone_e164, id) c LIMIT :matching"
            ),
            {"matching": matching},
        ).rowcount
        connection.execute(
            sa.text(
                "INSERT INTO suppressions (phone_e164, reason, source, recorded_at) "
                "SELECT phone, 'repus', 'benchmark', now() FROM (SELECT '+52' || "
                "(1000000000 + g * 7919 % 8999999999)::text AS phone "
                "FROM generate_series(1::bigint, 2 * :others) g) n "
                "WHERE NOT EXISTS (SELECT 1 FROM contacts c WHERE c.phone_e164 = n.phone) "
                "LIMIT :others"
            ),
            {"others": count - matching},
        )
        connection.execute(
            sa.text(
                "INSERT INTO sms_replies (id, phone_e164, body, received_at) "
                "SELECT g, '044' || (1000000000 + (g + :offset) * 7919 % 8999999999)::text, "
                "'BAJA', now() FROM generate_series(1::bigint, :replies) g"
            ),
            {"replies": replies, "offset": 2 * count},
        )
        matched = connection.execute(
            sa.text(
                "SELECT count(*) FROM contacts c WHERE EXISTS (SELECT 1 FROM suppressions x "
                "WHERE x.phone_e164 = c.phone_e164)"
            )
        ).scalar_one()
        total = connection.execute(sa.text("SELECT count(*) FROM suppressions")).scalar_one()
        connection.execute(sa.text("ANALYZE suppressions"))
        connection.execute(sa.text("ANALYZE sms_replies"))
    return {"suppressions": total, "matched_contacts": matched}


def switch_consent(database: Database, on: bool) -> None:
    """Put the filled consent tables in place (``on``) or empty ones of the same shape."""
    with database.engine.begin() as connection:
        for table in CONSENT:
            away, back = (
                (f"{table}_empty", f"{table}_full") if on else (f"{table}_full", f"{table}_empty")
            )
            connection.execute(sa.text(f"ALTER TABLE {table} RENAME TO {away}"))
            connection.execute(sa.text(f"ALTER TABLE {back} RENAME TO {table}"))


def timed_export(url: str, folder: str, name: str) -> dict:
    """One export of every contact as CSV, with its timing and what it left out."""
    from lead_scoring_assets.campaigns.segment_export import Segment, export_segment

    database = Database(url)
    started = time.perf_counter()
    report = export_segment(database, Segment(), name, folder=Path(folder), overwrite=True)
    seconds = time.perf_counter() - started
    database.dispose()
    return {
        "rows": report.rows,
        "seconds": seconds,
        "suppressed": report.left_out["suppressed_contacts"],
    }


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--contacts", type=int, default=1_000_000)
    parser.add_argument("--suppressions", type=int, help="default: as many as --contacts")
    parser.add_argument(
        "--matching-share",
        type=float,
        default=0.5,
        help="share of the suppressions that are contacts' numbers (at most half the contacts)",
    )
    parser.add_argument("--replies", type=int, default=1_000)
    parser.add_argument("--pairs", type=int, default=5)
    parser.add_argument("--url", default=DEFAULT_URL)
    parser.add_argument("--keep", action="store_true", help="do not drop the database")
    args = parser.parse_args()
    url = sa.make_url(args.url)
    print(f"database {redact(args.url)}, {args.contacts:,} contacts")
    try:
        database = scored_database(url, args.contacts, reuse=False)
        count = args.suppressions or args.contacts
        figures = record_suppressions(
            database, count, args.replies, int(count * args.matching_share)
        )
        with database.engine.begin() as connection:
            for table in CONSENT:
                connection.execute(
                    sa.text(f"CREATE TABLE {table}_empty (LIKE {table} INCLUDING ALL)")
                )
        switch_consent(database, on=False)
        print(
            f"{figures['suppressions']:,} suppressions, {figures['matched_contacts']:,} of "
            f"them contacts' numbers; {args.replies:,} unprocessed opt-out replies"
        )
        ratios = []
        with tempfile.TemporaryDirectory() as folder:
            for pair in range(args.pairs + 1):
                runs = {}
                for on in (True, False):
                    if on:
                        switch_consent(database, on=True)
                    runs[on] = run_in_fresh_process(timed_export, args.url, folder, "all.csv")
                    if on:
                        switch_consent(database, on=False)
                if pair == 0:
                    print(
                        "warm-up pair (not counted): with "
                        f"{runs[True]['seconds']:.2f} s, without {runs[False]['seconds']:.2f} s"
                    )
                    continue
                ratio = runs[True]["seconds"] / runs[False]["seconds"]
                ratios.append(ratio)
                print(
                    f"pair {pair}: with suppressions {runs[True]['seconds']:6.2f} s "
                    f"({runs[True]['rows']:,} rows, {runs[True]['suppressed']:,} left out), "
                    f"without {runs[False]['seconds']:6.2f} s ({runs[False]['rows']:,} rows): "
                    f"{ratio:.3f}x"
                )
        print(
            f"median ratio with / without suppressions: {statistics.median(ratios):.3f}x "
            f"over {len(ratios)} pairs"
        )
        database.dispose()
    finally:
        if not args.keep:
            drop_database(url)


if __name__ == "__main__":
    main()
