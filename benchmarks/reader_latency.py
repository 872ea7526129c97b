"""Benchmark: API read latency on PostgreSQL, quiet and during the nightly publish with a
campaign export running.

    python -m benchmarks.reader_latency --contacts 100000 --drop

Loads N demo contacts into a scratch database (``lead_scoring_bench_readers`` unless
``--url``; kept for a look unless ``--drop``, reused as it is with ``--reuse``) and publishes
every score table once. Then ``--clients`` threads read as the API does (``ScoreReader``: a
contact's score card, which reads ``lead_scores``, ``ml_lead_scores``, the history and
``conversion_scores``, or a first page of the best contacts with a random filter), each with a
pause of ``--pause`` seconds between reads: ``--seconds`` quiet, then while two other
processes run a campaign export of every contact (one ``REPEATABLE READ`` snapshot, held open
for ``--export-seconds`` by pausing between its batches) and the nightly's publishing steps
(``lead_scores`` staged, audited and published bucket by bucket, then ``contact_features``,
``ml_lead_scores`` and ``conversion_scores``). Reads are put in the window they started in:
quiet; export running while the rescoring stages; export running while the publish waits for
it; ``lead_scores`` published after the export; the other tables. Prints p50 / p95 / p99 /
max per window and p95 against quiet. On a small machine the scoring's own CPU slows the reads
down as much as any lock: ``--nice 10`` runs the export and the nightly as if on hosts of their
own (their database work is not niced).
"""

import argparse
import math
import os
import random
import statistics
import tempfile
import threading
import time
import uuid
from pathlib import Path

import sqlalchemy as sa

from benchmarks.api import TIERS
from benchmarks.fresh_process import run_in_fresh_process
from benchmarks.full_rescore import AS_OF, database_exists, drop_database, load_fresh_database
from lead_scoring_assets.db.database import Database, redact

DEFAULT_URL = "postgresql+psycopg://postgres@127.0.0.1:5432/lead_scoring_bench_readers"
LATER = "2026-11-25T00:00:00Z"
EXPORT_BATCH = 5_000


def publish_every_table(url: str, as_of: str, niceness: int = 0) -> dict:
    """The nightly's publishing steps at ``as_of`` (rule-based ML and conversion scores: no
    champion is needed to swap their tables), with the wall-clock time each step ended; the
    process runs at ``niceness``."""
    from lead_scoring_assets.ml.conversion_scores import write_conversion_scores
    from lead_scoring_assets.ml.feature_table import build_contact_features
    from lead_scoring_assets.ml.predictions import write_ml_scores
    from lead_scoring_assets.scoring.checks import staged_score_violations
    from lead_scoring_assets.scoring.full_rescore import publish_rescore, stage_rescore

    os.nice(niceness)
    database = Database(url)
    ended = {"started": time.time()}
    run_id = f"bench-{uuid.uuid4().hex[:8]}"
    stage_rescore(database, as_of, run_id=run_id)
    if staged_score_violations(database, run_id).failed:
        raise RuntimeError("the staged scores failed their audit")
    ended["staged"] = time.time()
    swap = publish_rescore(database, run_id)
    ended["lead_scores"] = time.time()
    build_contact_features(database, as_of)
    ended["contact_features"] = time.time()
    write_ml_scores(database, None)
    ended["ml_lead_scores"] = time.time()
    write_conversion_scores(database, None, as_of)
    ended["conversion_scores"] = time.time()
    database.dispose()
    return {
        **ended,
        "waited": getattr(swap, "seconds_waited", None),
        "locked": swap.seconds_locked,
        "swap": swap.seconds,
    }


def paced_export(url: str, folder: str, pause: float, niceness: int = 0) -> dict:
    """Every contact exported as Parquet, ``pause`` seconds after each batch of
    ``EXPORT_BATCH`` (the snapshot stays open meanwhile), at ``niceness``."""
    from lead_scoring_assets.campaigns.segment_export import Segment, export_segment

    os.nice(niceness)
    database = Database(url)
    started = time.time()
    report = export_segment(
        database,
        Segment(rank_by="conversion_probability"),
        "everyone.parquet",
        "parquet",
        overwrite=True,
        folder=Path(folder),
        batch_size=EXPORT_BATCH,
        after_batch=lambda rows: time.sleep(pause),
    )
    database.dispose()
    return {"started": started, "ended": time.time(), "rows": report.rows}


def prepare(url: str, contacts: int) -> None:
    load_fresh_database(sa.make_url(url), contacts)
    started = time.perf_counter()
    result = publish_every_table(url, AS_OF)
    print(
        f"first publish of every table in {time.perf_counter() - started:.1f} s "
        f"(lead_scores swap {result['swap']:.1f} s)"
    )


class Client(threading.Thread):
    """API reads in a loop, each timed with the wall-clock time it started."""

    def __init__(self, reader, ids: list[int], pause: float, seed: int):
        super().__init__(daemon=True)
        self.reader, self.ids, self.pause = reader, ids, pause
        self.pick = random.Random(seed)
        self.stop = threading.Event()
        self.reads: list[tuple[float, float]] = []

    def run(self) -> None:
        while not self.stop.is_set():
            started_at, started = time.time(), time.perf_counter()
            if self.pick.random() < 0.7:
                self.reader.score_card(self.pick.choice(self.ids))
            else:
                tier = self.pick.choice((None, *TIERS))
                self.reader.page(tier, None, None, None, 50)
            self.reads.append((started_at, time.perf_counter() - started))
            time.sleep(self.pick.expovariate(1 / self.pause))


def percentile(values: list[float], share: float) -> float:
    ordered = sorted(values)
    return ordered[min(len(ordered) - 1, math.ceil(share * len(ordered)) - 1)]


def summary(name: str, latencies: list[float], quiet_p95: float | None) -> str:
    if not latencies:
        return f"{name:<52} no reads"
    ms = [1000 * x for x in latencies]
    line = (
        f"{name:<52} {len(ms):>6,} reads  p50 {statistics.median(ms):7.2f} ms  "
        f"p95 {percentile(ms, 0.95):7.2f} ms  p99 {percentile(ms, 0.99):7.2f} ms  "
        f"max {max(ms):8.2f} ms"
    )
    if quiet_p95:
        line += f"  p95 {percentile(ms, 0.95) / quiet_p95:.2f}x quiet"
    return line


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--contacts", type=int, default=100_000)
    parser.add_argument("--url", default=DEFAULT_URL)
    parser.add_argument("--drop", action="store_true", help="drop the database at the end")
    parser.add_argument(
        "--reuse", action="store_true", help="use the database as it is if it exists (no load)"
    )
    parser.add_argument("--clients", type=int, default=4, help="reading threads")
    parser.add_argument(
        "--pause", type=float, default=0.02, help="mean pause between one client's reads, s"
    )
    parser.add_argument("--seconds", type=float, default=20, help="quiet reading, s")
    parser.add_argument(
        "--export-seconds",
        type=float,
        default=30,
        help="how long the export keeps its snapshot open, s",
    )
    parser.add_argument(
        "--nice",
        type=int,
        default=0,
        help="niceness of the export's and the nightly's Python processes (on "
        "a small machine: as if they ran on hosts of their own; the database's "
        "work for them is not niced)",
    )
    args = parser.parse_args()
    from lead_scoring_assets.api.queries import ScoreReader

    print(
        f"database {redact(args.url)}, {args.contacts:,} contacts, {args.clients} clients "
        f"(mean pause {args.pause * 1000:.0f} ms), export held {args.export_seconds:.0f} s, "
        f"niceness {args.nice}"
    )
    try:
        if args.reuse and database_exists(args.url):
            print("reusing the loaded database")
        else:
            prepare(args.url, args.contacts)
        database = Database(args.url, pool_size=args.clients)
        with database.engine.connect() as connection:
            ids = (
                connection.execute(
                    sa.text(
                        "SELECT contact_id FROM lead_scores TABLESAMPLE BERNOULLI (5) LIMIT 5000"
                    )
                )
                .scalars()
                .all()
            )
        reader = ScoreReader(database)
        clients = [Client(reader, ids, args.pause, seed) for seed in range(args.clients)]
        for client in clients:
            client.start()
        time.sleep(2)
        quiet_from = time.time()
        time.sleep(args.seconds)
        quiet_to = time.time()
        pause = args.export_seconds / max(1, math.ceil(args.contacts / EXPORT_BATCH))
        results: dict = {}
        with tempfile.TemporaryDirectory(prefix="reader_latency_") as folder:
            exporter = threading.Thread(
                target=lambda: results.update(
                    export=run_in_fresh_process(paced_export, args.url, folder, pause, args.nice)
                )
            )
            exporter.start()
            time.sleep(1)
            results["publish"] = run_in_fresh_process(
                publish_every_table, args.url, LATER, args.nice
            )
            exporter.join()
        time.sleep(1)
        for client in clients:
            client.stop.set()
        for client in clients:
            client.join()
        database.dispose()
    finally:
        if args.drop:
            drop_database(sa.make_url(args.url))
    reads = [read for client in clients for read in client.reads]
    export, publish = results["export"], results["publish"]

    def window(start: float, end: float) -> list[float]:
        return [latency for at, latency in reads if start <= at < end]

    quiet = window(quiet_from, quiet_to)
    quiet_p95 = 1000 * percentile(quiet, 0.95)
    print(summary(f"quiet ({args.seconds:.0f} s)", quiet, None))
    print(
        summary(
            "export running, rescoring staging",
            window(export["started"], min(publish["staged"], export["ended"])),
            quiet_p95,
        )
    )
    print(
        summary(
            "export running, publish waiting for it",
            window(publish["staged"], export["ended"]),
            quiet_p95,
        )
    )
    print(
        summary(
            "lead_scores published after the export",
            window(max(export["ended"], publish["staged"]), publish["lead_scores"]),
            quiet_p95,
        )
    )
    print(
        summary(
            "then features, ML and conversion scores",
            window(publish["lead_scores"], publish["conversion_scores"]),
            quiet_p95,
        )
    )
    print(
        summary(
            "whole window (export start to last publish)",
            window(export["started"], publish["conversion_scores"]),
            quiet_p95,
        )
    )
    waited = publish["waited"]
    print(
        f"export: {export['rows']:,} rows in {export['ended'] - export['started']:.1f} s "
        f"(snapshot held open); lead_scores published "
        f"{publish['lead_scores'] - export['ended']:+.1f} s after the export ended, "
        f"publish {publish['swap']:.1f} s"
        + (f" of which {waited:.1f} s waiting for readers" if waited is not None else "")
        + f", longest exclusive lock {publish['locked'] * 1000:.0f} ms; "
        f"contact_features, ml_lead_scores, conversion_scores "
        f"{publish['contact_features'] - publish['lead_scores']:.1f} / "
        f"{publish['ml_lead_scores'] - publish['contact_features']:.1f} / "
        f"{publish['conversion_scores'] - publish['ml_lead_scores']:.1f} s"
    )


if __name__ == "__main__":
    main()
