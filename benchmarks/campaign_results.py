"""Benchmark: ``campaign_results`` over N recipients, on PostgreSQL (or SQLite with a
``sqlite:///`` URL).

    python -m benchmarks.campaign_results --recipients 1000000

Recreates the scratch database (PostgreSQL: ``lead_scoring_bench_campaign_results``; a SQLite
file is replaced), writes ``--campaigns`` campaigns sharing N recipients, 20 % control, each
with its decile and an outcome row (5 % converted, a few after the attribution window), runs
ANALYZE, then times the results of every campaign. The database is dropped at the end unless
``--keep``.
"""

import argparse
import time
from pathlib import Path

import numpy as np
import pandas as pd
import sqlalchemy as sa

from benchmarks.full_rescore import drop_database, recreate_database
from lead_scoring_assets.campaigns.results import campaign_results
from lead_scoring_assets.db.database import Database, redact

DEFAULT_URL = "postgresql+psycopg://postgres@127.0.0.1:5432/lead_scoring_bench_campaign_results"
TARGET_SECONDS = 30.0
SENT_AT = pd.Timestamp("2026-09-01T00:00:00Z")


def write_campaigns(database: Database, recipients: int, campaigns: int, seed: int = 1) -> None:
    """``campaigns`` campaigns of ``recipients // campaigns`` recipients each."""
    rng = np.random.default_rng(seed)
    database.append_frame(
        "campaigns",
        pd.DataFrame(
            {
                "id": np.arange(1, campaigns + 1),
                "name": [f"bench {c}" for c in range(campaigns)],
                "sent_at": pd.Series([SENT_AT] * campaigns, dtype="datetime64[us, UTC]"),
            }
        ),
    )
    size = recipients // campaigns
    ids = np.arange(1, size + 1, dtype="int64")
    for campaign in range(1, campaigns + 1):
        arm = np.where(rng.random(size) < 0.2, "control", "target")
        database.append_frame(
            "campaign_recipients",
            pd.DataFrame(
                {
                    "campaign_id": campaign,
                    "contact_id": ids,
                    "arm": arm,
                    "probability_decile": rng.integers(1, 11, size).astype("int16"),
                }
            ),
        )
        converted = rng.random(size) < 0.05
        at = SENT_AT + pd.to_timedelta(rng.integers(0, 40 * 86400, size), unit="s")
        database.append_frame(
            "campaign_outcomes",
            pd.DataFrame(
                {
                    "campaign_id": campaign,
                    "contact_id": ids,
                    "delivered": arm == "target",
                    "converted": converted,
                    "converted_at": pd.Series(at).where(converted).astype("datetime64[us, UTC]"),
                }
            ),
        )
    with database.engine.begin() as connection:
        connection.execute(sa.text("ANALYZE"))


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--recipients", type=int, default=1_000_000)
    parser.add_argument("--campaigns", type=int, default=4)
    parser.add_argument("--url", default=DEFAULT_URL)
    parser.add_argument("--keep", action="store_true", help="do not drop the database")
    args = parser.parse_args()
    url = sa.make_url(args.url)
    sqlite = url.get_backend_name() == "sqlite"
    print(
        f"database {redact(args.url)}, {args.recipients:,} recipients, {args.campaigns} campaigns"
    )
    if sqlite:
        Path(url.database).unlink(missing_ok=True)
    else:
        recreate_database(url)
    database = Database(args.url)
    try:
        database.upgrade()
        write_campaigns(database, args.recipients, args.campaigns)
        started = time.perf_counter()
        results = campaign_results(database)
        seconds = time.perf_counter() - started
        print(
            f"campaign_results: {len(results)} campaigns, "
            f"{sum(r.target.recipients + r.control.recipients for r in results):,} "
            f"recipients in {seconds:.2f} s (target {TARGET_SECONDS:.0f} s)"
        )
    finally:
        database.dispose()
        if not args.keep and sqlite:
            Path(url.database).unlink(missing_ok=True)
        elif not args.keep:
            drop_database(url)


if __name__ == "__main__":
    main()
