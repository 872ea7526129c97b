"""The conversion model in MLflow: experiment ``lead_conversion`` with one run per candidate
and one for the rule baseline on the same holdout, and the registered model
``lead_conversion`` whose ``champion`` alias moves only when a new version beats the champion
on AUC-PR on that holdout **and** beats the rule score's top-decile lift; otherwise the new
version is the ``challenger``, the decision on its tags. Champion look-up, retries and the
skops allow-list are ``tracking.py``'s."""

import json
import time
from collections.abc import Sequence
from dataclasses import dataclass, field, replace

import mlflow
import numpy as np
import pandas as pd
from matplotlib.figure import Figure
from mlflow import MlflowClient
from mlflow.models import infer_signature
from sklearn.calibration import CalibratedClassifierCV, calibration_curve

from lead_scoring_assets.db.database import Database
from lead_scoring_assets.ml.conversion import (
    RULE_BASELINE,
    Evaluation,
    NotEnoughOutcomes,
    Split,
    TrainedConversionModel,
    evaluate,
    evaluate_rule,
    features_of,
    time_split,
    train_conversion_candidate,
)
from lead_scoring_assets.ml.conversion_features import (
    CONVERSION_FEATURE_SET,
    TrainingSet,
    build_training_set,
)
from lead_scoring_assets.ml.tracking import (
    _PIP_REQUIREMENTS,
    CHALLENGER,
    CHAMPION,
    NO_CHAMPION,
    TRUSTED_TYPES,
    UNAVAILABLE,
    UNUSABLE,
    USABLE,
    ChampionLookup,
    ChampionUnavailable,
    MlflowTarget,
    model_checksum,
    resolve_champion,
)

EXPERIMENT = "lead_conversion"
REGISTERED_MODEL = "lead_conversion"
SELECTION_METRIC = "auc_pr"
RULE_GATE_METRIC = "lift_top_decile"
CONVERSION_TRUSTED_TYPES = [
    *TRUSTED_TYPES,
    "sklearn.calibration._CalibratedClassifier",
    "sklearn.calibration._SigmoidCalibration",
]


def conversion_target(target: MlflowTarget) -> MlflowTarget:
    """The same tracking store, with the conversion model's experiment and registered name."""
    return replace(target, experiment_name=EXPERIMENT, registered_model_name=REGISTERED_MODEL)


@dataclass
class LoggedConversionModel:
    trained: TrainedConversionModel
    run_id: str
    model_uri: str


@dataclass
class ConversionDecision:
    """The registered version, its alias and why; every model's holdout metrics."""

    version: str
    alias: str
    reason: str
    basis: str
    candidate_metrics: dict[str, float]
    rule_metrics: dict[str, float]
    champion_version: str | None = None
    champion_metrics: dict[str, float] = field(default_factory=dict)


@dataclass
class ConversionReport:
    training: TrainingSet
    split: Split
    rule: Evaluation
    logged: list[LoggedConversionModel]
    best: LoggedConversionModel
    champion: ChampionLookup
    decision: ConversionDecision
    rule_run_id: str
    seconds_total: float


def _decile_plot(table: pd.DataFrame, title: str) -> Figure:
    figure = Figure(figsize=(7, 4))
    axes = figure.subplots()
    axes.bar(table["decile"], table["conversion_rate"] * 100)
    axes.set_xlabel("predicted decile (10 = highest)")
    axes.set_ylabel("conversion rate, %")
    axes.set_xticks(range(1, 11))
    axes.set_title(title)
    figure.tight_layout()
    return figure


def _calibration_plot(y: np.ndarray, probability: np.ndarray, title: str) -> Figure:
    observed, predicted = calibration_curve(y, probability, n_bins=10, strategy="quantile")
    figure = Figure(figsize=(5, 5))
    axes = figure.subplots()
    top = max(float(predicted.max()), float(observed.max())) * 1.1
    axes.plot([0, top], [0, top], linestyle="--", color="grey", label="perfectly calibrated")
    axes.plot(predicted, observed, marker="o", label=title)
    axes.set_xlabel("mean predicted probability")
    axes.set_ylabel("observed conversion rate")
    axes.legend()
    figure.tight_layout()
    return figure


def _common_params(training: TrainingSet, split: Split) -> dict:
    return {
        "feature_set_version": CONVERSION_FEATURE_SET,
        "attribution_days": training.attribution_days,
        "training_messages": len(split.train),
        "training_conversions": int(split.train["converted"].sum()),
        "holdout_messages": len(split.holdout),
        "holdout_conversions": int(split.holdout["converted"].sum()),
        "holdout_campaigns": ",".join(str(i) for i in split.holdout_campaigns),
        "as_of": training.as_of.isoformat(),
        "training_set_sha256": training.sha256,
    }


def log_rule_baseline(
    training: TrainingSet, split: Split, rule: Evaluation, dagster_run_id: str | None
) -> str:
    """One run for the rule's ``total_score`` on the holdout: the baseline, side by side with
    the candidates."""
    with mlflow.start_run(
        run_name=RULE_BASELINE,
        tags={"candidate": RULE_BASELINE, "dagster_run_id": dagster_run_id or ""},
    ) as run:
        mlflow.log_params({"candidate": RULE_BASELINE, **_common_params(training, split)})
        mlflow.log_metrics(rule.metrics)
        mlflow.log_table(rule.deciles, artifact_file="conversion_by_decile.json")
        mlflow.log_figure(
            _decile_plot(rule.deciles, "rule total_score: conversion by decile"),
            "conversion_by_decile.png",
        )
    return run.info.run_id


def log_conversion_candidate(
    trained: TrainedConversionModel,
    training: TrainingSet,
    split: Split,
    rule: Evaluation,
    dagster_run_id: str | None,
) -> LoggedConversionModel:
    """One run: parameters, holdout metrics next to the rule's (``rule_*``), the decile table
    and plot, the calibration curve, the model with a features-only input example."""
    estimator = trained.model.estimator.estimator.steps[-1][1]
    model_params = {
        f"model.{k}": v
        for k, v in estimator.get_params().items()
        if isinstance(v, int | float | str | bool) or v is None
    }
    y = split.holdout["converted"].astype(int).to_numpy()
    with mlflow.start_run(
        run_name=trained.name,
        tags={
            "candidate": trained.name,
            "dagster_run_id": dagster_run_id or "",
            "feature_set_version": CONVERSION_FEATURE_SET,
        },
    ) as run:
        mlflow.log_params(
            {
                "candidate": trained.name,
                "calibration": "sigmoid",
                **_common_params(training, split),
                **model_params,
            }
        )
        mlflow.log_metrics(
            {
                **trained.evaluation.metrics,
                "seconds_fit": trained.seconds_fit,
                **{f"rule_{k}": v for k, v in rule.metrics.items()},
            }
        )
        mlflow.log_table(trained.evaluation.deciles, artifact_file="conversion_by_decile.json")
        mlflow.log_figure(
            _decile_plot(trained.evaluation.deciles, f"{trained.name}: conversion by decile"),
            "conversion_by_decile.png",
        )
        mlflow.log_figure(
            _calibration_plot(y, trained.holdout_probability, trained.name), "calibration_curve.png"
        )
        example = features_of(split.train.head(5))
        info = mlflow.sklearn.log_model(
            trained.model,
            name="model",
            signature=infer_signature(example, trained.model.predict_proba(example)),
            input_example=example,
            pip_requirements=_PIP_REQUIREMENTS,
            serialization_format="skops",
            skops_trusted_types=CONVERSION_TRUSTED_TYPES,
        )
    return LoggedConversionModel(trained, run.info.run_id, info.model_uri)


def decide(
    candidate: dict[str, float],
    rule: dict[str, float],
    champion: ChampionLookup,
    champion_metrics: dict[str, float],
    problem: str,
) -> tuple[str, str, str]:
    """(alias, basis, reason): champion only if the candidate beats the rule's top-decile lift
    and, when there is a usable champion, its AUC-PR on the same holdout."""
    lift, rule_lift = candidate[RULE_GATE_METRIC], rule[RULE_GATE_METRIC]
    if champion.status == UNAVAILABLE:
        return (
            CHALLENGER,
            "champion_unavailable",
            f"the champion could not be evaluated, no promotion without evidence: {problem}",
        )
    if lift <= rule_lift:
        return (
            CHALLENGER,
            "rule_not_beaten",
            f"top-decile lift {lift:.3f} ≤ the rule score's {rule_lift:.3f}",
        )
    if champion.status == USABLE and champion_metrics:
        ours, theirs = candidate[SELECTION_METRIC], champion_metrics[SELECTION_METRIC]
        if ours <= theirs:
            return (CHALLENGER, "compared", f"holdout AUC-PR {ours:.4f} ≤ champion's {theirs:.4f}")
        return (
            CHAMPION,
            "compared",
            (
                f"holdout AUC-PR {ours:.4f} > champion's {theirs:.4f} "
                f"and top-decile lift {lift:.3f} > the rule's "
                f"{rule_lift:.3f}"
            ),
        )
    basis = NO_CHAMPION if champion.status == NO_CHAMPION else "champion_unusable"
    cause = "no champion yet" if basis == NO_CHAMPION else problem
    return (CHAMPION, basis, f"{cause}; top-decile lift {lift:.3f} > the rule's {rule_lift:.3f}")


def registry_tags(
    candidate: str,
    run_id: str,
    model_uri: str,
    split: Split,
    metrics: dict[str, float],
    dagster_run_id: str | None,
) -> dict[str, str]:
    """The tags a registered conversion or uplift model version carries: where it comes
    from, its holdout and its metrics there, and its checksum."""
    return {
        "candidate": candidate,
        "feature_set_version": CONVERSION_FEATURE_SET,
        "mlflow_run_id": run_id,
        "dagster_run_id": dagster_run_id or "",
        "holdout_campaigns": ",".join(str(i) for i in split.holdout_campaigns),
        "holdout_metrics": json.dumps({k: round(v, 6) for k, v in metrics.items()}),
        "model_sha256": model_checksum(model_uri),
    }


def register_conversion_model(
    client: MlflowClient,
    target: MlflowTarget,
    best: LoggedConversionModel,
    split: Split,
    rule: Evaluation,
    champion: ChampionLookup,
    dagster_run_id: str | None,
) -> ConversionDecision:
    """Register ``best`` as a new version and give it the alias ``decide`` chooses."""
    name = target.registered_model_name
    metrics = best.trained.evaluation.metrics
    version = mlflow.register_model(
        best.model_uri,
        name,
        tags={
            **registry_tags(
                best.trained.name, best.run_id, best.model_uri, split, metrics, dagster_run_id
            ),
            "rule_metrics": json.dumps({k: round(v, 6) for k, v in rule.metrics.items()}),
        },
    ).version
    champion_metrics: dict[str, float] = {}
    problem = champion.problem
    if champion.status == USABLE:
        try:
            probability = champion.model.predict_proba(features_of(split.holdout))[:, 1]
            y = split.holdout["converted"].astype(int).to_numpy()
            champion_metrics = evaluate(y, probability).metrics
        except Exception as error:  # noqa: BLE001 - a champion that cannot predict is replaced
            champion = replace(champion, status=UNUSABLE)
            problem = f"the champion failed to predict: {error}"
    alias, basis, reason = decide(metrics, rule.metrics, champion, champion_metrics, problem)
    client.set_registered_model_alias(name, alias, version)
    client.set_model_version_tag(name, version, "registry_decision", reason)
    client.set_model_version_tag(name, version, "registry_decision_basis", basis)
    return ConversionDecision(
        version=str(version),
        alias=alias,
        reason=reason,
        basis=basis,
        candidate_metrics=metrics,
        rule_metrics=rule.metrics,
        champion_version=None if champion.version is None else str(champion.version.version),
        champion_metrics=champion_metrics,
    )


def train_conversion_model(
    database: Database,
    target: MlflowTarget,
    candidates: Sequence[str],
    attribution_days: int,
    as_of=None,
    holdout_campaigns: int = 1,
    seed: int = 42,
    dagster_run_id: str | None = None,
) -> ConversionReport:
    """Build the point-in-time training set, split it by time, fit and log every candidate
    and the rule baseline, register the best (highest holdout AUC-PR) and apply the gate.
    ``NotEnoughOutcomes`` (with the ``training`` set) when the training window is too small:
    nothing is logged."""
    if not candidates:
        raise ValueError("no candidates to train")
    started = time.perf_counter()
    training = build_training_set(database, attribution_days, as_of)
    try:
        split = time_split(training, holdout_campaigns)
    except NotEnoughOutcomes as error:
        error.training = training
        raise
    client = target.activate()
    champion = resolve_champion(client, target, CONVERSION_FEATURE_SET, CONVERSION_TRUSTED_TYPES)
    rule = evaluate_rule(split.holdout)
    rule_run_id = log_rule_baseline(training, split, rule, dagster_run_id)
    logged = [
        log_conversion_candidate(
            train_conversion_candidate(name, split, seed), training, split, rule, dagster_run_id
        )
        for name in candidates
    ]
    best = max(logged, key=lambda c: c.trained.evaluation.metrics[SELECTION_METRIC])
    decision = register_conversion_model(
        client, target, best, split, rule, champion, dagster_run_id
    )
    return ConversionReport(
        training=training,
        split=split,
        rule=rule,
        logged=logged,
        best=best,
        champion=champion,
        decision=decision,
        rule_run_id=rule_run_id,
        seconds_total=time.perf_counter() - started,
    )


@dataclass(frozen=True)
class ConversionChampion:
    model: CalibratedClassifierCV
    version: str
    candidate: str


def load_conversion_champion(
    client: MlflowClient, target: MlflowTarget
) -> tuple[ConversionChampion | None, str]:
    """The ``champion`` of ``lead_conversion``, or None and why; ``ChampionUnavailable`` when
    it could not be reached (the caller keeps the previous scores)."""
    return load_registered_champion(client, target, CONVERSION_TRUSTED_TYPES)


def load_registered_champion(
    client: MlflowClient, target: MlflowTarget, trusted: list[str]
) -> tuple[ConversionChampion | None, str]:
    """The ``champion`` of ``target``'s registered model (``conversion_v1`` features, loaded
    with the ``trusted`` types), or None and why; ``ChampionUnavailable`` when it could not
    be reached."""
    lookup = resolve_champion(client, target, CONVERSION_FEATURE_SET, trusted)
    if lookup.status == UNAVAILABLE:
        raise ChampionUnavailable(lookup.problem)
    if lookup.model is None:
        return None, lookup.problem
    candidate = lookup.version.tags.get("candidate", "model")
    return (
        ConversionChampion(lookup.model, str(lookup.version.version), candidate),
        f"{target.registered_model_name} v{lookup.version.version} ({candidate})",
    )
