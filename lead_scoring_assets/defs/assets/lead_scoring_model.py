"""The ``lead_scoring_model`` asset: candidates trained and compared in MLflow, the best
registered, and the champion alias moved only to a better model."""

import dagster as dg
from pydantic import Field

from lead_scoring_assets.db.database import redact
from lead_scoring_assets.defs.resources import DatabaseResource, MlflowResource
from lead_scoring_assets.defs.retries import retry_on_transient_database_errors
from lead_scoring_assets.ml.features import FEATURE_SET_VERSION
from lead_scoring_assets.ml.retraining import retrain
from lead_scoring_assets.ml.training import (
    CANDIDATES,
    DEFAULT_CANDIDATES,
    NotEnoughTrainingData,
)


class LeadScoringModelConfig(dg.Config):
    sample_size: int = Field(
        default=200_000, gt=0,
        description="Contacts sampled (reproducibly) for training and the 20% holdout.")
    seed: int = Field(default=42, description="Seed of the sample and of the split.")
    candidates: list[str] = Field(
        default=list(DEFAULT_CANDIDATES),
        description=f"Models to train, among {sorted(CANDIDATES)}.")


@dg.asset(
    deps=["contact_features", "lead_scores"],
    group_name="ml",
    kinds={"scikitlearn", "mlflow"},
    owners=["team:data"],
    tags={"feature_set_version": FEATURE_SET_VERSION},
)
def lead_scoring_model(
    context: dg.AssetExecutionContext,
    config: LeadScoringModelConfig,
    database: DatabaseResource,
    mlflow: MlflowResource,
) -> dg.MaterializeResult:
    """Trains each candidate to predict the rule-based ``total_score`` (one MLflow run each
    in experiment ``lead_scoring``), registers the best as a new version of ``lead_scoring``
    and gives it the ``champion`` alias only if it beats the champion on the same holdout
    (lower RMSE); otherwise ``challenger``."""
    unknown = sorted(set(config.candidates) - set(CANDIDATES))
    if unknown:
        raise dg.Failure(f"unknown candidates {unknown}; known: {sorted(CANDIDATES)}")
    target = mlflow.target()
    with retry_on_transient_database_errors(context):
        with database.open() as db:
            try:
                report = retrain(db, target, config.candidates, config.sample_size, config.seed,
                                 dagster_run_id=context.run_id)
            except NotEnoughTrainingData as error:
                raise dg.Failure(description=str(error)) from error
    data, decision = report.data, report.decision
    if data.score_as_of_mismatches:
        context.log.warning(
            f"{data.score_as_of_mismatches} sampled contacts have features and lead_scores of "
            "different as_of: rematerialise contact_features after lead_scores")
    context.log.info(f"registered {target.registered_model_name} v{decision.version} as "
                     f"{decision.alias}: {decision.reason}")
    rows = [
        f"| {c.candidate.name} | {c.candidate.evaluation.rmse:.4f} | "
        f"{c.candidate.evaluation.mae:.4f} | {c.candidate.evaluation.r2:.5f} | "
        f"{c.candidate.evaluation.tier_accuracy:.4f} | {c.candidate.seconds_fit:.1f} |"
        for c in report.logged
    ]
    table = "\n".join([
        "| candidate | RMSE | MAE | R² | tier accuracy | fit s |",
        "|---|---|---|---|---|---|", *rows])
    return dg.MaterializeResult(metadata={
        "candidates": dg.MetadataValue.md(table),
        "mlflow_run_ids": dg.MetadataValue.json(
            {c.candidate.name: c.run_id for c in report.logged}),
        "best_candidate": report.best.candidate.name,
        "registered_model": target.registered_model_name,
        "registered_version": decision.version,
        "alias": decision.alias,
        "decision": decision.reason,
        "candidate_metrics": dg.MetadataValue.json(decision.candidate_metrics),
        "champion_version": decision.champion_version or "none",
        "champion_metrics": dg.MetadataValue.json(decision.champion_metrics),
        "training_rows": len(data.x_train),
        "holdout_rows": len(data.x_test),
        "contacts_with_features": data.contacts_available,
        "features_as_of": data.features_as_of.isoformat(),
        "feature_set_version": FEATURE_SET_VERSION,
        "score_as_of_mismatches": data.score_as_of_mismatches,
        "experiment": target.experiment_name,
        "tracking_uri": redact(target.tracking_uri) if "://" in target.tracking_uri
        else target.tracking_uri,
        "duration_seconds": round(report.seconds_total, 2),
    })
