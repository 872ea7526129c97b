"""The ``uplift_model`` asset: uplift candidates trained on every campaign with a control
group, compared on the latest one with both baselines and the champion, and registered as
``champion`` of ``lead_uplift`` only when the best beats them all."""

import dagster as dg
from pydantic import Field

from lead_scoring_assets.db.database import redact
from lead_scoring_assets.defs.resources import DatabaseResource, MlflowResource
from lead_scoring_assets.defs.retries import retry_on_transient_database_errors
from lead_scoring_assets.ml.conversion_features import (
    CONVERSION_FEATURE_SET,
    DEFAULT_ATTRIBUTION_DAYS,
)
from lead_scoring_assets.ml.feature_table import published_scores_as_of
from lead_scoring_assets.ml.uplift import CANDIDATES, TOP_SHARES, NotEnoughControl
from lead_scoring_assets.ml.uplift_tracking import train_uplift_model, uplift_target

METRICS = ("qini", "auuc", *(f"incremental_top_{round(s * 100)}pct" for s in TOP_SHARES))


class UpliftModelConfig(dg.Config):
    attribution_days: int = Field(
        default=DEFAULT_ATTRIBUTION_DAYS,
        gt=0,
        description="A conversion counts within this many days of sent_at.",
    )
    candidates: list[str] = Field(
        default=list(CANDIDATES), description=f"Learners to train, among {list(CANDIDATES)}."
    )
    seed: int = Field(default=42, description="Seed of the learners.")


def _table(rows: list[tuple[str, dict]]) -> str:
    lines = ["| ranking | " + " | ".join(METRICS) + " |", "|---" * (len(METRICS) + 1) + "|"]
    for name, values in rows:
        lines.append(
            f"| {name} | "
            + " | ".join(f"{values[m]:.4f}" if m in values else "–" for m in METRICS)
            + " |"
        )
    return "\n".join(lines)


def _campaigns(training) -> str:
    lines = [
        ("| campaign | sent_at | target | control | target conversions | control conversions |"),
        "|---|---|---|---|---|---|",
    ]
    for c in training.campaigns.itertuples():
        lines.append(
            f"| {c.id} {c.name} | {c.sent_at:%Y-%m-%d} | {c.target} | {c.control} | "
            f"{c.target_conversions} | {c.control_conversions} |"
        )
    return "\n".join(lines)


@dg.asset(
    deps=[
        "campaign_outcomes",
        "contacts",
        "platform_validations",
        "lead_scores",
        "conversion_model",
    ],
    group_name="ml",
    kinds={"scikitlearn", "mlflow"},
    owners=["team:data"],
    tags={"feature_set_version": CONVERSION_FEATURE_SET},
)
def uplift_model(
    context: dg.AssetExecutionContext,
    config: UpliftModelConfig,
    database: DatabaseResource,
    mlflow: MlflowResource,
) -> dg.MaterializeResult:
    """Trains a two-model (T-learner), an X-learner and a transformed-outcome learner on every
    recipient (target and control arms) of the campaigns with a control group, with features
    as of each campaign's ``sent_at``; the latest such campaign is the holdout. Each candidate
    and both baselines (the conversion probability, the rule score) are logged to MLflow
    experiment ``lead_uplift``; the best (Qini) is registered as ``champion`` of
    ``lead_uplift`` only if its Qini beats both baselines' and the champion's, otherwise
    nothing is registered and ``decision`` says why. Fewer than 2 campaigns with a control
    group or 200 control conversions: nothing is trained, and ``reason`` says so."""
    unknown = sorted(set(config.candidates) - set(CANDIDATES))
    if unknown:
        raise dg.Failure(f"unknown candidates {unknown}; known: {list(CANDIDATES)}")
    target = uplift_target(mlflow.target())
    with retry_on_transient_database_errors(context), database.open() as db:
        as_of = published_scores_as_of(db)
        try:
            report = train_uplift_model(
                db,
                target,
                config.candidates,
                config.attribution_days,
                as_of,
                config.seed,
                dagster_run_id=context.run_id,
            )
        except NotEnoughControl as error:
            training = error.training
            context.log.warning(f"no uplift model trained: {error}")
            return dg.MaterializeResult(
                metadata={
                    "trained": False,
                    "registered": False,
                    "reason": str(error),
                    "campaigns_with_control": len(training.campaigns),
                    "control_conversions": training.control_conversions,
                    "campaigns": dg.MetadataValue.md(_campaigns(training)),
                    "campaigns_still_open": dg.MetadataValue.json(training.open_campaigns),
                }
            )
    decision, training, split = report.decision, report.training, report.split
    outcome = (
        f"registered {target.registered_model_name} v{decision.version} as champion"
        if decision.promoted
        else "nothing registered"
    )
    context.log.info(f"{outcome}: {decision.reason}")
    rows = [(c.trained.name, c.trained.metrics) for c in report.logged]
    rows += [(f"{name} (baseline)", metrics) for name, metrics in report.baselines.items()]
    if decision.champion_metrics:
        rows.append((f"champion v{decision.champion_version}", decision.champion_metrics))
    return dg.MaterializeResult(
        metadata={
            "trained": True,
            "registered": decision.promoted,
            "registered_version": decision.version or "none",
            "decision": decision.reason,
            "decision_basis": decision.basis,
            "as_of": training.as_of.isoformat(),
            "holdout_metrics": dg.MetadataValue.md(_table(rows)),
            "best_candidate": report.best.trained.name,
            "champion_version": decision.champion_version or "none",
            "campaigns": dg.MetadataValue.md(_campaigns(training)),
            "holdout_campaigns": dg.MetadataValue.json(split.holdout_campaigns),
            "training_recipients": len(split.train),
            "holdout_recipients": len(split.holdout),
            "control_conversions": training.control_conversions,
            "mlflow_run_ids": dg.MetadataValue.json(
                {**{c.trained.name: c.run_id for c in report.logged}, **report.baseline_run_ids}
            ),
            "seconds_fit": dg.MetadataValue.json(
                {c.trained.name: round(c.trained.seconds_fit, 2) for c in report.logged}
            ),
            "experiment": target.experiment_name,
            "tracking_uri": redact(target.tracking_uri)
            if "://" in target.tracking_uri
            else target.tracking_uri,
            "training_set_sha256": training.sha256,
            "seconds_training_set": round(training.seconds, 2),
            "duration_seconds": round(report.seconds_total, 2),
        }
    )
