"""The ``lead_scoring_model`` asset: candidates trained and compared in MLflow, the best
registered, the champion alias moved only on evidence, and the features' drift checked."""

import dagster as dg
from pydantic import Field, model_validator

from lead_scoring_assets.db.database import redact
from lead_scoring_assets.defs.resources import DatabaseResource, MlflowResource
from lead_scoring_assets.defs.retries import retry_on_transient_database_errors
from lead_scoring_assets.ml.drift import FAIL_PSI, WARN_PSI, judge
from lead_scoring_assets.ml.feature_table import AsOfMismatch
from lead_scoring_assets.ml.features import FEATURE_SET_VERSION
from lead_scoring_assets.ml.retraining import RetrainReport, retrain
from lead_scoring_assets.ml.training import (
    CANDIDATES,
    DEFAULT_CANDIDATES,
    NotEnoughTrainingData,
)

FEATURE_DRIFT_CHECK = "contact_features_have_not_drifted"


class LeadScoringModelConfig(dg.Config):
    sample_size: int = Field(
        default=200_000,
        gt=0,
        description="Contacts sampled (reproducibly) for training and the stable holdout.",
    )
    seed: int = Field(default=42, description="Seed of the sample.")
    candidates: list[str] = Field(
        default=list(DEFAULT_CANDIDATES),
        description=f"Models to train, among {sorted(CANDIDATES)}.",
    )
    drift_warn_psi: float = Field(
        default=WARN_PSI,
        ge=0,
        description="The drift check warns when a feature's PSI exceeds this.",
    )
    drift_fail_psi: float = Field(
        default=FAIL_PSI,
        ge=0,
        description="The drift check fails when a feature's PSI exceeds this.",
    )

    @model_validator(mode="after")
    def _thresholds_in_order(self):
        if self.drift_warn_psi > self.drift_fail_psi:
            raise ValueError(
                f"drift_warn_psi {self.drift_warn_psi} is above drift_fail_psi "
                f"{self.drift_fail_psi}"
            )
        return self


@dg.asset(
    deps=["contact_features", "lead_scores"],
    group_name="ml",
    kinds={"scikitlearn", "mlflow"},
    owners=["team:data"],
    tags={"feature_set_version": FEATURE_SET_VERSION},
    check_specs=[
        dg.AssetCheckSpec(
            FEATURE_DRIFT_CHECK,
            asset="lead_scoring_model",
            blocking=False,
            description="PSI of each feature between the champion's training sample and today's "
            "contacts: warns above drift_warn_psi (0.1), fails above drift_fail_psi (0.25); "
            "without a reference distribution, not evaluated (failed, WARN, with the reason).",
        )
    ],
)
def lead_scoring_model(
    context: dg.AssetExecutionContext,
    config: LeadScoringModelConfig,
    database: DatabaseResource,
    mlflow: MlflowResource,
) -> dg.MaterializeResult:
    """Trains each candidate to predict the rule-based ``total_score`` (one MLflow run each
    in experiment ``lead_scoring``) on the features and labels of the published rescoring's
    ``as_of``, registers the best as a new version of ``lead_scoring`` and gives it the
    ``champion`` alias only if it beats the champion on the stable holdout (or there is no
    champion, or it is provably unusable); otherwise ``challenger``."""
    unknown = sorted(set(config.candidates) - set(CANDIDATES))
    if unknown:
        raise dg.Failure(f"unknown candidates {unknown}; known: {sorted(CANDIDATES)}")
    target = mlflow.target()
    with retry_on_transient_database_errors(context), database.open() as db:
        try:
            report = retrain(
                db,
                target,
                config.candidates,
                config.sample_size,
                config.seed,
                dagster_run_id=context.run_id,
            )
        except (NotEnoughTrainingData, AsOfMismatch) as error:
            raise dg.Failure(description=str(error)) from error
    data, decision = report.data, report.decision
    if data.labels_rescored_since:
        context.log.info(
            f"{data.labels_rescored_since} sampled contacts were rescored after "
            f"{data.as_of.isoformat()} and are left out of training and holdout"
        )
    context.log.info(
        f"registered {target.registered_model_name} v{decision.version} as "
        f"{decision.alias}: {decision.reason}"
    )
    rows = [
        f"| {c.candidate.name} | {c.candidate.evaluation.rmse:.4f} | "
        f"{c.candidate.evaluation.mae:.4f} | {c.candidate.evaluation.r2:.5f} | "
        f"{c.candidate.evaluation.tier_accuracy:.4f} | {c.candidate.seconds_fit:.1f} |"
        for c in report.logged
    ]
    table = "\n".join(
        [
            "| candidate | RMSE | MAE | R² | tier accuracy | fit s |",
            "|---|---|---|---|---|---|",
            *rows,
        ]
    )
    champion_rmse = report.champion_metrics.get("rmse")
    return dg.MaterializeResult(
        metadata={
            "as_of": data.as_of.isoformat(),
            "candidates": dg.MetadataValue.md(table),
            "mlflow_run_ids": dg.MetadataValue.json(
                {c.candidate.name: c.run_id for c in report.logged}
            ),
            "best_candidate": report.best.candidate.name,
            "registered_model": target.registered_model_name,
            "registered_version": decision.version,
            "alias": decision.alias,
            "decision": decision.reason,
            "decision_basis": decision.basis,
            "champion_load_attempts": report.champion.attempts,
            "candidate_metrics": dg.MetadataValue.json(decision.candidate_metrics),
            "champion_version": decision.champion_version or "none",
            "champion_metrics": dg.MetadataValue.json(decision.champion_metrics),
            **(
                {
                    "champion_rmse": dg.MetadataValue.float(round(champion_rmse, 4)),
                    "champion_tier_accuracy": dg.MetadataValue.float(
                        round(report.champion_metrics["tier_accuracy"], 4)
                    ),
                }
                if champion_rmse is not None
                else {}
            ),
            **(
                {
                    "feature_psi": dg.MetadataValue.md(_psi_table(report.psi)),
                    "psi_max": dg.MetadataValue.float(round(max(report.psi.values()), 4)),
                }
                if report.psi
                else {}
            ),
            "training_rows": len(data.x_train),
            "holdout_rows": len(data.x_test),
            "labels_rescored_since": data.labels_rescored_since,
            "contacts_with_features": data.contacts_available,
            "feature_set_version": FEATURE_SET_VERSION,
            "experiment": target.experiment_name,
            "tracking_uri": redact(target.tracking_uri)
            if "://" in target.tracking_uri
            else target.tracking_uri,
            "duration_seconds": round(report.seconds_total, 2),
        },
        check_results=[_drift_result(report, config)],
    )


def _drift_result(report: RetrainReport, config: LeadScoringModelConfig) -> dg.AssetCheckResult:
    """Passed, or failed with severity WARN (above the warning threshold) or ERROR (above the
    failure threshold). When the PSI could not be computed (no champion, one that could not be
    reached or loaded, or one without a stored training distribution) the check is not
    evaluated: failed with severity WARN, the reason in its metadata, never passed."""
    if not report.psi:
        champion = report.champion
        reason = champion.problem or (
            f"champion v{champion.version.version} has no stored training distribution"
            if champion.version is not None
            else "no champion to compare with"
        )
        return dg.AssetCheckResult(
            check_name=FEATURE_DRIFT_CHECK,
            passed=False,
            severity=dg.AssetCheckSeverity.WARN,
            description=f"not evaluated: no reference distribution ({reason})",
            metadata={
                "evaluated": False,
                "not_evaluated_reason": reason,
                "champion_status": champion.status,
                "warn_psi": config.drift_warn_psi,
                "fail_psi": config.drift_fail_psi,
            },
        )
    verdict = judge(report.psi, config.drift_warn_psi, config.drift_fail_psi)
    return dg.AssetCheckResult(
        check_name=FEATURE_DRIFT_CHECK,
        passed=verdict.level == "ok",
        severity=(
            dg.AssetCheckSeverity.ERROR if verdict.level == "fail" else dg.AssetCheckSeverity.WARN
        ),
        description=(
            f"largest PSI {verdict.worst_psi:.4f} ({verdict.worst_feature}); "
            f"above {config.drift_warn_psi}: {list(verdict.drifted) or 'none'}"
        ),
        metadata={
            "psi": dg.MetadataValue.md(_psi_table(report.psi)),
            "psi_max": dg.MetadataValue.float(round(verdict.worst_psi, 4)),
            "worst_feature": verdict.worst_feature,
            "drifted_features": dg.MetadataValue.json(
                {n: round(v, 4) for n, v in verdict.drifted.items()}
            ),
            "warn_psi": config.drift_warn_psi,
            "fail_psi": config.drift_fail_psi,
            "reference": f"champion v{report.champion.version.version}",
            "evaluated": True,
        },
    )


def _psi_table(psi: dict[str, float]) -> str:
    return "\n".join(
        [
            "| feature | PSI |",
            "|---|---|",
            *(
                f"| {name} | {value:.4f} |"
                for name, value in sorted(psi.items(), key=lambda item: -item[1])
            ),
        ]
    )
