"""Benchmark: the API reader's own CPU per score card and per lookup by phone, in process.

    python -m benchmarks.api --contacts 100000 --url …/lead_scoring_bench_api --load-only
    python -m benchmarks.api_reader --url …/lead_scoring_bench_api

Reads ``--cards`` random scored contacts of an existing database (PostgreSQL or SQLite, loaded
by ``benchmarks.api --load-only``) through ``ScoreReader`` as the API does, by id and by phone,
``--rounds`` times each, and prints the CPU time of this process per call (``process_time``:
Python, the driver and the kernel's share of the round trips, not the database server's), the
best and the median round. No HTTP server, no load generator: the figure moves only with the
reader's code, so two commits can be compared in turn on a shared machine (``PYTHONPATH`` to a
checkout of the other).
"""

import argparse
import json
import os
import statistics
import time

import sqlalchemy as sa

from lead_scoring_assets.api.app import create_app


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--url", required=True, help="a database loaded by benchmarks.api")
    parser.add_argument("--cards", type=int, default=3000, help="contacts read per round")
    parser.add_argument("--rounds", type=int, default=5)
    parser.add_argument("--json", help="write the figures to this file")
    args = parser.parse_args()
    os.environ.setdefault("LEAD_SCORING_API_KEYS", "benchmark-read-key")
    reader = create_app(args.url, cursor_secret="benchmark").state.reader
    with reader.engine.connect() as connection:
        contacts = connection.execute(
            sa.text(
                "SELECT s.contact_id, c.phone_e164 FROM lead_scores s "
                "JOIN contacts c ON c.id = s.contact_id WHERE c.phone_e164 IS NOT NULL "
                "ORDER BY random() LIMIT :n"
            ),
            {"n": args.cards},
        ).all()
    if not contacts:
        raise SystemExit("no scored contact: load the database with benchmarks.api --load-only")
    figures = {}
    for name, read, column in (
        ("score card", reader.score_card, 0),
        ("lookup by phone", reader.score_card_by_phone, 1),
    ):
        rounds = []
        for _ in range(args.rounds):
            start = time.process_time()
            for contact in contacts:
                read(contact[column])
            rounds.append((time.process_time() - start) / len(contacts) * 1e6)
        figures[name] = {"best_us": min(rounds), "median_us": statistics.median(rounds)}
        print(
            f"{name:16s} {min(rounds):7.1f} µs CPU a call (best round), "
            f"median {statistics.median(rounds):7.1f} ({args.rounds} x {len(contacts):,})"
        )
    if args.json:
        with open(args.json, "w") as handle:
            json.dump(figures, handle, indent=2)
    reader.engine.dispose()


if __name__ == "__main__":
    main()
