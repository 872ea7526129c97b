"""The uplift model in MLflow: experiment ``lead_uplift`` with one run per candidate and one
per baseline (the conversion probability, the rule score) on the same holdout, and the
registered model ``lead_uplift``. The gate: only the candidate with the best holdout Qini, and
only if its Qini beats both baselines' and the current champion's on that holdout, is
registered and becomes ``champion``; otherwise nothing is registered and the report says why.
Fewer than ``MINIMUM_CAMPAIGNS`` campaigns with a control group or
``MINIMUM_CONTROL_CONVERSIONS`` control conversions: nothing is trained (``NotEnoughControl``).
"""

import json
import time
from collections.abc import Sequence
from dataclasses import dataclass, field, replace

import mlflow
import numpy as np
from matplotlib.figure import Figure
from mlflow import MlflowClient
from mlflow.models import infer_signature

from lead_scoring_assets.db.database import Database
from lead_scoring_assets.ml.conversion import Split, features_of
from lead_scoring_assets.ml.conversion_features import CONVERSION_FEATURE_SET
from lead_scoring_assets.ml.conversion_tracking import (
    CONVERSION_TRUSTED_TYPES,
    ConversionChampion,
    load_registered_champion,
    registry_tags,
)
from lead_scoring_assets.ml.tracking import (
    _PIP_REQUIREMENTS,
    CHAMPION,
    NO_CHAMPION,
    UNAVAILABLE,
    UNUSABLE,
    USABLE,
    ChampionLookup,
    MlflowTarget,
    resolve_champion,
)
from lead_scoring_assets.ml.uplift import (
    TrainedUpliftModel,
    baseline_scores,
    holdout_metrics,
    train_uplift_candidate,
    uplift_curve,
    uplift_split,
)
from lead_scoring_assets.ml.uplift_features import (
    TREATED,
    UpliftTrainingSet,
    build_uplift_training_set,
)

EXPERIMENT = "lead_uplift"
REGISTERED_MODEL = "lead_uplift"
SELECTION_METRIC = "qini"
UPLIFT_TRUSTED_TYPES = [
    *CONVERSION_TRUSTED_TYPES,
    "lead_scoring_assets.ml.uplift.UpliftModel",
    "sklearn._loss.loss.HalfSquaredError",
    "sklearn._loss.link.IdentityLink",
]


def uplift_target(target: MlflowTarget) -> MlflowTarget:
    """The same tracking store, with the uplift model's experiment and registered name."""
    return replace(target, experiment_name=EXPERIMENT, registered_model_name=REGISTERED_MODEL)


@dataclass
class LoggedUpliftModel:
    trained: TrainedUpliftModel
    run_id: str
    model_uri: str


@dataclass
class UpliftDecision:
    """Whether the best candidate was promoted, on which basis and why; the registered
    version (None when not promoted) and the champion's holdout metrics."""

    promoted: bool
    basis: str
    reason: str
    version: str | None = None
    champion_version: str | None = None
    champion_metrics: dict[str, float] = field(default_factory=dict)


@dataclass
class UpliftReport:
    training: UpliftTrainingSet
    split: Split
    baselines: dict[str, dict[str, float]]
    logged: list[LoggedUpliftModel]
    best: LoggedUpliftModel
    decision: UpliftDecision
    baseline_run_ids: dict[str, str]
    seconds_total: float


def _qini_plot(split: Split, scores: dict[str, np.ndarray]) -> Figure:
    figure = Figure(figsize=(7, 4))
    axes = figure.subplots()
    y, t = split.holdout["converted"].to_numpy(), split.holdout[TREATED].to_numpy()
    for name, score in scores.items():
        curve = uplift_curve(y, t, score)
        axes.plot(curve.share * 100, curve.qini, label=name)
    axes.plot([0, 100], [0, curve.qini[-1]], linestyle="--", color="grey", label="random")
    axes.set_xlabel("recipients targeted, % (highest score first)")
    axes.set_ylabel("incremental conversions (Qini)")
    axes.legend()
    figure.tight_layout()
    return figure


def _common_params(training: UpliftTrainingSet, split: Split) -> dict:
    def arm(rows, treated: bool):
        chosen = rows[rows[TREATED].to_numpy(bool) == treated]
        return len(chosen), int(chosen["converted"].sum())

    params = {
        "feature_set_version": CONVERSION_FEATURE_SET,
        "attribution_days": training.attribution_days,
        "holdout_campaigns": ",".join(str(i) for i in split.holdout_campaigns),
        "campaigns_with_control": len(training.campaigns),
        "as_of": training.as_of.isoformat(),
        "training_set_sha256": training.sha256,
    }
    for part, rows in (("training", split.train), ("holdout", split.holdout)):
        for name, treated in (("target", True), ("control", False)):
            params[f"{part}_{name}"], params[f"{part}_{name}_conversions"] = arm(rows, treated)
    return params


def log_baseline(
    name: str,
    metrics: dict[str, float],
    training: UpliftTrainingSet,
    split: Split,
    dagster_run_id: str | None,
) -> str:
    with mlflow.start_run(
        run_name=name, tags={"candidate": name, "dagster_run_id": dagster_run_id or ""}
    ) as run:
        mlflow.log_params({"candidate": name, **_common_params(training, split)})
        mlflow.log_metrics(metrics)
    return run.info.run_id


def log_uplift_candidate(
    trained: TrainedUpliftModel,
    training: UpliftTrainingSet,
    split: Split,
    baselines: dict[str, dict[str, float]],
    scores: dict[str, np.ndarray],
    dagster_run_id: str | None,
) -> LoggedUpliftModel:
    """One run: parameters, holdout metrics next to the baselines', the Qini curves, the
    model with a features-only input example."""
    regressor = trained.model.regressors[0]
    params = {
        f"model.{k}": v
        for k, v in regressor.get_params().items()
        if isinstance(v, int | float | str | bool) or v is None
    }
    with mlflow.start_run(
        run_name=trained.name,
        tags={
            "candidate": trained.name,
            "dagster_run_id": dagster_run_id or "",
            "feature_set_version": CONVERSION_FEATURE_SET,
        },
    ) as run:
        mlflow.log_params({"candidate": trained.name, **_common_params(training, split), **params})
        mlflow.log_metrics(
            {
                **trained.metrics,
                "seconds_fit": trained.seconds_fit,
                **{f"{b}_{k}": v for b, m in baselines.items() for k, v in m.items()},
            }
        )
        mlflow.log_figure(
            _qini_plot(split, {trained.name: trained.holdout_uplift, **scores}), "qini_curve.png"
        )
        example = features_of(split.train.head(5))
        info = mlflow.sklearn.log_model(
            trained.model,
            name="model",
            signature=infer_signature(example, trained.model.predict(example)),
            input_example=example,
            pip_requirements=_PIP_REQUIREMENTS,
            serialization_format="skops",
            skops_trusted_types=UPLIFT_TRUSTED_TYPES,
        )
    return LoggedUpliftModel(trained, run.info.run_id, info.model_uri)


def decide(
    candidate: dict[str, float],
    baselines: dict[str, dict[str, float]],
    champion: ChampionLookup,
    champion_metrics: dict[str, float],
    problem: str,
) -> tuple[bool, str, str]:
    """(promoted, basis, reason): promoted only if the candidate's holdout Qini beats every
    baseline's and, when there is a usable champion, the champion's."""
    ours = candidate[SELECTION_METRIC]
    if champion.status == UNAVAILABLE:
        return (
            False,
            "champion_unavailable",
            f"the champion could not be evaluated, no promotion without evidence: {problem}",
        )
    for name, metrics in baselines.items():
        if ours <= metrics[SELECTION_METRIC]:
            return (
                False,
                "baseline_not_beaten",
                (f"holdout Qini {ours:.5f} ≤ the {name} ranking's {metrics[SELECTION_METRIC]:.5f}"),
            )
    beaten = " and ".join(
        f"the {n} ranking's {m[SELECTION_METRIC]:.5f}" for n, m in baselines.items()
    )
    if champion.status == USABLE and champion_metrics:
        theirs = champion_metrics[SELECTION_METRIC]
        if ours <= theirs:
            return False, "compared", f"holdout Qini {ours:.5f} ≤ the champion's {theirs:.5f}"
        return (
            True,
            "compared",
            (f"holdout Qini {ours:.5f} > the champion's {theirs:.5f}, {beaten}"),
        )
    basis = NO_CHAMPION if champion.status == NO_CHAMPION else "champion_unusable"
    cause = "no champion yet" if basis == NO_CHAMPION else problem
    return True, basis, f"{cause}; holdout Qini {ours:.5f} > {beaten}"


def gate_and_register(
    client: MlflowClient,
    target: MlflowTarget,
    best: LoggedUpliftModel,
    split: Split,
    baselines: dict[str, dict[str, float]],
    champion: ChampionLookup,
    dagster_run_id: str | None,
) -> UpliftDecision:
    """Evaluate the champion on the holdout, apply ``decide``, and register ``best`` as the
    new ``champion`` only when it is promoted."""
    champion_metrics: dict[str, float] = {}
    problem = champion.problem
    if champion.status == USABLE:
        try:
            champion_metrics = holdout_metrics(
                split.holdout, champion.model.predict(features_of(split.holdout))
            )
        except Exception as error:  # noqa: BLE001 - a champion that cannot predict is replaced
            champion = replace(champion, status=UNUSABLE)
            problem = f"the champion failed to predict: {error}"
    promoted, basis, reason = decide(
        best.trained.metrics, baselines, champion, champion_metrics, problem
    )
    decision = UpliftDecision(
        promoted,
        basis,
        reason,
        champion_version=None if champion.version is None else str(champion.version.version),
        champion_metrics=champion_metrics,
    )
    if promoted:
        name = target.registered_model_name
        version = mlflow.register_model(
            best.model_uri,
            name,
            tags={
                **registry_tags(
                    best.trained.name,
                    best.run_id,
                    best.model_uri,
                    split,
                    best.trained.metrics,
                    dagster_run_id,
                ),
                "baseline_metrics": json.dumps(
                    {b: {k: round(v, 6) for k, v in m.items()} for b, m in baselines.items()}
                ),
                "registry_decision": reason,
                "registry_decision_basis": basis,
            },
        ).version
        client.set_registered_model_alias(name, CHAMPION, version)
        decision.version = str(version)
    return decision


def train_uplift_model(
    database: Database,
    target: MlflowTarget,
    candidates: Sequence[str],
    attribution_days: int,
    as_of=None,
    seed: int = 42,
    dagster_run_id: str | None = None,
) -> UpliftReport:
    """Build the training set, hold out the latest campaign with a control group, fit and log
    every candidate and both baselines, and apply the gate to the best (highest holdout
    Qini). ``NotEnoughControl`` (with the ``training`` set) when the evidence is too small:
    nothing is logged."""
    if not candidates:
        raise ValueError("no candidates to train")
    started = time.perf_counter()
    training = build_uplift_training_set(database, attribution_days, as_of)
    split = uplift_split(training)
    client = target.activate()
    champion = resolve_champion(client, target, CONVERSION_FEATURE_SET, UPLIFT_TRUSTED_TYPES)
    scores = baseline_scores(split, seed)
    baselines = {name: holdout_metrics(split.holdout, score) for name, score in scores.items()}
    baseline_run_ids = {
        name: log_baseline(name, metrics, training, split, dagster_run_id)
        for name, metrics in baselines.items()
    }
    logged = [
        log_uplift_candidate(
            train_uplift_candidate(name, split, seed),
            training,
            split,
            baselines,
            scores,
            dagster_run_id,
        )
        for name in candidates
    ]
    best = max(logged, key=lambda c: c.trained.metrics[SELECTION_METRIC])
    decision = gate_and_register(client, target, best, split, baselines, champion, dagster_run_id)
    return UpliftReport(
        training,
        split,
        baselines,
        logged,
        best,
        decision,
        baseline_run_ids,
        time.perf_counter() - started,
    )


def load_uplift_champion(
    client: MlflowClient, target: MlflowTarget
) -> tuple[ConversionChampion | None, str]:
    """The ``champion`` of ``lead_uplift`` (an ``UpliftModel``), or None and why;
    ``ChampionUnavailable`` when it could not be reached."""
    return load_registered_champion(client, target, UPLIFT_TRUSTED_TYPES)
