"""MLflow: one run per candidate, the registered model ``lead_scoring`` and its aliases.

The registry's ``champion`` alias names the model that scores contacts; a new best candidate
takes it only when it beats the champion on the same holdout (lower RMSE), otherwise it
becomes the ``challenger``. Models are stored in the skops format and loaded back with this
module's own allow-list of types, never one read from the model.
"""

import json
import os
import tempfile
from dataclasses import dataclass, field
from pathlib import Path
from urllib.parse import urlparse

import mlflow
import numpy as np
import pandas as pd
import sklearn
import skops
import skops.io
from matplotlib.figure import Figure
from mlflow import MlflowClient
from mlflow.exceptions import MlflowException
from mlflow.models import infer_signature
from sklearn.pipeline import Pipeline

from lead_scoring_assets.db.database import data_dir
from lead_scoring_assets.ml.features import FEATURE_COLUMNS, FEATURE_SET_VERSION
from lead_scoring_assets.ml.predictions import ChampionModel
from lead_scoring_assets.ml.training import TrainedCandidate, TrainingData, evaluate

TRACKING_URI_ENV = "MLFLOW_TRACKING_URI"
CHAMPION = "champion"
CHALLENGER = "challenger"
SELECTION_METRIC = "rmse"
TRUSTED_TYPES = [
    "sklearn.tree._tree.Tree",
    "sklearn.ensemble._hist_gradient_boosting.predictor.TreePredictor",
]
"""Types beyond skops' safe defaults that our candidates contain; nothing else is loaded."""
_PIP_REQUIREMENTS = [
    f"scikit-learn=={sklearn.__version__}", f"skops=={skops.__version__}",
    f"numpy=={np.__version__}", f"pandas=={pd.__version__}",
]


def default_tracking_uri() -> str:
    """``MLFLOW_TRACKING_URI``, or a SQLite store in the data folder."""
    return os.environ.get(TRACKING_URI_ENV) or f"sqlite:///{data_dir() / 'mlflow.db'}"


@dataclass(frozen=True)
class MlflowTarget:
    """Where runs and models go: a tracking URI (also the registry), experiment, model name.

    ``artifact_location`` is used when the experiment is created; by default a database-backed
    store keeps artifacts in ``mlartifacts`` beside a SQLite file, or in the data folder.
    """

    tracking_uri: str
    experiment_name: str = "lead_scoring"
    registered_model_name: str = "lead_scoring"
    artifact_location: str | None = None

    def activate(self) -> MlflowClient:
        """Point MLflow at this target (creating the experiment) and return a client."""
        mlflow.set_tracking_uri(self.tracking_uri)
        mlflow.set_registry_uri(self.tracking_uri)
        client = MlflowClient(self.tracking_uri, self.tracking_uri)
        if client.get_experiment_by_name(self.experiment_name) is None:
            client.create_experiment(self.experiment_name, self.artifact_root())
        mlflow.set_experiment(self.experiment_name)
        return client

    def artifact_root(self) -> str | None:
        """Where a new experiment keeps its artifacts (None: the tracking server decides)."""
        if self.artifact_location:
            return self.artifact_location
        scheme = urlparse(self.tracking_uri).scheme
        if scheme in ("http", "https", "databricks"):
            return None
        if scheme == "sqlite":
            folder = Path(self.tracking_uri.removeprefix("sqlite:///")).parent
        else:
            folder = data_dir()
        return (folder / "mlartifacts").resolve().as_uri()


@dataclass
class RunContext:
    """What every candidate run records besides its own model."""

    dagster_run_id: str | None
    sample_size: int
    seed: int
    data: TrainingData


@dataclass
class LoggedCandidate:
    candidate: TrainedCandidate
    run_id: str
    model_uri: str


@dataclass
class RegistryDecision:
    """The registered version, the alias it got and why, and both models' holdout metrics."""

    version: str
    alias: str
    reason: str
    candidate_metrics: dict[str, float]
    champion_version: str | None = None
    champion_metrics: dict[str, float] = field(default_factory=dict)


def log_candidate(trained: TrainedCandidate, context: RunContext) -> LoggedCandidate:
    """One MLflow run: parameters, holdout metrics, importances (table and plot), the model
    with its signature and an input example of features only."""
    data = context.data
    model_params = {
        f"model.{k}": v for k, v in trained.model.named_steps["model"].get_params().items()
        if isinstance(v, int | float | str | bool) or v is None
    }
    tags = {"dagster_run_id": context.dagster_run_id or "", "candidate": trained.name,
            "feature_set_version": FEATURE_SET_VERSION,
            "as_of": data.features_as_of.isoformat()}
    with mlflow.start_run(run_name=trained.name, tags=tags) as run:
        mlflow.log_params({
            "candidate": trained.name, "feature_set_version": FEATURE_SET_VERSION,
            "as_of": data.features_as_of.isoformat(), "sample_size": context.sample_size,
            "seed": context.seed, "training_rows": len(data.x_train),
            "holdout_rows": len(data.x_test), "features": len(FEATURE_COLUMNS), **model_params,
        })
        mlflow.log_metrics({
            **trained.evaluation.as_dict(), "seconds_fit": trained.seconds_fit,
            **{f"rmse_{tier.lower()}": rmse for tier, rmse in trained.rmse_by_tier.items()},
        })
        mlflow.log_table(trained.importances, artifact_file="feature_importances.json")
        mlflow.log_figure(_importance_plot(trained), "feature_importances.png")
        example = data.x_train.head(5)
        info = mlflow.sklearn.log_model(
            trained.model, name="model",
            signature=infer_signature(example, trained.model.predict(example)),
            input_example=example, pip_requirements=_PIP_REQUIREMENTS,
            serialization_format="skops", skops_trusted_types=TRUSTED_TYPES,
        )
    return LoggedCandidate(trained, run.info.run_id, info.model_uri)


def _importance_plot(trained: TrainedCandidate) -> Figure:
    frame = trained.importances.iloc[::-1]
    figure = Figure(figsize=(7, 6))
    axes = figure.subplots()
    axes.barh(frame["feature"], frame["importance"], xerr=frame["importance_std"])
    axes.set_xlabel("rise in holdout MSE when shuffled")
    axes.set_title(f"{trained.name}: permutation importance")
    figure.tight_layout()
    return figure


def load_model(model_uri: str) -> Pipeline:
    """A registered or logged model, deserialised with ``TRUSTED_TYPES`` only."""
    with tempfile.TemporaryDirectory() as folder:
        path = Path(mlflow.artifacts.download_artifacts(model_uri, dst_path=folder))
        return skops.io.load(path / "model.skops", trusted=TRUSTED_TYPES)


def register_best(
    client: MlflowClient, target: MlflowTarget, best: LoggedCandidate, data: TrainingData,
    dagster_run_id: str | None,
) -> RegistryDecision:
    """Register ``best`` as a new version and give it ``champion`` if it beats the current
    champion on this holdout (or there is none it can be compared with), else ``challenger``."""
    name = target.registered_model_name
    evaluation = best.candidate.evaluation
    version = mlflow.register_model(best.model_uri, name, tags={
        "candidate": best.candidate.name, "feature_set_version": FEATURE_SET_VERSION,
        "as_of": data.features_as_of.isoformat(), "mlflow_run_id": best.run_id,
        "dagster_run_id": dagster_run_id or "",
        "holdout_rmse_by_tier": json.dumps(best.candidate.rmse_by_tier),
    }).version
    decision = RegistryDecision(version=str(version), alias=CHAMPION, reason="",
                                candidate_metrics=evaluation.as_dict())
    champion, model, problem = _resolve_champion(client, name)
    if champion is None:
        decision.reason = "no champion yet"
    else:
        decision.champion_version = str(champion.version)
        if model is not None:
            try:
                decision.champion_metrics = evaluate(
                    model.predict(data.x_test), data.y_test).as_dict()
            except Exception as error:  # noqa: BLE001 - a champion that cannot predict is replaced
                problem = f"v{champion.version} failed to predict: {error}"
        if problem:
            decision.reason = f"the champion is unusable: {problem}"
        else:
            ours, theirs = evaluation.rmse, decision.champion_metrics[SELECTION_METRIC]
            if ours < theirs:
                decision.reason = f"holdout RMSE {ours:.4f} < champion's {theirs:.4f}"
            else:
                decision.alias = CHALLENGER
                decision.reason = f"holdout RMSE {ours:.4f} ≥ champion's {theirs:.4f}"
    client.set_registered_model_alias(name, decision.alias, version)
    client.set_model_version_tag(name, version, "registry_decision", decision.reason)
    return decision


def _resolve_champion(client: MlflowClient, name: str):
    """(version, model, problem) of the ``champion`` alias: version None when there is none;
    model None, with the problem, when it cannot be used."""
    try:
        version = client.get_model_version_by_alias(name, CHAMPION)
    except MlflowException as error:
        return None, None, f"no {CHAMPION} alias on registered model {name!r} ({error.error_code})"
    if version.tags.get("feature_set_version") != FEATURE_SET_VERSION:
        return version, None, (f"{name} v{version.version} was trained on feature set "
                               f"{version.tags.get('feature_set_version')}, not "
                               f"{FEATURE_SET_VERSION}")
    try:
        model = load_model(f"models:/{name}@{CHAMPION}")
    except Exception as error:  # noqa: BLE001 - reported to the caller, which falls back
        return version, None, (f"{name} v{version.version} failed to load: "
                               f"{type(error).__name__}: {error}")
    return version, model, ""


def load_champion(client: MlflowClient, target: MlflowTarget) -> tuple[ChampionModel | None, str]:
    """The model under the ``champion`` alias, or None and the reason it can't be used."""
    version, model, problem = _resolve_champion(client, target.registered_model_name)
    if model is None:
        return None, problem
    return ChampionModel(
        model=model, version=str(version.version),
        candidate=version.tags.get("candidate", "model"),
        rmse_by_tier=json.loads(version.tags.get("holdout_rmse_by_tier", "{}")),
    ), f"{target.registered_model_name} v{version.version} ({version.tags.get('candidate')})"
