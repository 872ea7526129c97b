"""Benchmark: what recording contact changes (migration ``0016``) adds to a bulk UPDATE.

    python -m benchmarks.contact_changes --contacts 100000

Loads N synthetic contacts into a scratch PostgreSQL database (``--sqlite``: a SQLite file
instead), then times one UPDATE that changes every contact's carrier, at revision ``0015``
(without the triggers of ``0016``) and at the head, alternately, ``--repeat`` times each; the
scoring queue (emptied before each UPDATE) is filled by its own triggers in both. Prints the
median of each and their ratio; drops the database at the end.
"""

import argparse
import statistics
import tempfile
import time
from pathlib import Path

import numpy as np
import pandas as pd
import sqlalchemy as sa

from benchmarks.full_rescore import drop_database, recreate_database
from lead_scoring_assets.db.database import Database, redact

BEFORE = "0015"


def synthetic_contacts(count: int) -> pd.DataFrame:
    ids = np.arange(1, count + 1)
    return pd.DataFrame(
        {
            "id": ids,
            "phone_e164": [f"+52{5500000000 + i}" for i in ids],
            "full_name": [f"Contacto {i}" for i in ids],
            "address": "Av. Reforma 1",
            "state_name": "Jalisco",
            "municipality": "Guadalajara",
            "lada": "33",
            "operator": "TELCEL",
            "created_at": pd.Series(
                pd.Timestamp("2026-01-01", tz="UTC"), index=ids - 1, dtype="datetime64[us, UTC]"
            ),
        }
    )


def timed_update(database: Database, carrier: str) -> float:
    with database.engine.begin() as connection:
        connection.execute(sa.text("DELETE FROM scoring_queue"))
    started = time.perf_counter()
    with database.engine.begin() as connection:
        connection.execute(sa.text("UPDATE contacts SET operator = :carrier"), {"carrier": carrier})
    return time.perf_counter() - started


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--contacts", type=int, default=100_000)
    parser.add_argument("--repeat", type=int, default=3)
    parser.add_argument(
        "--url", default="postgresql+psycopg://postgres@127.0.0.1:5432/lead_scoring_bench_changes"
    )
    parser.add_argument("--sqlite", action="store_true", help="a scratch SQLite file instead")
    args = parser.parse_args()
    with tempfile.TemporaryDirectory() as folder:
        url = f"sqlite:///{Path(folder) / 'changes.db'}" if args.sqlite else args.url
        if not args.sqlite:
            recreate_database(sa.make_url(url))
        database = Database(url)
        database.upgrade()
        database.append_frame("contacts", synthetic_contacts(args.contacts))
        seconds: dict[str, list[float]] = {BEFORE: [], "head": []}
        for attempt in range(args.repeat):
            for revision in (BEFORE, "head"):
                if revision == BEFORE:
                    database.downgrade(BEFORE)
                else:
                    database.upgrade()
                carrier = f"CARRIER {attempt} {revision}"
                seconds[revision].append(timed_update(database, carrier))
        recorded = database.read_frame("SELECT count(*) AS n FROM contact_changes")["n"].iloc[0]
        database.dispose()
        if not args.sqlite:
            drop_database(sa.make_url(url))
    without, with_changes = (statistics.median(seconds[r]) for r in (BEFORE, "head"))
    print(
        f"{database.dialect} {redact(url)}: UPDATE of {args.contacts:,} contacts' carrier, "
        f"median of {args.repeat}: without contact_changes {without:.3f} s, with "
        f"{with_changes:.3f} s ({with_changes / without:.2f}x, {recorded:,} changes "
        "recorded by the last)"
    )


if __name__ == "__main__":
    main()
