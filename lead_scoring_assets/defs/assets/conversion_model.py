"""The ``conversion_model`` asset: a calibrated conversion model trained on campaign
outcomes, compared with the rule score on the most recent campaigns, and registered as
``champion`` only when it beats both the champion and the rule."""

import dagster as dg
from pydantic import Field

from lead_scoring_assets.db.database import redact
from lead_scoring_assets.defs.resources import DatabaseResource, MlflowResource
from lead_scoring_assets.defs.retries import retry_on_transient_database_errors
from lead_scoring_assets.ml.conversion import CANDIDATES, NotEnoughOutcomes
from lead_scoring_assets.ml.conversion_features import (
    CONVERSION_FEATURE_SET,
    DEFAULT_ATTRIBUTION_DAYS,
)
from lead_scoring_assets.ml.conversion_tracking import conversion_target, train_conversion_model
from lead_scoring_assets.ml.feature_table import published_scores_as_of


class ConversionModelConfig(dg.Config):
    attribution_days: int = Field(
        default=DEFAULT_ATTRIBUTION_DAYS,
        gt=0,
        description="A conversion counts for a message within this many days of sent_at.",
    )
    holdout_campaigns: int = Field(
        default=1, gt=0, description="The most recent campaigns held out for evaluation."
    )
    candidates: list[str] = Field(
        default=list(CANDIDATES), description=f"Models to train, among {list(CANDIDATES)}."
    )
    seed: int = Field(default=42, description="Seed of the models and the calibration split.")


def _table(rows: list[tuple[str, dict]]) -> str:
    metrics = ("auc_roc", "auc_pr", "lift_top_decile", "lift_top_5pct", "brier", "log_loss")
    lines = ["| model | " + " | ".join(metrics) + " |", "|---" * (len(metrics) + 1) + "|"]
    for name, values in rows:
        lines.append(
            f"| {name} | "
            + " | ".join(f"{values[m]:.4f}" if m in values else "–" for m in metrics)
            + " |"
        )
    return "\n".join(lines)


def _deciles(report) -> str:
    model = report.best.trained.evaluation.deciles
    rule = report.rule.deciles.set_index("decile")["conversion_rate"]
    lines = [
        "| decile | messages | conversions | model rate | rule rate |",
        "|---|---|---|---|---|",
    ]
    for row in model.itertuples():
        lines.append(
            f"| {row.decile} | {row.messages} | {row.conversions} | "
            f"{row.conversion_rate:.2%} | {rule.get(row.decile, float('nan')):.2%} |"
        )
    return "\n".join(lines)


@dg.asset(
    deps=["campaign_outcomes", "contacts", "platform_validations", "lead_scores"],
    group_name="ml",
    kinds={"scikitlearn", "mlflow"},
    owners=["team:data"],
    tags={"feature_set_version": CONVERSION_FEATURE_SET},
)
def conversion_model(
    context: dg.AssetExecutionContext,
    config: ConversionModelConfig,
    database: DatabaseResource,
    mlflow: MlflowResource,
) -> dg.MaterializeResult:
    """Trains logistic regression, histogram gradient boosting and random forest classifiers
    (calibrated) on one row per delivered message with features as of the campaign's
    ``sent_at``; the latest campaigns are the holdout. Each candidate and the rule's
    ``total_score`` are logged to MLflow experiment ``lead_conversion``; the best (AUC-PR)
    becomes ``champion`` of ``lead_conversion`` only if it beats the champion's AUC-PR and
    the rule's top-decile lift, otherwise ``challenger``. Too few outcomes: nothing is
    trained, and the metadata says how many there are."""
    unknown = sorted(set(config.candidates) - set(CANDIDATES))
    if unknown:
        raise dg.Failure(f"unknown candidates {unknown}; known: {list(CANDIDATES)}")
    target = conversion_target(mlflow.target())
    with retry_on_transient_database_errors(context), database.open() as db:
        as_of = published_scores_as_of(db)
        try:
            report = train_conversion_model(
                db,
                target,
                config.candidates,
                config.attribution_days,
                as_of,
                config.holdout_campaigns,
                config.seed,
                dagster_run_id=context.run_id,
            )
        except NotEnoughOutcomes as error:
            training = error.training
            context.log.warning(f"no conversion model trained: {error}")
            return dg.MaterializeResult(
                metadata={
                    "trained": False,
                    "reason": str(error),
                    "delivered_messages": training.messages,
                    "conversions": training.conversions,
                    "campaigns_with_closed_window": len(training.campaigns),
                    "campaigns_still_open": dg.MetadataValue.json(training.open_campaigns),
                    "rejected_outcome_rows": dg.MetadataValue.json(training.rejected),
                }
            )
    decision, training = report.decision, report.training
    context.log.info(
        f"registered {target.registered_model_name} v{decision.version} as "
        f"{decision.alias}: {decision.reason}"
    )
    rows = [(c.trained.name, c.trained.evaluation.metrics) for c in report.logged]
    rows.append(("rule total_score (baseline)", report.rule.metrics))
    return dg.MaterializeResult(
        metadata={
            "trained": True,
            "as_of": training.as_of.isoformat(),
            "holdout_metrics": dg.MetadataValue.md(_table(rows)),
            "holdout_deciles": dg.MetadataValue.md(_deciles(report)),
            "best_candidate": report.best.trained.name,
            "registered_model": target.registered_model_name,
            "registered_version": decision.version,
            "alias": decision.alias,
            "decision": decision.reason,
            "decision_basis": decision.basis,
            "champion_version": decision.champion_version or "none",
            "champion_metrics": dg.MetadataValue.json(decision.champion_metrics),
            "mlflow_run_ids": dg.MetadataValue.json(
                {
                    **{c.trained.name: c.run_id for c in report.logged},
                    "rule_total_score": report.rule_run_id,
                }
            ),
            "training_messages": len(report.split.train),
            "training_conversions": int(report.split.train["converted"].sum()),
            "holdout_messages": len(report.split.holdout),
            "holdout_conversions": int(report.split.holdout["converted"].sum()),
            "holdout_campaigns": dg.MetadataValue.json(report.split.holdout_campaigns),
            "campaigns_still_open": dg.MetadataValue.json(training.open_campaigns),
            "rejected_outcome_rows": dg.MetadataValue.json(training.rejected),
            "attribution_days": training.attribution_days,
            "experiment": target.experiment_name,
            "tracking_uri": redact(target.tracking_uri)
            if "://" in target.tracking_uri
            else target.tracking_uri,
            "training_set_sha256": training.sha256,
            "seconds_training_set": round(training.seconds, 2),
            "duration_seconds": round(report.seconds_total, 2),
        }
    )
