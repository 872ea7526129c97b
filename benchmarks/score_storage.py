"""Benchmark: bytes per contact of the per-contact tables on PostgreSQL, indexes included.

    python -m benchmarks.score_storage --contacts 100000

Loads N demo contacts into a scratch database, runs the full rescoring, ``contact_features``
and ``ml_lead_scores`` (rule fallback, no model needed), then prints each table's heap, index
and total bytes per row (``pg_table_size``, ``pg_indexes_size``, ``pg_total_relation_size``,
summed over its partitions).
Then it downgrades ``lead_scores`` to its 0008 layout (JSON ``score_breakdown``) and measures
it again: the layout before migration 0010. The database is dropped at the end.
"""

import argparse

import sqlalchemy as sa

from benchmarks.full_rescore import AS_OF, drop_database, load_fresh_database
from lead_scoring_assets.db.database import Database, redact

TABLES = ("lead_scores", "contact_features", "ml_lead_scores")
TARGET_BYTES = 200


def bytes_per_row(database: Database, table: str) -> dict:
    """Rows, and heap / index / total bytes per row of ``table`` and its partitions (after
    ``VACUUM ANALYZE``)."""
    with database.engine.connect().execution_options(isolation_level="AUTOCOMMIT") as conn:
        conn.execute(sa.text(f"VACUUM ANALYZE {table}"))
        rows = conn.execute(sa.text(f"SELECT count(*) FROM {table}")).scalar_one()
        heap, indexes, total = conn.execute(
            sa.text(
                "SELECT sum(pg_table_size(relid)), sum(pg_indexes_size(relid)), "
                f"sum(pg_total_relation_size(relid)) FROM (SELECT CAST('{table}' AS regclass) "
                f"AS relid UNION SELECT relid FROM pg_partition_tree('{table}')) AS tree"
            )
        ).one()
    return {"rows": rows, "heap": heap / rows, "indexes": indexes / rows, "total": total / rows}


def _line(name: str, size: dict) -> str:
    verdict = "within" if size["total"] <= TARGET_BYTES else "OVER"
    return (
        f"  {name:<28} {size['rows']:>10,} rows  heap {size['heap']:6.1f}  indexes "
        f"{size['indexes']:6.1f}  total {size['total']:6.1f} B/row ({verdict} "
        f"{TARGET_BYTES} B)"
    )


def main() -> None:
    from lead_scoring_assets.ml.feature_table import build_contact_features
    from lead_scoring_assets.ml.predictions import write_ml_scores
    from lead_scoring_assets.scoring.full_rescore import rescore_all

    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--contacts", type=int, default=100_000)
    parser.add_argument(
        "--url", default="postgresql+psycopg://postgres@127.0.0.1:5432/lead_scoring_storage_bench"
    )
    parser.add_argument("--keep", action="store_true", help="do not drop the database at the end")
    args = parser.parse_args()
    url = sa.make_url(args.url)
    print(f"database {redact(args.url)}, {args.contacts:,} contacts")
    load_fresh_database(url, args.contacts)
    database = Database(args.url)
    try:
        rescore_all(database, AS_OF)
        build_contact_features(database, AS_OF)
        write_ml_scores(database, None)
        print("bytes per contact, indexes included:")
        for table in TABLES:
            print(_line(table, bytes_per_row(database, table)))
        database.downgrade("0008")
        print(_line("lead_scores (0008 layout)", bytes_per_row(database, "lead_scores")))
    finally:
        database.dispose()
        if not args.keep:
            drop_database(url)


if __name__ == "__main__":
    main()
