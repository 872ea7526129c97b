"""MLflow: one run per candidate, the registered model ``lead_scoring`` and its aliases.

The registry's ``champion`` alias names the model that scores contacts; a new best candidate
takes it only on evidence: it beats the champion on the same holdout (lower RMSE), or there
is no champion, or the champion is provably unusable. Otherwise, and when the champion could
not be reached after bounded retries, it becomes the ``challenger``. Models are stored in the
skops format and loaded back with this module's own allow-list of types, never one read from
the model. A ``champion_monitoring`` run keeps the champion's metrics and the feature drift
as one series per metric.
"""

import hashlib
import json
import os
import tempfile
import time
from dataclasses import dataclass, field
from pathlib import Path
from urllib.parse import urlparse

import mlflow
import numpy as np
import pandas as pd
import sklearn
import skops
import skops.io
import sqlalchemy.exc
from matplotlib.figure import Figure
from mlflow import MlflowClient
from mlflow.entities import Metric
from mlflow.entities.model_registry import ModelVersion
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
DISTRIBUTION_FILE = "training_distribution.json"
MONITORING_TAG = "monitoring"
MONITORING_METRICS = ("rmse", "mae", "r2", "tier_accuracy")
TRANSIENT_ERRORS = (MlflowException, OSError, sqlalchemy.exc.OperationalError)
"""What a tracking store raises when it cannot be reached (``requests`` errors are
``OSError``s); retried, never taken as proof that the champion is unusable."""
_NOT_FOUND = ("RESOURCE_DOES_NOT_EXIST", "INVALID_PARAMETER_VALUE")
TRUSTED_TYPES = [
    "sklearn.tree._tree.Tree",
    "sklearn.ensemble._hist_gradient_boosting.predictor.TreePredictor",
]
"""Types beyond skops' safe defaults that our candidates contain; nothing else is loaded."""
_PIP_REQUIREMENTS = [
    f"scikit-learn=={sklearn.__version__}",
    f"skops=={skops.__version__}",
    f"numpy=={np.__version__}",
    f"pandas=={pd.__version__}",
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
    load_attempts: int = 4
    retry_seconds: float = 2.0
    """The champion is looked up and loaded up to ``load_attempts`` times, waiting
    ``retry_seconds``, then twice, four times as long between attempts."""

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
    distribution: dict
    """The training sample's bins per feature (``drift.training_distribution``)."""


@dataclass
class LoggedCandidate:
    candidate: TrainedCandidate
    run_id: str
    model_uri: str


NO_CHAMPION = "no_champion"
USABLE = "usable"
UNUSABLE = "unusable"
UNAVAILABLE = "unavailable"


@dataclass
class ChampionLookup:
    """The ``champion`` alias resolved: ``status`` is ``no_champion``, ``usable`` (``model``
    loaded), ``unusable`` (provably: another feature set, a missing artifact, a failed
    integrity check) or ``unavailable`` (it could not be reached, every attempt failed for a
    transient reason); ``problem`` says why it cannot be used."""

    status: str
    problem: str = ""
    version: ModelVersion | None = None
    model: Pipeline | None = None
    distribution: dict | None = None
    attempts: int = 1


class ChampionUnavailable(RuntimeError):
    """The champion exists but could not be loaded for a transient reason."""


@dataclass
class RegistryDecision:
    """The registered version, the alias it got and why, on which basis (``compared``,
    ``no_champion``, ``champion_unusable``, ``champion_unavailable``), and both models'
    holdout metrics."""

    version: str
    alias: str
    reason: str
    candidate_metrics: dict[str, float]
    basis: str = ""
    champion_version: str | None = None
    champion_metrics: dict[str, float] = field(default_factory=dict)


def log_candidate(trained: TrainedCandidate, context: RunContext) -> LoggedCandidate:
    """One MLflow run: parameters, holdout metrics, importances (table and plot), the model
    with its signature and an input example of features only."""
    data = context.data
    model_params = {
        f"model.{k}": v
        for k, v in trained.model.named_steps["model"].get_params().items()
        if isinstance(v, int | float | str | bool) or v is None
    }
    tags = {
        "dagster_run_id": context.dagster_run_id or "",
        "candidate": trained.name,
        "feature_set_version": FEATURE_SET_VERSION,
        "as_of": data.as_of.isoformat(),
    }
    with mlflow.start_run(run_name=trained.name, tags=tags) as run:
        mlflow.log_params(
            {
                "candidate": trained.name,
                "feature_set_version": FEATURE_SET_VERSION,
                "as_of": data.as_of.isoformat(),
                "sample_size": context.sample_size,
                "seed": context.seed,
                "training_rows": len(data.x_train),
                "holdout_rows": len(data.x_test),
                "features": len(FEATURE_COLUMNS),
                **model_params,
            }
        )
        mlflow.log_metrics(
            {
                **trained.evaluation.as_dict(),
                "seconds_fit": trained.seconds_fit,
                **{f"rmse_{tier.lower()}": rmse for tier, rmse in trained.rmse_by_tier.items()},
            }
        )
        mlflow.log_table(trained.importances, artifact_file="feature_importances.json")
        mlflow.log_dict(context.distribution, DISTRIBUTION_FILE)
        mlflow.log_figure(_importance_plot(trained), "feature_importances.png")
        example = data.x_train.head(5)
        info = mlflow.sklearn.log_model(
            trained.model,
            name="model",
            signature=infer_signature(example, trained.model.predict(example)),
            input_example=example,
            pip_requirements=_PIP_REQUIREMENTS,
            serialization_format="skops",
            skops_trusted_types=TRUSTED_TYPES,
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


def model_checksum(model_uri: str) -> str:
    """The SHA-256 of a logged model's ``model.skops``, stored on its registered version."""
    with tempfile.TemporaryDirectory() as folder:
        path = Path(mlflow.artifacts.download_artifacts(model_uri, dst_path=folder))
        return hashlib.sha256((path / "model.skops").read_bytes()).hexdigest()


def resolve_champion(
    client: MlflowClient,
    target: MlflowTarget,
    feature_set: str = FEATURE_SET_VERSION,
    trusted: list[str] = TRUSTED_TYPES,
) -> ChampionLookup:
    """The ``champion`` alias, its model (trained on ``feature_set``, loaded with the
    ``trusted`` types only) and its training distribution. A transient failure
    (``TRANSIENT_ERRORS``) is retried ``target.load_attempts`` times with a doubling wait;
    if every attempt fails the champion is ``unavailable``, never ``unusable``."""
    name = target.registered_model_name
    for attempt in range(1, target.load_attempts + 1):
        try:
            lookup = _lookup_champion(client, name, feature_set, trusted)
        except TRANSIENT_ERRORS as error:
            if attempt == target.load_attempts:
                return ChampionLookup(
                    UNAVAILABLE,
                    attempts=attempt,
                    problem=f"the {CHAMPION} of {name} could not be loaded after {attempt} "
                    f"attempts ({type(error).__name__}: {error})",
                )
            time.sleep(target.retry_seconds * 2 ** (attempt - 1))
        else:
            lookup.attempts = attempt
            return lookup
    raise ValueError(f"load_attempts must be at least 1, not {target.load_attempts}")


def _lookup_champion(
    client: MlflowClient, name: str, feature_set: str, trusted: list[str]
) -> ChampionLookup:
    """One attempt. Errors of the tracking store propagate (they may be transient); only
    what the store answered, or a downloaded file, decides that the champion is unusable."""
    try:
        version = client.get_model_version_by_alias(name, CHAMPION)
    except MlflowException as error:
        if error.error_code not in _NOT_FOUND:
            raise
        return ChampionLookup(
            NO_CHAMPION, f"no {CHAMPION} alias on registered model {name!r} ({error.error_code})"
        )
    label = f"{name} v{version.version}"
    if version.tags.get("feature_set_version") != feature_set:
        return ChampionLookup(
            UNUSABLE,
            version=version,
            problem=(
                f"{label} was trained on feature set {version.tags.get('feature_set_version')}, "
                f"not {feature_set}"
            ),
        )
    with tempfile.TemporaryDirectory() as folder:
        try:
            path = (
                Path(
                    mlflow.artifacts.download_artifacts(
                        f"models:/{name}@{CHAMPION}", dst_path=folder
                    )
                )
                / "model.skops"
            )
        except MlflowException as error:
            if error.error_code != "RESOURCE_DOES_NOT_EXIST":
                raise
            path = None
        if path is None or not path.is_file():
            return ChampionLookup(
                UNUSABLE,
                version=version,
                problem=f"{label} failed to load: its model artifact is missing",
            )
        expected = version.tags.get("model_sha256")
        if expected and hashlib.sha256(path.read_bytes()).hexdigest() != expected:
            return ChampionLookup(
                UNUSABLE,
                version=version,
                problem=(
                    f"{label} failed to load: failed integrity check (model.skops does not match "
                    "the SHA-256 recorded at registration)"
                ),
            )
        try:
            model = skops.io.load(path, trusted=trusted)
        except Exception as error:  # noqa: BLE001 - a complete local file that won't load is broken
            return ChampionLookup(
                UNUSABLE,
                version=version,
                problem=(
                    f"{label} failed to load: failed integrity check ({type(error).__name__}: "
                    f"{error})"
                ),
            )
    try:
        distribution = mlflow.artifacts.load_dict(f"runs:/{version.run_id}/{DISTRIBUTION_FILE}")
    except MlflowException as error:
        if error.error_code != "RESOURCE_DOES_NOT_EXIST":
            raise
        distribution = None
    return ChampionLookup(USABLE, version=version, model=model, distribution=distribution)


def register_best(
    client: MlflowClient,
    target: MlflowTarget,
    best: LoggedCandidate,
    data: TrainingData,
    dagster_run_id: str | None,
    champion: ChampionLookup,
) -> RegistryDecision:
    """Register ``best`` as a new version. It becomes ``champion`` when it beats the
    ``champion`` (looked up before training) on this holdout, when there is none, or when
    that one is provably unusable; otherwise, and whenever the champion could not be
    evaluated, it becomes ``challenger``."""
    name = target.registered_model_name
    evaluation = best.candidate.evaluation
    version = mlflow.register_model(
        best.model_uri,
        name,
        tags={
            "candidate": best.candidate.name,
            "feature_set_version": FEATURE_SET_VERSION,
            "as_of": data.as_of.isoformat(),
            "mlflow_run_id": best.run_id,
            "dagster_run_id": dagster_run_id or "",
            "holdout_rmse_by_tier": json.dumps(best.candidate.rmse_by_tier),
            "model_sha256": model_checksum(best.model_uri),
        },
    ).version
    decision = RegistryDecision(
        version=str(version), alias=CHAMPION, reason="", candidate_metrics=evaluation.as_dict()
    )
    if champion.version is not None:
        decision.champion_version = str(champion.version.version)
    problem, status = champion.problem, champion.status
    if status == USABLE:
        try:
            decision.champion_metrics = evaluate(
                champion.model.predict(data.x_test), data.y_test
            ).as_dict()
        except Exception as error:  # noqa: BLE001 - a champion that cannot predict is replaced
            status = UNUSABLE
            problem = f"v{decision.champion_version} failed to predict: {error}"
    if status == NO_CHAMPION:
        decision.basis, decision.reason = NO_CHAMPION, "no champion yet"
    elif status == UNUSABLE:
        decision.basis, decision.reason = (
            "champion_unusable",
            f"the champion is unusable: {problem}",
        )
    elif status == UNAVAILABLE:
        decision.basis, decision.alias = "champion_unavailable", CHALLENGER
        decision.reason = (
            f"the champion could not be evaluated, no promotion without evidence: {problem}"
        )
    else:
        decision.basis = "compared"
        ours, theirs = evaluation.rmse, decision.champion_metrics[SELECTION_METRIC]
        if ours < theirs:
            decision.reason = f"holdout RMSE {ours:.4f} < champion's {theirs:.4f}"
        else:
            decision.alias = CHALLENGER
            decision.reason = f"holdout RMSE {ours:.4f} ≥ champion's {theirs:.4f}"
    client.set_registered_model_alias(name, decision.alias, version)
    client.set_model_version_tag(name, version, "registry_decision", decision.reason)
    client.set_model_version_tag(name, version, "registry_decision_basis", decision.basis)
    return decision


def load_champion(client: MlflowClient, target: MlflowTarget) -> tuple[ChampionModel | None, str]:
    """The model under the ``champion`` alias, or None and the reason it can't be used;
    ``ChampionUnavailable`` when it could not be reached (the caller keeps what it has)."""
    lookup = resolve_champion(client, target)
    if lookup.status == UNAVAILABLE:
        raise ChampionUnavailable(lookup.problem)
    if lookup.model is None:
        return None, lookup.problem
    version = lookup.version
    return ChampionModel(
        model=lookup.model,
        version=str(version.version),
        candidate=version.tags.get("candidate", "model"),
        rmse_by_tier=json.loads(version.tags.get("holdout_rmse_by_tier", "{}")),
    ), f"{target.registered_model_name} v{version.version} ({version.tags.get('candidate')})"


def log_monitoring(
    client: MlflowClient, target: MlflowTarget, as_of: pd.Timestamp, metrics: dict[str, float]
) -> str:
    """Append ``metrics`` to the experiment's ``champion_monitoring`` run (created on first
    use) at step = days since 1970 of ``as_of``: one line per metric across retrainings."""
    experiment = client.get_experiment_by_name(target.experiment_name)
    runs = client.search_runs(
        [experiment.experiment_id],
        filter_string=f"tags.{MONITORING_TAG} = 'champion'",
        max_results=1,
    )
    if runs:
        run_id = runs[0].info.run_id
    else:
        run_id = client.create_run(
            experiment.experiment_id,
            run_name="champion_monitoring",
            tags={MONITORING_TAG: "champion"},
        ).info.run_id
        client.set_terminated(run_id)
    timestamp = int(as_of.timestamp() * 1000)
    step = int(as_of.timestamp() // 86_400)
    client.log_batch(
        run_id,
        metrics=[Metric(key, float(value), timestamp, step) for key, value in metrics.items()],
    )
    return run_id
