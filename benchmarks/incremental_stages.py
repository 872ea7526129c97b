"""Benchmark: one incremental batch, stage by stage, at any table size (issue 26).

    python -m benchmarks.incremental_stages --url URL --batch 50000 --rounds 3
    python -m benchmarks.incremental_stages --contacts 20000 --batch 1000 --drop

On PostgreSQL. With ``--contacts``, the database is created again and loaded as
``benchmarks.full_scale`` loads it (validation rows in arrival order), then rescored once,
which settles the load's queue; without, the database is used as it is (e.g. after
``full_scale --load-only`` and a full rescoring), its queue empty. Each round dirties the same ``--batch`` contacts
(chosen by a hash of their id, whatever the table's physical order) with one new validation
row each, dated just before the run's ``as_of`` and alternately valid and not, so that every
round changes their scores, history and ``last_platform_validation``; then it times
``score_queued`` in a fresh process: ``claim``, ``read`` (the batch's contacts, validation rows
and the LADA reference), ``score`` (the engine) and the settlement's statements grouped as
``temp`` (filling its temporary tables), ``fence`` (lease and newer-score checks), ``scores``
(the ``lead_scores`` upsert), ``history``, ``last_validation`` (``contacts`` update),
``malformed``, ``queue`` (removing the entries) and ``commit`` (the rest of the settlement,
its commit included); ``other`` is the rest of the run (the scoring lock, frames).
``--explain FILE`` writes ``EXPLAIN (ANALYZE, BUFFERS)`` of every statement of the batch to
FILE (each run in a savepoint rolled back before it runs for real, so that round's times are
not representative). One line per round, with the code's commit and the load average;
``--drop`` drops the database at the end.
"""

import argparse
import functools
import os
import subprocess
import time
from collections import defaultdict
from pathlib import Path

import pandas as pd
import sqlalchemy as sa

from benchmarks.fresh_process import run_in_fresh_process
from benchmarks.full_rescore import AS_OF, database_exists, drop_database
from benchmarks.incremental import insert_validations
from lead_scoring_assets.db.database import Database, redact

DEFAULT_URL = "postgresql+psycopg://postgres@127.0.0.1:5432/lead_scoring_incremental_stages"
STAGES = (
    "claim",
    "read",
    "score",
    "temp",
    "fence",
    "scores",
    "history",
    "last_validation",
    "malformed",
    "queue",
    "commit",
    "other",
)
SETTLEMENT = (
    ("history", ("lead_score_history", "to_regclass")),
    ("scores", ("INTO lead_scores", "FROM lead_scores WHERE")),
    ("last_validation", ("UPDATE contacts",)),
    ("malformed", ("malformed",)),
    ("fence", ("DELETE FROM settled_batch", "FROM scoring_queue WHERE contact_id IN", "writer")),
    ("queue", ("scoring_queue",)),
    ("temp", ("settled_",)),
)
"""The settlement's statements by stage: the first whose fragments one occurs in."""
EXPLAINED = ("SELECT", "INSERT", "UPDATE", "DELETE", "WITH")


def load(url: str, contacts: int) -> None:
    """Load ``contacts`` demo contacts as the full-scale benchmark does, then rescore them
    once (settling the load's queue)."""
    from benchmarks.full_scale import load_in_arrival_order
    from lead_scoring_assets.scoring.full_rescore import rescore_all

    load_in_arrival_order(url, contacts)
    database = Database(url)
    database.upgrade()
    rescore_all(database, AS_OF)
    database.dispose()


def dirty(database: Database, count: int, round_number: int) -> None:
    """One new validation row for each of the same ``count`` contacts, dated ``round_number``
    seconds after an hour before ``AS_OF`` and valid in even rounds only (the triggers
    enqueue)."""
    at = pd.Timestamp(AS_OF) - pd.Timedelta(hours=1) + pd.Timedelta(seconds=round_number)
    with database.engine.begin() as connection:
        insert_validations(connection, count, "hashint8(id), id", round_number % 2 == 0, at)


def _explainer(output):
    """A ``before_cursor_execute`` listener writing each statement's plan to ``output``."""

    def explain(connection, cursor, statement, parameters, context, executemany):
        if executemany or not statement.lstrip().upper().startswith(EXPLAINED):
            return
        cursor.execute("SAVEPOINT explained")
        cursor.execute("EXPLAIN (ANALYZE, BUFFERS) " + statement, parameters)
        plan = "\n".join(row[0] for row in cursor.fetchall())
        cursor.execute("ROLLBACK TO SAVEPOINT explained")
        output.write(f"{statement}\n{plan}\n\n")

    return explain


def timed_batch(url: str, batch: int, explain_file: str | None) -> dict:
    """``score_queued`` once, in this process, its time by stage."""
    from lead_scoring_assets.db.scoring_queue import ScoringQueue
    from lead_scoring_assets.scoring import incremental

    seconds: dict[str, float] = defaultdict(float)
    inside = {"complete": False, "temp": False}

    def timed(owner, name: str, stage: str, flag: str | None = None) -> None:
        original = getattr(owner, name)

        @functools.wraps(original)
        def wrapper(*args, **kwargs):
            started = time.perf_counter()
            if flag:
                inside[flag] = True
            try:
                return original(*args, **kwargs)
            finally:
                if flag:
                    inside[flag] = False
                seconds[stage] += time.perf_counter() - started

        setattr(owner, name, wrapper)

    timed(ScoringQueue, "claim", "claim")
    timed(ScoringQueue, "read_batch", "read")
    timed(incremental, "read_lada_reference", "read")
    timed(incremental, "_score_isolating_failures", "score")
    timed(ScoringQueue, "complete", "settlement", "complete")
    timed(ScoringQueue, "_fill_temporary", "temp", "temp")
    database = Database(url)
    output = open(explain_file, "a") if explain_file else None  # noqa: SIM115 - closed below
    if output:
        sa.event.listen(database.engine, "before_cursor_execute", _explainer(output))
        read_frame = database.read_frame

        def explained_read(sql: str, params: dict | None = None, connection=None):
            with database.engine.begin() as own:
                plan = own.execute(sa.text("EXPLAIN (ANALYZE, BUFFERS) " + sql), params or {})
                output.write(f"{sql}\n" + "\n".join(plan.scalars()) + "\n\n")
            return read_frame(sql, params, connection)

        database.read_frame = explained_read

    @sa.event.listens_for(database.engine, "before_cursor_execute")
    def start(connection, cursor, statement, parameters, context, executemany):
        context._started = time.perf_counter()

    @sa.event.listens_for(database.engine, "after_cursor_execute")
    def stop(connection, cursor, statement, parameters, context, executemany):
        if inside["complete"] and not inside["temp"]:
            stage = next(
                (s for s, parts in SETTLEMENT if any(p in statement for p in parts)), "commit"
            )
            seconds[stage] += time.perf_counter() - context._started

    started = time.perf_counter()
    report = incremental.score_queued(database, AS_OF, owner="incremental-stages", batch_size=batch)
    total = time.perf_counter() - started
    database.dispose()
    if output:
        output.close()
    settlement = seconds.pop("settlement")
    settled = sum(seconds[s] for s in STAGES[3:10])
    seconds["commit"] = settlement - settled
    seconds["other"] = total - sum(seconds[s] for s in STAGES[:11])
    return {
        "claimed": report.claimed,
        "scored": report.scored,
        "history_rows": report.history_rows,
        "total": total,
        "stages": {s: seconds[s] for s in STAGES},
    }


def code_version() -> str:
    """The commit of the checkout this runs from (``+`` if its tracked files changed)."""
    commit = subprocess.run(
        ["git", "rev-parse", "--short", "HEAD"], capture_output=True, text=True, check=False
    ).stdout.strip()
    changed = subprocess.run(
        ["git", "status", "--porcelain", "--untracked-files=no"],
        capture_output=True,
        text=True,
        check=False,
    ).stdout.strip()
    return (commit or "unknown") + ("+" if changed else "")


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--url", default=DEFAULT_URL)
    parser.add_argument("--contacts", type=int, help="load this many contacts first")
    parser.add_argument("--batch", type=int, default=50_000)
    parser.add_argument("--rounds", type=int, default=1)
    parser.add_argument("--first-round", type=int, default=0, help="continues earlier rounds")
    parser.add_argument("--explain", type=Path, help="write every statement's plan here")
    parser.add_argument("--drop", action="store_true", help="drop the database at the end")
    args = parser.parse_args()
    if args.contacts:
        load(args.url, args.contacts)
    elif not database_exists(args.url):
        parser.error(f"{redact(args.url)} does not exist: give --contacts to load it")
    database = Database(args.url)
    contacts = database.estimated_count("contacts")
    queued = database.count("scoring_queue")
    if queued:
        raise SystemExit(f"the queue holds {queued:,} entries: settle it first")
    print(f"{redact(args.url)}: about {contacts:,} contacts, code {code_version()}", flush=True)
    for round_number in range(args.first_round, args.first_round + args.rounds):
        dirty(database, args.batch, round_number)
        load_average = os.getloadavg()[0]
        explain = str(args.explain) if args.explain else None
        result = run_in_fresh_process(timed_batch, args.url, args.batch, explain)
        stages = ", ".join(f"{s} {result['stages'][s]:.2f}" for s in STAGES)
        print(
            f"round {round_number}: {result['claimed']:,} claimed, {result['scored']:,} scored, "
            f"{result['history_rows']:,} history rows in {result['total']:.2f} s ({stages}); "
            f"load average {load_average:.2f}",
            flush=True,
        )
    database.dispose()
    if args.drop:
        drop_database(sa.make_url(args.url))


if __name__ == "__main__":
    main()
