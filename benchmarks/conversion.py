"""Benchmark: the conversion model's training set and training, and conversion_scores.

    python -m benchmarks.conversion --contacts 1000000

Loads N demo contacts with their campaign outcomes into a scratch PostgreSQL database and
rescores them (unless ``--reuse``), keeps the outcomes of one contact in ``--keep-one-in``
(about 500k delivered messages at 1M contacts), then times in fresh processes: building the
point-in-time training set and training every candidate (logged to a scratch MLflow store),
and ``conversion_scores`` for every contact with each candidate as the champion (reasons
included). Reports peak RSS, the stored bytes per row of ``conversion_scores`` (indexes
included) and a raw COPY baseline measured in the same run.
"""

import argparse
import os
import tempfile
import time

import sqlalchemy as sa

from benchmarks.fresh_process import run_in_fresh_process
from benchmarks.full_rescore import (
    AS_OF,
    SCORING_INPUTS,
    copy_baseline,
    scored_database,
)
from lead_scoring_assets.db.database import Database, redact


def timed_training(url: str, tracking_uri: str) -> dict:
    from lead_scoring_assets.ml.conversion import CANDIDATES
    from lead_scoring_assets.ml.conversion_tracking import (
        conversion_target,
        train_conversion_model,
    )
    from lead_scoring_assets.ml.tracking import MlflowTarget

    database = Database(url)
    started = time.perf_counter()
    report = train_conversion_model(
        database, conversion_target(MlflowTarget(tracking_uri)), CANDIDATES, 30, AS_OF
    )
    database.dispose()
    return {
        "total": time.perf_counter() - started,
        "training_set": report.training.seconds,
        "messages": report.training.messages,
        "conversions": report.training.conversions,
        "fits": {
            c.trained.name: (c.trained.seconds_fit, c.trained.evaluation.metrics)
            for c in report.logged
        },
        "runs": {c.trained.name: c.run_id for c in report.logged},
        "rule": report.rule.metrics,
        "decision": report.decision.reason,
    }


def timed_scoring(url: str, tracking_uri: str, candidate: str, run_id: str) -> dict:
    from lead_scoring_assets.ml.conversion_scores import (
        conversion_score_violations,
        write_conversion_scores,
    )
    from lead_scoring_assets.ml.conversion_tracking import (
        CONVERSION_TRUSTED_TYPES,
        ConversionChampion,
    )
    from lead_scoring_assets.ml.tracking import MlflowTarget

    MlflowTarget(tracking_uri).activate()
    import mlflow
    import skops.io

    with tempfile.TemporaryDirectory() as folder:
        path = mlflow.artifacts.download_artifacts(f"runs:/{run_id}/model", dst_path=folder)
        model = skops.io.load(f"{path}/model.skops", trusted=CONVERSION_TRUSTED_TYPES)
    database = Database(url)
    started = time.perf_counter()
    report = write_conversion_scores(
        database,
        ConversionChampion(model, "bench", candidate),
        AS_OF,
        audit=conversion_score_violations,
    )
    seconds = time.perf_counter() - started
    with database.engine.connect() as connection:
        size = connection.execute(
            sa.text(
                "SELECT sum(pg_total_relation_size(relid)) "
                "FROM pg_partition_tree('conversion_scores')"
            )
        ).scalar()
    database.dispose()
    return {
        "total": seconds,
        "rows": report.contacts,
        "read": report.stages.read,
        "compute": report.stages.compute,
        "bytes_per_row": size / max(report.contacts, 1),
        "audit_failed": report.violations.failed,
    }


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--contacts", type=int, default=1_000_000)
    parser.add_argument(
        "--url",
        default="postgresql+psycopg://postgres@127.0.0.1:5432/lead_scoring_bench_conversion",
    )
    parser.add_argument(
        "--keep-one-in",
        type=int,
        default=4,
        help="keep the outcomes of contacts whose id is a multiple of this",
    )
    parser.add_argument("--reuse", action="store_true", help="keep the loaded data of a past run")
    args = parser.parse_args()
    os.environ.setdefault("MLFLOW_ENABLE_ARTIFACTS_PROGRESS_BAR", "false")
    url = sa.make_url(args.url)
    print(f"database {redact(args.url)}, {args.contacts:,} contacts")
    database = scored_database(url, args.contacts, args.reuse)
    with database.engine.begin() as connection:
        connection.execute(
            sa.text("DELETE FROM campaign_outcomes WHERE contact_id % :n <> 0"),
            {"n": args.keep_one_in},
        )
        connection.execute(sa.text("ANALYZE campaign_outcomes"))
    database.dispose()

    with tempfile.TemporaryDirectory() as folder:
        tracking_uri = f"sqlite:///{folder}/mlflow.db"
        training = run_in_fresh_process(timed_training, args.url, tracking_uri)
        scoring = {
            name: run_in_fresh_process(timed_scoring, args.url, tracking_uri, name, run)
            for name, run in training["runs"].items()
        }
    baseline = copy_baseline(url, "conversion_scores", SCORING_INPUTS)

    print(
        f"training set: {training['messages']:,} delivered messages "
        f"({training['conversions']:,} conversions) built as of each campaign in "
        f"{training['training_set']:.1f} s"
    )
    for name, (seconds, metrics) in training["fits"].items():
        print(
            f"  {name}: fit + calibration {seconds:.1f} s, holdout AUC-PR "
            f"{metrics['auc_pr']:.4f}, top-decile lift {metrics['lift_top_decile']:.2f}"
        )
    print(
        f"  rule total_score: AUC-PR {training['rule']['auc_pr']:.4f}, top-decile lift "
        f"{training['rule']['lift_top_decile']:.2f}; {training['decision']}"
    )
    print(
        f"training set + training + MLflow logging: {training['total']:.1f} s; peak RSS "
        f"{training['peak_rss_mb']:,.0f} MB"
    )
    for name, result in scoring.items():
        print(
            f"conversion_scores with {name}: {result['rows']:,} contacts in "
            f"{result['total']:.1f} s ({result['rows'] / result['total']:,.0f}/s), reasons "
            f"included; read {result['read']:.1f} / score {result['compute']:.1f} s; "
            f"{result['bytes_per_row']:.0f} bytes/row with indexes; peak RSS "
            f"{result['peak_rss_mb']:,.0f} MB; audit {'FAILED' if result['audit_failed'] else 'passed'}"
        )
    print(f"  baseline raw COPY inputs out + conversion_scores in: {baseline['total']:.1f} s")


if __name__ == "__main__":
    main()
