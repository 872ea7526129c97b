"""Benchmark: incremental scoring throughput, and insert-to-score latency with the daemon.

    python -m benchmarks.incremental throughput
    python -m benchmarks.incremental latency --inserts 50

Both run on the database the full-rescoring benchmark leaves (``lead_scoring_bench``, load
it first with ``benchmarks.full_rescore``). ``throughput`` dirties 1k, 10k
and 50k random contacts (one new validation row each) and times one incremental batch for
each, against the full rescoring's per-contact rate measured in the same run. ``latency``
starts a code server and ``dagster-daemon`` on a scratch instance, inserts validation rows
one by one and measures how long each takes to show in ``lead_scores``.
"""

import argparse
import os
import shutil
import statistics
import subprocess
import sys
import tempfile
import threading
import time
from pathlib import Path

import pandas as pd
import sqlalchemy as sa

from lead_scoring_assets.db.database import Database, redact
from lead_scoring_assets.scoring.full_rescore import rescore_all
from lead_scoring_assets.scoring.incremental import score_queued

BENCH_URL = "postgresql+psycopg://postgres@127.0.0.1:5432/lead_scoring_bench"
AS_OF = pd.Timestamp("2026-11-25T00:00:00Z")


def insert_validations(
    connection: sa.Connection, count: int, order: str, valid: bool, at: pd.Timestamp
) -> None:
    """One new Apple validation row (``valid``, dated ``at``) for each of the first ``count``
    contacts in ``order`` (SQL): the triggers enqueue them."""
    connection.execute(
        sa.text(
            "INSERT INTO platform_validations (id, contact_id, platform, is_valid, "
            "is_business, is_premium, confidence_score, validation_method, "
            "response_time_ms, validated_at) "
            "SELECT (SELECT max(id) FROM platform_validations) + row_number() OVER (), id, "
            "'apple', :valid, false, false, 0.93, 'benchmark', 100, :at FROM "
            f"(SELECT id FROM contacts ORDER BY {order} LIMIT :count) AS picked"
        ),
        {"count": count, "at": at.to_pydatetime(), "valid": valid},
    )


def dirty_random_contacts(database: Database, count: int, seed: int) -> None:
    """One new current validation row for ``count`` random contacts (the triggers enqueue)."""
    with database.engine.begin() as connection:
        connection.execute(sa.text("SELECT setseed(:seed)"), {"seed": seed / 1000})
        insert_validations(connection, count, "random()", True, AS_OF)


def throughput(url: str) -> None:
    database = Database(url)
    contacts = database.count("contacts")
    full = rescore_all(database, AS_OF)
    full_rate = full.contacts_scored / full.seconds_total
    print(f"{redact(url)}: {contacts:,} contacts")
    print(f"baseline full rescoring: {full.seconds_total:.2f} s ({full_rate:,.0f} contacts/s)")
    for index, size in enumerate((1_000, 10_000, 50_000)):
        dirty_random_contacts(database, size, seed=index + 1)
        started = time.perf_counter()
        report = score_queued(database, AS_OF, owner=f"benchmark-{size}", batch_size=size)
        seconds = time.perf_counter() - started
        rate = report.scored / seconds
        print(
            f"incremental batch of {report.claimed:,} dirty contacts: {seconds:.2f} s "
            f"({rate:,.0f} contacts/s, {rate / full_rate:.2f}x the full rescoring's rate), "
            f"{report.removed:,} queue entries removed"
        )
    database.dispose()


def _wait_for_scores(database: Database, pending: dict, latencies: list, stop) -> None:
    while not stop.is_set():
        if pending:
            ids = list(pending)
            rows = database.read_frame(
                "SELECT contact_id, apple_score FROM lead_scores WHERE contact_id IN "
                f"({', '.join(str(i) for i in ids)}) AND apple_score > 0"
            )
            now = time.monotonic()
            for contact_id in rows["contact_id"]:
                latencies.append(now - pending.pop(int(contact_id)))
        time.sleep(0.25)


def latency(url: str, inserts: int, spacing: float) -> None:
    database = Database(url)
    rescore_all(database, AS_OF)
    targets = database.read_frame(
        "SELECT contact_id FROM lead_scores WHERE apple_score = 0 ORDER BY contact_id LIMIT :n",
        {"n": inserts},
    )["contact_id"].tolist()
    home = Path(tempfile.mkdtemp(prefix="lead_scoring_bench_home_"))
    env = {**os.environ, "DAGSTER_HOME": str(home), "LEAD_SCORING_DATABASE_URL": url}
    binaries = Path(sys.executable).parent
    repository = Path(__file__).resolve().parents[2]
    workspace = home / "workspace.yaml"
    workspace.write_text(
        "load_from:\n  - grpc_server:\n      host: localhost\n      port: 4266\n"
        "      location_name: lead_scoring_assets.definitions\n"
    )
    processes = [
        subprocess.Popen(
            [
                str(binaries / "dagster"),
                "code-server",
                "start",
                "-m",
                "lead_scoring_assets.definitions",
                "-p",
                "4266",
            ],
            env=env,
            cwd=repository,
            stdout=subprocess.DEVNULL,
            stderr=subprocess.DEVNULL,
        ),
    ]
    time.sleep(8)
    processes.append(
        subprocess.Popen(
            [str(binaries / "dagster-daemon"), "run", "-w", str(workspace)],
            env=env,
            cwd=home,
            stdout=subprocess.DEVNULL,
            stderr=subprocess.DEVNULL,
        )
    )
    pending: dict[int, float] = {}
    latencies: list[float] = []
    stop = threading.Event()
    watcher = threading.Thread(target=_wait_for_scores, args=(database, pending, latencies, stop))
    watcher.start()
    try:
        time.sleep(10)
        top = int(database.read_frame("SELECT max(id) AS m FROM platform_validations")["m"][0])
        for i, contact_id in enumerate(targets):
            with database.engine.begin() as connection:
                connection.execute(
                    sa.text(
                        "INSERT INTO platform_validations (id, contact_id, platform, is_valid, "
                        "is_business, is_premium, confidence_score, validated_at) VALUES "
                        "(:id, :contact, 'apple', true, false, false, 1.0, :at)"
                    ),
                    {"id": top + 1 + i, "contact": contact_id, "at": AS_OF.to_pydatetime()},
                )
            pending[int(contact_id)] = time.monotonic()
            time.sleep(spacing)
        deadline = time.monotonic() + 180
        while pending and time.monotonic() < deadline:
            time.sleep(1)
    finally:
        stop.set()
        watcher.join()
        for process in processes:
            process.terminate()
        for process in processes:
            process.wait(timeout=60)
        shutil.rmtree(home, ignore_errors=True)
    ordered = sorted(latencies)
    p95 = ordered[max(0, round(0.95 * len(ordered)) - 1)] if ordered else float("nan")
    print(f"{len(latencies)} of {inserts} inserts scored, {len(pending)} not within 180 s")
    print(
        f"insert -> updated score: p50 {statistics.median(ordered):.1f} s, p95 {p95:.1f} s, "
        f"max {ordered[-1]:.1f} s (sensor interval "
        f"{os.environ.get('LEAD_SCORING_QUEUE_INTERVAL_SECONDS', '30')} s)"
    )
    database.dispose()


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("mode", choices=["throughput", "latency"])
    parser.add_argument("--url", default=BENCH_URL)
    parser.add_argument("--inserts", type=int, default=50)
    parser.add_argument("--spacing", type=float, default=2.0, help="seconds between inserts")
    args = parser.parse_args()
    if args.mode == "throughput":
        throughput(args.url)
    else:
        latency(args.url, args.inserts, args.spacing)


if __name__ == "__main__":
    main()
