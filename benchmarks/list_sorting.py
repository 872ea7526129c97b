"""Benchmark: the contact list sorted by score, conversion probability or uplift, and its total
per filter, on N contacts in PostgreSQL.

    python -m benchmarks.list_sorting --contacts 300000

Loads N demo contacts into a scratch database (``lead_scoring_bench_list``, dropped at the end
unless ``--keep``; ``--reuse`` skips the load) and scores them, gives 9 contacts in 10 a
synthetic conversion probability and every scored one a synthetic uplift (SQL, as
``benchmarks.profit_export``), then calls the API's ``ScoreReader.page`` in this process:
for each case the median of ``--repeat`` calls of a first page (which counts the total), of a
later page (from the 10th page's cursor) and of the count alone, and each statement's plan
(EXPLAIN: whether it sorts, and the nodes it reads through).
"""

import argparse
import re
import statistics
import time
from collections import Counter
from functools import partial

import sqlalchemy as sa

from benchmarks.full_rescore import drop_database, scored_database
from benchmarks.profit_export import score_uplift
from lead_scoring_assets.api.queries import ScoreReader
from lead_scoring_assets.db.database import Database, redact

DEFAULT_URL = "postgresql+psycopg://postgres@127.0.0.1:5432/lead_scoring_bench_list"
CASES = (
    ("score", None, None),
    ("conversion", None, None),
    ("uplift", None, None),
    ("conversion", "HIGH", None),
    ("uplift", None, "Jalisco"),
)
LIMIT = 50
PARTITION = re.compile(r"_p\d\d(?=_|$)")
"""A partition's suffix in its name or its indexes' (``lead_scores_p03_pkey``)."""


def add_probabilities(database: Database) -> int:
    """A synthetic conversion probability for 9 contacts in 10 (the tenth has none, as a
    contact added after the nightly); the rows written."""
    with database.engine.begin() as connection:
        rows = connection.execute(
            sa.text(
                "INSERT INTO conversion_scores (contact_id, conversion_probability, "
                "probability_decile, model_version, method, calculated_at) "
                "SELECT contact_id, p, ntile(10) OVER (ORDER BY p), 'bench', 'synthetic', now() "
                "FROM (SELECT contact_id, CAST((contact_id * 104729 % 10007) / 10007.0 * 0.3 "
                "AS REAL) AS p FROM lead_scores WHERE contact_id % 10 <> 0) x"
            )
        ).rowcount
        connection.execute(sa.text("ANALYZE conversion_scores"))
    return rows


def _median_ms(call, repeat: int) -> float:
    seconds = []
    for _ in range(repeat):
        started = time.perf_counter()
        call()
        seconds.append(time.perf_counter() - started)
    return statistics.median(seconds) * 1000


def _plan(connection, statement: str, parameters) -> str:
    """The plan's shape: whether it sorts, and how it reads each table (partitions counted
    together)."""
    plan = connection.exec_driver_sql(f"EXPLAIN (FORMAT JSON) {statement}", parameters)
    nodes, stack = [], [plan.scalar_one()[0]["Plan"]]
    while stack:
        node = stack.pop()
        stack.extend(node.get("Plans", []))
        nodes.append(node)
    sorts = [n["Node Type"] for n in nodes if "Sort" in n["Node Type"]]
    scans = Counter(
        f"{n['Node Type']} {PARTITION.sub('', n.get('Index Name') or n['Relation Name'])}"
        for n in nodes
        if "Relation Name" in n
    )
    return (
        ("SORTS" if sorts else "no sort")
        + "; "
        + ", ".join(
            f"{scan} x{count}" if count > 1 else scan for scan, count in sorted(scans.items())
        )
    )


def measure(url: str, repeat: int) -> None:
    database = Database(url)
    reader = ScoreReader(database)
    statements: list[tuple[str, object]] = []

    def keep(connection, cursor, statement, parameters, context, executemany):
        if "FROM lead_scores s" in statement:
            statements.append((statement, parameters))

    for sort, tier, state in CASES:
        name = (
            f"sort={sort}"
            + (f" tier={tier}" if tier else "")
            + (f" state={state}" if state else "")
        )

        def page(after=None, sort=sort, tier=tier, state=state):
            return reader.page(tier, state, None, after, LIMIT, sort=sort)

        after = None
        for _ in range(10):
            after = page(after).last_key
        statements.clear()
        sa.event.listen(database.engine, "before_cursor_execute", keep)
        page()
        page(after)
        sa.event.remove(database.engine, "before_cursor_execute", keep)
        count = next(s for s in statements if s[0].startswith("SELECT count(*)"))
        with database.engine.connect() as connection:
            count_ms = _median_ms(partial(connection.exec_driver_sql, *count), repeat)
            plans = [_plan(connection, *s) for s in statements]
        first = _median_ms(page, repeat)
        later = _median_ms(partial(page, after), repeat)
        print(
            f"{name}: first page {first:.1f} ms (count alone {count_ms:.1f} ms), "
            f"11th page {later:.1f} ms (median of {repeat})"
        )
        for plan in plans:
            print(f"    {plan}")
    database.dispose()


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--contacts", type=int, default=300_000)
    parser.add_argument("--url", default=DEFAULT_URL)
    parser.add_argument("--repeat", type=int, default=9)
    parser.add_argument("--reuse", action="store_true", help="keep the loaded data of a past run")
    parser.add_argument("--keep", action="store_true", help="do not drop the database at the end")
    args = parser.parse_args()
    url = sa.make_url(args.url)
    print(f"database {redact(args.url)}, {args.contacts:,} contacts")
    if not args.reuse:
        database = scored_database(url, args.contacts, reuse=False)
        print(f"conversion_scores: {add_probabilities(database):,} rows")
        print(f"uplift_scores: {score_uplift(database):,} rows")
        with database.engine.begin() as connection:
            connection.execute(sa.text("ANALYZE"))
        database.dispose()
    database = Database(args.url)
    print(f"schema revision {database.current_revision()}")
    database.dispose()
    measure(args.url, args.repeat)
    if not args.keep:
        drop_database(url)


if __name__ == "__main__":
    main()
