"""Benchmark: the uplift model's training set and candidates, and uplift_scores.

    python -m benchmarks.uplift --contacts 1000000

Loads N demo contacts into a scratch PostgreSQL database and rescores them (unless
``--reuse``); their six demo campaigns have 20 % control groups, of which the latest
``--campaigns`` are kept (at 1M contacts, about 300k recipients each). Then times in fresh
processes: building the point-in-time training set, fitting every candidate and both baselines
with MLflow logging (a scratch store) and the gate, and ``uplift_scores`` for every contact
with each candidate as the champion (reasons included), and ``campaign_results`` over the kept
campaigns. Reports peak RSS. ``--candidates`` limits the candidates trained and scored (all by
default); ``--drop`` drops the database at the end.
"""

import argparse
import os
import tempfile
import time

import sqlalchemy as sa

from benchmarks.fresh_process import run_in_fresh_process
from benchmarks.full_rescore import AS_OF, drop_database, scored_database
from lead_scoring_assets.db.database import Database, redact

TARGET_SECONDS = 60.0
TARGET_RSS_MB = 2048
TARGET_RESULTS_SECONDS = 30.0


def timed_training(url: str, tracking_uri: str, candidates: tuple[str, ...]) -> dict:
    from lead_scoring_assets.ml.tracking import MlflowTarget
    from lead_scoring_assets.ml.uplift_tracking import train_uplift_model, uplift_target

    database = Database(url)
    started = time.perf_counter()
    report = train_uplift_model(
        database, uplift_target(MlflowTarget(tracking_uri)), candidates, 30, AS_OF
    )
    database.dispose()
    return {
        "total": time.perf_counter() - started,
        "training_set": report.training.seconds,
        "recipients": len(report.training.rows),
        "campaigns": report.training.campaigns.to_dict("records"),
        "fits": {c.trained.name: (c.trained.seconds_fit, c.trained.metrics) for c in report.logged},
        "runs": {c.trained.name: c.run_id for c in report.logged},
        "baselines": report.baselines,
        "decision": report.decision.reason,
    }


def timed_scoring(url: str, tracking_uri: str, candidate: str, run_id: str) -> dict:
    import mlflow
    import skops.io

    from lead_scoring_assets.ml.conversion_tracking import ConversionChampion
    from lead_scoring_assets.ml.tracking import MlflowTarget
    from lead_scoring_assets.ml.uplift_scores import uplift_score_violations, write_uplift_scores
    from lead_scoring_assets.ml.uplift_tracking import UPLIFT_TRUSTED_TYPES

    MlflowTarget(tracking_uri).activate()
    with tempfile.TemporaryDirectory() as folder:
        path = mlflow.artifacts.download_artifacts(f"runs:/{run_id}/model", dst_path=folder)
        model = skops.io.load(f"{path}/model.skops", trusted=UPLIFT_TRUSTED_TYPES)
    database = Database(url)
    started = time.perf_counter()
    report = write_uplift_scores(
        database,
        ConversionChampion(model, "bench", candidate),
        AS_OF,
        audit=uplift_score_violations,
    )
    seconds = time.perf_counter() - started
    database.dispose()
    return {
        "total": seconds,
        "rows": report.contacts,
        "read": report.stages.read,
        "compute": report.stages.compute,
        "audit_failed": report.violations.failed,
    }


def timed_campaign_results(url: str) -> dict:
    from lead_scoring_assets.campaigns.results import campaign_results

    database = Database(url)
    started = time.perf_counter()
    results = campaign_results(database)
    seconds = time.perf_counter() - started
    database.dispose()
    return {
        "total": seconds,
        "campaigns": len(results),
        "recipients": sum(r.target.recipients + r.control.recipients for r in results),
    }


def main() -> None:
    from lead_scoring_assets.ml.uplift import CANDIDATES

    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--contacts", type=int, default=1_000_000)
    parser.add_argument(
        "--campaigns", type=int, default=4, help="the latest demo campaigns kept (the demo has six)"
    )
    parser.add_argument(
        "--url", default="postgresql+psycopg://postgres@127.0.0.1:5432/lead_scoring_bench_uplift"
    )
    parser.add_argument(
        "--candidates",
        nargs="+",
        choices=CANDIDATES,
        default=list(CANDIDATES),
        help="the candidates trained and scored (default: all)",
    )
    parser.add_argument("--reuse", action="store_true", help="keep the loaded data of a past run")
    parser.add_argument("--drop", action="store_true", help="drop the database at the end")
    args = parser.parse_args()
    os.environ.setdefault("MLFLOW_ENABLE_ARTIFACTS_PROGRESS_BAR", "false")
    url = sa.make_url(args.url)
    print(f"database {redact(args.url)}, {args.contacts:,} contacts, {args.campaigns} campaigns")
    database = scored_database(url, args.contacts, args.reuse)
    with database.engine.begin() as connection:
        old = "SELECT id FROM campaigns ORDER BY sent_at DESC, id DESC OFFSET :keep"
        for table in ("campaign_recipients", "campaign_outcomes"):
            connection.execute(
                sa.text(f"DELETE FROM {table} WHERE campaign_id IN ({old})"),
                {"keep": args.campaigns},
            )
        connection.execute(sa.text("ANALYZE"))
    database.dispose()
    try:
        with tempfile.TemporaryDirectory() as folder:
            tracking_uri = f"sqlite:///{folder}/mlflow.db"
            training = run_in_fresh_process(
                timed_training, args.url, tracking_uri, tuple(args.candidates)
            )
            scoring = {
                name: run_in_fresh_process(timed_scoring, args.url, tracking_uri, name, run)
                for name, run in training["runs"].items()
            }
        results = run_in_fresh_process(timed_campaign_results, args.url)
    finally:
        if args.drop:
            drop_database(url)

    for c in training["campaigns"]:
        print(
            f"campaign {c['id']}: {c['target']:,} target ({c['target_conversions']:,} "
            f"conversions), {c['control']:,} control ({c['control_conversions']:,})"
        )
    print(
        f"training set: {training['recipients']:,} recipients built as of each campaign in "
        f"{training['training_set']:.1f} s"
    )
    for name, (seconds, metrics) in training["fits"].items():
        print(
            f"  {name}: fit {seconds:.1f} s, holdout Qini {metrics['qini']:.5f}, "
            f"incremental conversions in the top 10 % {metrics['incremental_top_10pct']:.1f}"
        )
    for name, metrics in training["baselines"].items():
        print(
            f"  {name} (baseline): Qini {metrics['qini']:.5f}, incremental conversions in "
            f"the top 10 % {metrics['incremental_top_10pct']:.1f}"
        )
    print(f"  gate: {training['decision']}")
    print(
        f"training set + baselines + candidates + MLflow logging: {training['total']:.1f} s; "
        f"peak RSS {training['peak_rss_mb']:,.0f} MB (target {TARGET_RSS_MB:,} MB)"
    )
    for name, result in scoring.items():
        print(
            f"uplift_scores with {name}: {result['rows']:,} contacts in "
            f"{result['total']:.1f} s (target {TARGET_SECONDS:.0f} s), reasons included; "
            f"read {result['read']:.1f} / score {result['compute']:.1f} s; peak RSS "
            f"{result['peak_rss_mb']:,.0f} MB; audit "
            f"{'FAILED' if result['audit_failed'] else 'passed'}"
        )
    print(
        f"campaign_results: {results['campaigns']} campaigns, {results['recipients']:,} "
        f"recipients in {results['total']:.1f} s (target {TARGET_RESULTS_SECONDS:.0f} s); "
        f"peak RSS {results['peak_rss_mb']:,.0f} MB"
    )


if __name__ == "__main__":
    main()
