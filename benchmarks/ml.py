"""Benchmark: contact features, training and predictions at N contacts on PostgreSQL.

    python -m benchmarks.ml --contacts 1000000

Loads N demo contacts into a scratch database and rescores them (unless ``--reuse``), then
times each stage in a fresh process: ``contact_features``, the retraining on a sample
(every default candidate, logged to a scratch MLflow store), the same retraining again with
that champion in place (its lookup, its evaluation on the stable holdout and the feature
drift against it), ``ml_lead_scores`` with the champion, then with the random forest of that training (the per-tree spread path). Each stage
is compared with a raw COPY baseline measured in the same run: its
inputs out and its output rows back in, nothing else.
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
from lead_scoring_assets.ml.features import FEATURE_COLUMNS


def timed_stage(stage: str, url: str, tracking_uri: str, sample_size: int) -> dict:
    """One ML stage on the database, with its timings."""
    from lead_scoring_assets.ml.feature_table import build_contact_features
    from lead_scoring_assets.ml.predictions import write_ml_scores
    from lead_scoring_assets.ml.retraining import retrain
    from lead_scoring_assets.ml.tracking import MlflowTarget, load_champion
    from lead_scoring_assets.ml.training import DEFAULT_CANDIDATES

    database = Database(url)
    target = MlflowTarget(tracking_uri)
    started = time.perf_counter()
    if stage == "features":
        report = build_contact_features(database, AS_OF)
        result = {
            "rows": report.contacts,
            "read": report.stages.read,
            "compute": report.stages.compute,
            "write": report.stages.write,
        }
    elif stage in ("training", "retraining"):
        report = retrain(database, target, DEFAULT_CANDIDATES, sample_size)
        result = {
            "rows": len(report.data.x_train) + len(report.data.x_test),
            "load": report.seconds_load,
            "best": report.best.candidate.name,
            "champion": report.seconds_champion,
            "decision": report.decision.reason,
            "psi_max": max(report.psi.values(), default=0.0),
            "fits": {
                c.candidate.name: (
                    c.candidate.seconds_fit,
                    c.candidate.evaluation.rmse,
                    c.candidate.evaluation.tier_accuracy,
                )
                for c in report.logged
            },
        }
    else:
        client = target.activate()
        if stage == "predictions":
            champion, reason = load_champion(client, target)
        else:
            champion, reason = _latest_forest(client, target), "the random forest (tree spread)"
        report = write_ml_scores(database, champion)
        result = {
            "rows": report.contacts,
            "model": reason,
            "read": report.stages.read,
            "compute": report.stages.compute,
            "write": report.stages.write,
            "methods": dict(report.by_method),
        }
    result["total"] = time.perf_counter() - started
    database.dispose()
    return result


def _latest_forest(client, target):
    """The random forest of the latest training, as if it were the champion."""
    from lead_scoring_assets.ml.predictions import ChampionModel
    from lead_scoring_assets.ml.tracking import load_model

    experiment = client.get_experiment_by_name(target.experiment_name)
    [run] = client.search_runs(
        [experiment.experiment_id],
        filter_string="tags.candidate = 'random_forest'",
        order_by=["attributes.start_time DESC"],
        max_results=1,
    )
    return ChampionModel(
        model=load_model(f"runs:/{run.info.run_id}/model"),
        version="forest",
        candidate="random_forest",
        rmse_by_tier={},
    )


def run_stage(stage: str, url: str, tracking_uri: str, sample_size: int) -> dict:
    return run_in_fresh_process(timed_stage, stage, url, tracking_uri, sample_size)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--contacts", type=int, default=1_000_000)
    parser.add_argument(
        "--url", default="postgresql+psycopg://postgres@127.0.0.1:5432/lead_scoring_bench"
    )
    parser.add_argument("--sample-size", type=int, default=200_000)
    parser.add_argument("--reuse", action="store_true", help="keep the loaded data of a past run")
    args = parser.parse_args()
    os.environ.setdefault("MLFLOW_ENABLE_ARTIFACTS_PROGRESS_BAR", "false")
    url = sa.make_url(args.url)
    print(f"database {redact(args.url)}, {args.contacts:,} contacts, sample {args.sample_size:,}")
    database = scored_database(url, args.contacts, args.reuse)
    database.dispose()

    with tempfile.TemporaryDirectory() as folder:
        tracking_uri = f"sqlite:///{folder}/mlflow.db"
        features = run_stage("features", args.url, tracking_uri, args.sample_size)
        features_baseline = copy_baseline(url, "contact_features", SCORING_INPUTS)
        training = run_stage("training", args.url, tracking_uri, args.sample_size)
        retraining = run_stage("retraining", args.url, tracking_uri, args.sample_size)
        predictions = run_stage("predictions", args.url, tracking_uri, args.sample_size)
        forest = run_stage("predictions_forest", args.url, tracking_uri, args.sample_size)
        predictions_baseline = copy_baseline(
            url,
            "ml_lead_scores",
            (
                (
                    f"COPY (SELECT {', '.join(('contact_id', *FEATURE_COLUMNS))} "
                    "FROM contact_features) TO STDOUT"
                ),
                "COPY (SELECT contact_id, total_score, quality_tier FROM lead_scores) TO STDOUT",
            ),
        )

    print(
        f"contact_features: {features['rows']:,} contacts in {features['total']:.2f} s "
        f"({features['rows'] / features['total']:,.0f}/s); stages (overlapping) read "
        f"{features['read']:.2f} / compute {features['compute']:.2f} / write "
        f"{features['write']:.2f} s; peak RSS {features['peak_rss_mb']:,.0f} MB"
    )
    print(
        f"  baseline raw COPY inputs out + features in: {features_baseline['total']:.2f} s "
        f"-> {features['total'] / features_baseline['total']:.2f}x"
    )
    fits = ", ".join(
        f"{name} fit {s:.1f} s (RMSE {rmse:.3f}, tier accuracy {acc:.4f})"
        for name, (s, rmse, acc) in training["fits"].items()
    )
    print(
        f"training on {training['rows']:,} sampled contacts: {training['total']:.2f} s "
        f"(sample read {training['load']:.2f} s; {fits}); best {training['best']}; "
        f"peak RSS {training['peak_rss_mb']:,.0f} MB"
    )
    print(
        f"retraining with that champion: {retraining['total']:.2f} s, of which champion "
        f"lookup + load + drift {retraining['champion']:.2f} s (largest PSI "
        f"{retraining['psi_max']:.4f}); {retraining['decision']}; peak RSS "
        f"{retraining['peak_rss_mb']:,.0f} MB"
    )
    print(
        f"ml_lead_scores: {predictions['rows']:,} contacts in {predictions['total']:.2f} s "
        f"({predictions['rows'] / predictions['total']:,.0f}/s) with {predictions['model']}; "
        f"stages read {predictions['read']:.2f} / predict {predictions['compute']:.2f} / "
        f"write {predictions['write']:.2f} s; peak RSS {predictions['peak_rss_mb']:,.0f} MB"
    )
    print(
        f"ml_lead_scores with {forest['model']}: {forest['total']:.2f} s "
        f"({forest['rows'] / forest['total']:,.0f}/s); stages read {forest['read']:.2f} / "
        f"predict {forest['compute']:.2f} / write {forest['write']:.2f} s; peak RSS "
        f"{forest['peak_rss_mb']:,.0f} MB"
    )
    print(
        f"  baseline raw COPY features + scores out, ML scores in: "
        f"{predictions_baseline['total']:.2f} s -> "
        f"{predictions['total'] / predictions_baseline['total']:.2f}x (champion), "
        f"{forest['total'] / predictions_baseline['total']:.2f}x (forest)"
    )


if __name__ == "__main__":
    main()
