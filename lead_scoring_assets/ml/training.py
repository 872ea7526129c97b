"""Candidate models that predict the rule-based ``total_score`` from ``features_v1``.

Plain scikit-learn: the training sample, the candidates, their holdout metrics and feature
importances. MLflow logging and the registry are in ``tracking.py``.
"""

import time
from dataclasses import dataclass

import numpy as np
import pandas as pd
from sklearn.dummy import DummyRegressor
from sklearn.ensemble import HistGradientBoostingRegressor, RandomForestRegressor
from sklearn.inspection import permutation_importance
from sklearn.linear_model import LinearRegression
from sklearn.metrics import mean_absolute_error, mean_squared_error, r2_score
from sklearn.pipeline import Pipeline
from sklearn.preprocessing import StandardScaler

from lead_scoring_assets.db.database import Database
from lead_scoring_assets.ml.feature_table import require_features_as_of
from lead_scoring_assets.ml.features import FEATURE_COLUMNS, FEATURE_SET_VERSION
from lead_scoring_assets.ml.split import in_holdout, salt_of, stable_hash_sql
from lead_scoring_assets.scoring.config import DEFAULT_CONFIG, ScoringConfig
from lead_scoring_assets.scoring.engine import tier_of

TARGET = "total_score"
MINIMUM_SAMPLES = 100
IMPORTANCE_ROWS = 5_000
TIER_ROUNDING = 0.5


def _pipeline(model) -> Pipeline:
    return Pipeline([("scaler", StandardScaler()), ("model", model)])


CANDIDATES = {
    "random_forest": lambda: _pipeline(
        RandomForestRegressor(
            n_estimators=100,
            max_depth=10,
            min_samples_split=5,
            min_samples_leaf=2,
            random_state=42,
            n_jobs=-1,
        )
    ),
    "hist_gradient_boosting": lambda: _pipeline(HistGradientBoostingRegressor(random_state=42)),
    "linear_baseline": lambda: _pipeline(LinearRegression()),
    "mean_baseline": lambda: _pipeline(DummyRegressor(strategy="mean")),
}
"""Every model the training can fit, by name: the design's random forest, gradient boosting,
a linear baseline and the mean (the floor any model must beat)."""
DEFAULT_CANDIDATES = ("random_forest", "hist_gradient_boosting", "linear_baseline")


class NotEnoughTrainingData(ValueError):
    """Fewer than ``MINIMUM_SAMPLES`` contacts have both features and a rule-based score."""


@dataclass
class TrainingData:
    """The reproducible sample split into training and holdout by contact (frames indexed by
    ``contact_id``), and the one ``as_of`` of its features and labels."""

    x_train: pd.DataFrame
    x_test: pd.DataFrame
    y_train: pd.Series
    y_test: pd.Series
    as_of: pd.Timestamp
    contacts_available: int
    labels_rescored_since: int
    """Sampled contacts left out because an incremental run rescored them after ``as_of``:
    their label describes another moment than their features."""


@dataclass
class Evaluation:
    """A model's holdout metrics; ``tier_accuracy``: share of holdout contacts whose
    predicted tier equals their actual tier."""

    mse: float
    rmse: float
    mae: float
    r2: float
    tier_accuracy: float

    def as_dict(self) -> dict[str, float]:
        return dict(vars(self))


@dataclass
class TrainedCandidate:
    name: str
    model: Pipeline
    evaluation: Evaluation
    importances: pd.DataFrame
    rmse_by_tier: dict[str, float]
    seconds_fit: float


def predicted_tier(scores: np.ndarray) -> np.ndarray:
    """The quality tier of each predicted score rounded half up to a whole point."""
    return tier_of(scores, rounding=TIER_ROUNDING)


def clip_scores(predictions: np.ndarray, config: ScoringConfig = DEFAULT_CONFIG) -> np.ndarray:
    return np.clip(predictions, 0.0, float(config.total_cap))


def load_training_data(database: Database, sample_size: int, seed: int = 42) -> TrainingData:
    """A reproducible sample of up to ``sample_size`` contacts with features and a label of
    one ``as_of`` (the published rescoring's), split into training and holdout by
    ``split.in_holdout``: a contact is on the same side in every retraining.

    Contacts are ordered by a hash of their id salted by ``seed``, so the sample is drawn in
    the database without reading every row. Features of another ``as_of`` than the published
    ``lead_scores`` raise ``AsOfMismatch``.
    """
    as_of = require_features_as_of(database)
    features = ", ".join(f"f.{c}" for c in FEATURE_COLUMNS)
    sample = database.read_frame(
        f"SELECT f.contact_id, {features}, f.feature_set_version, "
        "s.total_score, s.last_calculated_at "
        "FROM contact_features AS f JOIN lead_scores AS s ON s.contact_id = f.contact_id "
        f"ORDER BY {stable_hash_sql('f.contact_id', salt_of(seed))}, f.contact_id "
        "LIMIT :limit",
        {"limit": sample_size},
    )
    labelled_then = (
        pd.to_datetime(sample["last_calculated_at"], utc=True, format="ISO8601") == as_of
    )
    rescored_since = int((~labelled_then).sum())
    sample = sample[labelled_then.to_numpy()]
    if len(sample) < MINIMUM_SAMPLES:
        raise NotEnoughTrainingData(
            f"only {len(sample)} contacts have both features and a rule-based score of "
            f"{as_of.isoformat()}; training needs at least {MINIMUM_SAMPLES} (materialise "
            "lead_scores and contact_features)"
        )
    versions = set(sample["feature_set_version"])
    if versions != {FEATURE_SET_VERSION}:
        raise ValueError(
            f"contact_features holds feature sets {sorted(versions)}, this code trains on "
            f"{FEATURE_SET_VERSION}: rematerialise contact_features"
        )
    sample = sample.set_index("contact_id")
    x = sample[list(FEATURE_COLUMNS)].astype("float64")
    y = sample[TARGET].astype("float64")
    holdout = in_holdout(sample.index.to_numpy())
    return TrainingData(
        x_train=x[~holdout],
        x_test=x[holdout],
        y_train=y[~holdout],
        y_test=y[holdout],
        as_of=as_of,
        contacts_available=database.count("contact_features"),
        labels_rescored_since=rescored_since,
    )


def evaluate(predictions: np.ndarray, actual: pd.Series) -> Evaluation:
    predicted = clip_scores(predictions)
    mse = float(mean_squared_error(actual, predicted))
    return Evaluation(
        mse=mse,
        rmse=float(np.sqrt(mse)),
        mae=float(mean_absolute_error(actual, predicted)),
        r2=float(r2_score(actual, predicted)),
        tier_accuracy=float(
            np.mean(predicted_tier(predicted) == predicted_tier(actual.to_numpy()))
        ),
    )


def rmse_by_tier(predictions: np.ndarray, actual: pd.Series) -> dict[str, float]:
    """Holdout RMSE per predicted tier (the overall RMSE for a tier with no holdout rows):
    the expected error of a prediction in that tier, for models without a tree spread."""
    predicted = clip_scores(predictions)
    squared = (predicted - actual.to_numpy()) ** 2
    tiers = predicted_tier(predicted)
    overall = float(np.sqrt(squared.mean()))
    return {
        name: float(np.sqrt(squared[tiers == name].mean())) if (tiers == name).any() else overall
        for name, _ in DEFAULT_CONFIG.tiers
    }


def feature_importances(model: Pipeline, data: TrainingData, seed: int = 42) -> pd.DataFrame:
    """Permutation importance on up to ``IMPORTANCE_ROWS`` holdout rows: the rise in holdout
    MSE when a feature is shuffled. Comparable across every kind of candidate."""
    rows = min(IMPORTANCE_ROWS, len(data.x_test))
    x = data.x_test.sample(n=rows, random_state=seed)
    result = permutation_importance(
        model,
        x,
        data.y_test.loc[x.index],
        scoring="neg_mean_squared_error",
        n_repeats=3,
        random_state=seed,
        n_jobs=1,
    )
    return pd.DataFrame(
        {
            "feature": list(FEATURE_COLUMNS),
            "importance": result.importances_mean,
            "importance_std": result.importances_std,
        }
    ).sort_values("importance", ascending=False, ignore_index=True)


def train_candidate(name: str, data: TrainingData, seed: int = 42) -> TrainedCandidate:
    """Fit one candidate on the training split and evaluate it on the holdout."""
    if name not in CANDIDATES:
        raise ValueError(f"unknown candidate {name!r}; known: {sorted(CANDIDATES)}")
    model = CANDIDATES[name]()
    started = time.perf_counter()
    model.fit(data.x_train, data.y_train)
    seconds_fit = time.perf_counter() - started
    predictions = model.predict(data.x_test)
    return TrainedCandidate(
        name=name,
        model=model,
        evaluation=evaluate(predictions, data.y_test),
        importances=feature_importances(model, data, seed),
        rmse_by_tier=rmse_by_tier(predictions, data.y_test),
        seconds_fit=seconds_fit,
    )
