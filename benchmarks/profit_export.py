"""Benchmark: the export ranked by uplift with ``select: max_profit`` against the same number
of rows ranked by total score, in the same run.

    python -m benchmarks.profit_export --contacts 1000000

Creates the scratch database ``lead_scoring_bench_profit``, loads and rescores N demo
contacts, gives every contact an uplift score (spread evenly from -0.015 to 0.025 by a hash of
its id, deciles by ``ntile``), then exports as CSV ``--pairs`` times each way, in alternating
order, each export in a fresh process, after one pair not counted: ``rank_by: uplift, select:
max_profit`` (0.35 pesos a message, 120 a conversion: about 55 % of the contacts are worth a
message) and ``rank_by: total_score`` limited to as many rows. It prints every pair's times,
ratio and peak RSS, and the median ratio. The database is dropped at the end unless
``--keep``.
"""

import argparse
import statistics
import tempfile
import time
from pathlib import Path

import sqlalchemy as sa

from benchmarks.fresh_process import run_in_fresh_process
from benchmarks.full_rescore import drop_database, scored_database
from lead_scoring_assets.db.database import Database, redact

DEFAULT_URL = "postgresql+psycopg://postgres@127.0.0.1:5432/lead_scoring_bench_profit"
COST, VALUE = 0.35, 120.0


def score_uplift(database: Database) -> int:
    """An uplift score for every scored contact; the rows written."""
    with database.engine.begin() as connection:
        rows = connection.execute(
            sa.text(
                "INSERT INTO uplift_scores (contact_id, uplift, uplift_decile, model_version, "
                "method, calculated_at) SELECT contact_id, u, ntile(10) OVER (ORDER BY u), "
                "'bench', 'synthetic', now() FROM (SELECT contact_id, "
                "(contact_id * 7919 % 1000) / 1000.0 * 0.04 - 0.015 AS u FROM lead_scores) x"
            )
        ).rowcount
        connection.execute(sa.text("ANALYZE uplift_scores"))
    return rows


def timed_export(url: str, folder: str, by_uplift: bool, limit: int | None) -> dict:
    """One CSV export, max_profit by uplift or the best ``limit`` by score, timed."""
    from lead_scoring_assets.campaigns.segment_export import Segment, export_segment

    segment = (
        Segment(
            rank_by="uplift", select="max_profit", cost_per_message=COST, value_per_conversion=VALUE
        )
        if by_uplift
        else Segment(limit=limit)
    )
    database = Database(url)
    started = time.perf_counter()
    report = export_segment(
        database,
        segment,
        "profit.csv" if by_uplift else "score.csv",
        folder=Path(folder),
        overwrite=True,
    )
    seconds = time.perf_counter() - started
    database.dispose()
    return {
        "rows": report.rows,
        "seconds": seconds,
        "below": report.left_out.get("below_break_even"),
    }


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--contacts", type=int, default=1_000_000)
    parser.add_argument("--pairs", type=int, default=3)
    parser.add_argument("--url", default=DEFAULT_URL)
    parser.add_argument("--keep", action="store_true", help="do not drop the database")
    args = parser.parse_args()
    url = sa.make_url(args.url)
    print(f"database {redact(args.url)}, {args.contacts:,} contacts")
    try:
        database = scored_database(url, args.contacts, reuse=False)
        print(f"{score_uplift(database):,} uplift scores")
        database.dispose()
        ratios = []
        with tempfile.TemporaryDirectory() as folder:
            limit = None
            for pair in range(args.pairs + 1):
                runs = {}
                for by_uplift in (True, False) if pair % 2 == 0 else (False, True):
                    runs[by_uplift] = run_in_fresh_process(
                        timed_export, args.url, folder, by_uplift, limit
                    )
                    limit = runs[True]["rows"] if True in runs else limit
                profit, score = runs[True], runs[False]
                if pair == 0:
                    print(
                        f"warm-up pair (not counted): max_profit {profit['seconds']:.2f} s, "
                        f"total_score {score['seconds']:.2f} s"
                    )
                    continue
                ratio = profit["seconds"] / score["seconds"]
                ratios.append(ratio)
                print(
                    f"pair {pair}: max_profit {profit['seconds']:6.2f} s ({profit['rows']:,} "
                    f"rows, {profit['below']:,} below break-even, peak RSS "
                    f"{profit['peak_rss_mb']:,.0f} MB), total_score {score['seconds']:6.2f} s "
                    f"({score['rows']:,} rows, peak RSS {score['peak_rss_mb']:,.0f} MB): "
                    f"{ratio:.3f}x"
                )
        print(
            f"median ratio max_profit / total_score: {statistics.median(ratios):.3f}x "
            f"over {len(ratios)} pairs"
        )
    finally:
        if not args.keep:
            drop_database(url)


if __name__ == "__main__":
    main()
